"""Did the provider that sent a feedback report sign it? Its DKIM result, recorded with the report.

A report whose own DKIM signature verifies (against the signer's key in DNS,
looked up with the relay's configured resolver) comes from the domain it
says; one without is only as good as the proof in its quoted message. The
result is what we checked, never what a header in the report claims
(an Authentication-Results field in a report is the reporter's to write).
"""
from __future__ import annotations

import logging
import re

import dkim
import dkim.util
import dns.exception
import dns.resolver

_SILENT = logging.getLogger("atmos.report_auth")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
MAX_SIGNATURES = 4


def _txt(resolver: dns.resolver.Resolver):
    def lookup(name: bytes | str, timeout: int = 5) -> bytes:
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(name, "TXT", search=False)
        except (dns.exception.DNSException, OSError):
            return b""
        return b"".join(answer[0].strings) if len(answer) else b""
    return lookup


def _domain(value: bytes) -> str:
    try:
        tags = dkim.util.parse_tag_value(re.sub(rb"\r?\n", b"", value))
    except dkim.util.InvalidTagValueList:
        return "?"
    return tags.get(b"d", b"?").decode("ascii", "replace").lower()[:253]


def dkim_result(raw: bytes, resolver: dns.resolver.Resolver) -> str:
    """`pass d=<domain>` for the first signature that verifies, else `fail d=<domain>,...`, or `none`."""
    try:
        verifier = dkim.DKIM(raw, logger=_SILENT)
    except dkim.DKIMException:
        return "fail (unparsable)"
    signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    if not signatures:
        return "none"
    failed = []
    for index, value in enumerate(signatures):
        try:
            ok = verifier.verify(idx=index, dnsfunc=_txt(resolver))
        except Exception:  # dkimpy raises many kinds of error on hostile signatures; any of them is a failure
            ok = False
        if ok:
            return f"pass d={_domain(value)}"
        failed.append(_domain(value))
    return "fail d=" + ",".join(failed)
