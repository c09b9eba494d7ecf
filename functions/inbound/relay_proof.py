"""Is a quoted message one the relay sent? Only the relay's own marks say so: its DKIM signature or Message-ID.

Reports quote the message they are about (ARF's message/rfc822 or
text/rfc822-headers, a DSN's returned message or headers). Anyone can write
`X-Atmos-Member-Did` into such a quote; only the relay can produce the
operator's signature (d=<operatorDomain>, checked against the relay's own
public keys, so no DNS answer is trusted) or a marked Message-ID
(`message_token`). The signature is checked over the header fields alone:
providers often return only the headers, or cut the body, so its hash
cannot match, while the signed header fields still name the member and the
Message-ID. A quote re-encoded on the way back loses the signature but
usually keeps the Message-ID, so the mark is the second proof.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import dkim
import dkim.util

from functions.dkim import operator_keys
from functions.outbound import message_token

_QUOTES = ("message/rfc822", "message/global")
_HEADER_QUOTES = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
_SILENT = logging.getLogger("atmos.relay_proof")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
MAX_QUOTES, MAX_SIGNATURES = 8, 8  # a report is attacker input: bounded work however many it carries


@dataclass(frozen=True)
class Quote:
    """The header section of one quoted message: the bytes as they came, and parsed."""
    raw: bytes
    headers: Message


@dataclass(frozen=True)
class Signed:
    """What a verified operator signature vouches for."""
    did: str
    message_id: str
    selector: str


def _header_bytes(message: Message) -> bytes:
    lines = []
    for name, value in message.raw_items():
        text = str(value).encode("utf-8", "surrogateescape")
        lines.append(name.encode("utf-8", "surrogateescape") + b": " + re.sub(rb"\r?\n", b"\r\n", text) + b"\r\n")
    return b"".join(lines)


def quotes(report: Message) -> list[Quote]:
    """Every message or header section the report quotes, outermost first."""
    found = []
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype in _QUOTES and part is not report:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(Quote(_header_bytes(payload[0]), payload[0]))
        elif ctype in _HEADER_QUOTES:
            raw = part.get_payload(decode=True) or b""
            head = re.split(rb"\r?\n\r?\n", raw.lstrip(b"\r\n"), maxsplit=1)[0]
            found.append(Quote(re.sub(rb"\r?\n", b"\r\n", head) + b"\r\n", message_from_bytes(head + b"\n\n")))
        if len(found) >= MAX_QUOTES:
            break
    return found


def operator_records(state_dir: str | Path, operator_domain: str) -> dict[str, bytes]:
    """The relay's own DKIM key records, current and previous (a report can come long after the sending)."""
    try:
        keys = operator_keys.all_keys(state_dir)
    except FileNotFoundError:
        return {}
    records = {}
    for key in keys:
        record = key.record(operator_domain)
        records[record["name"].lower()] = record["value"].encode("ascii")
    return records


def _signature_tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return dkim.util.parse_tag_value(re.sub(rb"\r?\n", b"", value))
    except dkim.util.InvalidTagValueList:
        return {}


def signed_by_relay(quote: Quote, operator_domain: str, records: dict[str, bytes]) -> Signed | None:
    """The member and Message-ID an operator signature in `quote` vouches for, if one verifies."""
    try:
        verifier = dkim.DKIM(quote.raw + b"\r\n", logger=_SILENT)
    except dkim.DKIMException:
        return None
    signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    for index, value in enumerate(signatures):
        tags = _signature_tags(value)
        if tags.get(b"d", b"").decode("ascii", "replace").lower() != operator_domain.lower():
            continue
        try:
            signed = _verify_headers(verifier, index, records)
        except Exception:  # dkimpy raises many kinds of error on hostile signatures; any of them is "no proof"
            continue
        if signed is not None:
            return Signed(signed.get(b"x-atmos-member-did", ""), signed.get(b"message-id", ""),
                          tags.get(b"s", b"").decode("ascii", "replace"))
    return None


def _verify_headers(verifier: dkim.DKIM, index: int, records: dict[str, bytes]) -> dict[bytes, str] | None:
    """dkimpy's check of signature `index` without the body hash; the signed fields, relaxed, when it holds."""
    prep = verifier.verify_headerprep(index)
    if not prep:
        return None
    sig, include, sigheaders = prep
    if not {b"x-atmos-member-did", b"message-id"} <= set(include):
        return None
    header_only = {k: v for k, v in sig.items() if k not in (b"bh", b"l")}

    def own_keys(name: bytes | str, timeout: int = 5) -> bytes:
        name = name.decode() if isinstance(name, bytes) else name
        return records.get(name.rstrip(".").lower(), b"")

    if not verifier.verify_sig(header_only, include, sigheaders[index], own_keys):
        return None
    return {name.lower(): value.decode("utf-8", "replace").strip() for name, value in verifier.signed_headers}


def marked_queue(key: bytes, quote: Quote) -> str | None:
    """The queue id in the quoted Message-ID's mark, when the relay made it."""
    return message_token.queue_of(key, str(quote.headers.get("Message-ID") or ""))
