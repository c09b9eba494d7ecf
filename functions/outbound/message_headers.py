"""Header work on a submitted message before it is signed.

The relay owns attribution: any X-Atmos-Member-Did or Feedback-ID the
client sent is dropped and ours put at the top, a missing Message-ID or
Date is added, Bcc and Return-Path are removed. The header section is read
strictly (header_section.read: what the From: check read is what is signed
and delivered) and the body's line ends become CRLF, so the bytes signed are
the bytes delivered and no bare CR or LF reaches a receiver.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime

from functions.outbound import header_section

OWNED = ("x-atmos-member-did", "feedback-id")
DROPPED = OWNED + ("bcc", "return-path")
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Prepared:
    message: bytes
    message_id: str
    added: tuple[str, ...]
    # The message's fields as (name, value after the colon) and its body: what the signer would read again.
    fields: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""

    @property
    def parts(self) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
        return self.fields, self.body


def _trace_fields(trace: bytes) -> list[bytes]:
    """The trace fields put on top, read as strictly as the member's own: what is signed is what was read."""
    if not trace:
        return []
    section = header_section.read(trace)
    if section.body:
        raise header_section.MalformedHeaderSection("the trace fields hold an empty line")
    return [f.raw for f in section.fields]


def _name_value(field: bytes) -> tuple[bytes, bytes]:
    name, _, value = field.partition(b":")
    return name, value


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded continuation lines, CRLF-terminated) and the body, read leniently.

    For mail that arrived from elsewhere and is passed on (the reply forwarder), where refusing is not ours to do;
    every line end becomes CRLF. A member's submission is read by header_section.read instead.
    """
    message = _LINE_END.sub(b"\r\n", message)
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message.rstrip(b"\r\n"), b""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif line:
            fields.append(line + b"\r\n")
    return fields, body


def field_name(field: bytes) -> str:
    """The lower-cased name of a field from `split` (empty for a line without a colon)."""
    name, colon, _ = field.partition(b":")
    return name.strip().lower().decode("ascii", "replace") if colon else ""


def feedback_id(did: str, domain: str) -> str:
    return f"transactional:{did}:{domain}:atmosphere-mail"


def prepare(message: bytes, did: str, domain: str, now: float, trace: bytes = b"",
            own_id: Callable[[], str] | None = None) -> Prepared:
    """The message as it is signed: MalformedHeaderSection if its header section is not strictly readable.

    `own_id` makes the Message-ID given to a message that has none (the relay's marked one, message_token);
    it is called only then, so a message with its own Message-ID costs no look-up.
    """
    header_section.refuse_nul(message)
    section = header_section.read(message)
    kept = [f for f in section.fields if f.key not in DROPPED]
    names = {f.key for f in kept}
    added = ["X-Atmos-Member-Did", "Feedback-ID"]
    top = [f"X-Atmos-Member-Did: {did}\r\n".encode(), f"Feedback-ID: {feedback_id(did, domain)}\r\n".encode()]
    bottom: list[bytes] = []
    given = section.first("Message-ID")
    message_id = given.value if given is not None else ""
    if not message_id:
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d%H%M%S")
        message_id = (own_id() if own_id else "") or f"<{stamp}.{secrets.token_hex(8)}@{domain}>"
        bottom.append(f"Message-ID: {message_id}\r\n".encode())
        added.append("Message-ID")
        kept = [f for f in kept if f.key != "message-id"]
    if "date" not in names:
        bottom.append(f"Date: {format_datetime(datetime.fromtimestamp(now, timezone.utc))}\r\n".encode())
        added.append("Date")
    body = header_section.crlf_body(section.body)
    fields = [*_trace_fields(trace), *top, *(f.raw for f in kept), *bottom]
    out = b"".join(fields) + b"\r\n" + body
    return Prepared(out, message_id, tuple(added), tuple(_name_value(f) for f in fields), body)
