"""The reply-forwarder: inbound mail re-sent to an inbox (operatorForwardTo, or a member's forward address).

The original From: and Subject: stay as they were, so the inbox shows the
provider who wrote (runbook section 6). What we checked on arrival is
recorded in an Authentication-Results header and sealed with ARC (RFC 8617,
RSA as the standard requires) so the inbox can trust it although SPF no
longer aligns; the message is DKIM-signed with the operator's keys and goes
out through the spool like relayed mail, with retries.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import format_datetime

import dkim
import dkim.util
import dns.exception
import dns.resolver

from functions.dkim import operator_keys
from functions.dkim.signer import sign_message
from functions.members.identifiers import address_domain
from functions.outbound import header_section, message_headers
from runtime.context import LambdaContext
from runtime.spool import new_queue_id

_DKIM_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,253}")


def _dnsfunc(resolver: dns.resolver.Resolver):
    def txt(name: bytes | str, timeout: int = 5) -> bytes:
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(name, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers, dns.exception.Timeout):
            return b""
        return b"".join(answer[0].strings) if len(answer) else b""
    return txt


def _token(value: bytes) -> str:
    """A d= or s= value as RFC 8601 may carry it: anything else (a `;` faking a second result) is dropped."""
    text = value.decode("ascii", "replace").strip()
    return text if _DKIM_TOKEN.fullmatch(text) else "invalid"


def authentication_results(message: bytes, authserv_id: str, resolver: dns.resolver.Resolver) -> str:
    """RFC 8601 results for the DKIM signatures the message arrived with (the only method we evaluate)."""
    verifier = dkim.DKIM(message)
    found = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    results = []
    for index in range(len(found)):
        try:
            ok = verifier.verify(idx=index, dnsfunc=_dnsfunc(resolver))
        except Exception:
            ok = False
        tags = dkim.util.parse_tag_value(found[index].replace(b"\r\n", b"").replace(b"\n", b"")) if found else {}
        d, s = _token(tags.get(b"d", b"")), _token(tags.get(b"s", b""))
        results.append(f"dkim={'pass' if ok else 'fail'} header.d={d} header.s={s}")
    body = "; ".join(results) if results else "dkim=none"
    return f"Authentication-Results: {authserv_id}; {body}; arc=none\r\n"


def forward(context: LambdaContext, original: bytes, to: str, reason: str, peer: str = "",
            helo: str = "") -> str:
    """Seal, sign and spool `original` for `to`; returns the queue id."""
    settings = context.settings
    hostname, operator_domain = settings.hostname, settings.operatorDomain
    now = context.clock.now()
    queue_id = new_queue_id()
    fields, body = message_headers.split(original)
    # Our signature must never vouch for attribution headers someone else wrote (relay_proof reads them).
    fields = [f for f in fields if message_headers.field_name(f) not in message_headers.OWNED]
    flat = b"".join(fields) + b"\r\n" + body
    sealed_input = authentication_results(flat, hostname, context.resolver()).encode() + flat
    keys = operator_keys.signing_keys(settings.stateDir, now)
    rsa_key = next(k for k in keys if k.algorithm == "rsa")
    arc = dkim.arc_sign(sealed_input, rsa_key.selector.encode(), operator_domain.encode(),
                        rsa_key.private_pem.encode(), hostname.encode(),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    date = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    helo, peer = header_section.trace_text(helo or "unknown"), header_section.trace_text(peer or "unknown")
    trace = (f"Received: from {helo} ([{peer}])\r\n\tby {hostname} (Atmosphere Mail)"
             f" with ESMTP id {queue_id}\r\n\tfor <{to}>; {date}\r\n").encode()
    prepared = trace + f"X-Atmos-Forwarded: {reason}\r\n".encode() + b"".join(arc) + sealed_input
    message, _ = sign_message(prepared, operator_keys.signing_identities(settings.stateDir, operator_domain, now))
    envelope = {"did": "", "member_domain": "", "message_id": "", "mail_from": "", "rcpt_tos": [to],
                "received_at": now, "forwarded": reason}
    with context.spool.placing(envelope, message, queue_id) as placing:
        with context.store.transaction() as tx:
            placing.register(tx, [(to, address_domain(to))], now)
    return queue_id
