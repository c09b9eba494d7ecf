"""Header work on a submitted message before it is signed.

The relay owns attribution: any X-Atmos-Member-Did or Feedback-ID the
client sent is dropped and ours put at the top, a missing Message-ID or
Date is added, Bcc and Return-Path are removed, and line endings become
CRLF so the bytes signed are the bytes delivered.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime

OWNED = (b"x-atmos-member-did", b"feedback-id")
DROPPED = OWNED + (b"bcc", b"return-path")
_LINE_END = re.compile(rb"\r?\n")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True)
class Prepared:
    message: bytes
    message_id: str
    added: tuple[str, ...]


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded continuation lines, CRLF-terminated) and the body."""
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


def field_name(field: bytes) -> bytes:
    match = _HEADER_NAME.match(field)
    return match.group(1).lower() if match else b""


def field_value(field: bytes) -> str:
    return field.split(b":", 1)[1].strip().decode("utf-8", "replace")


def feedback_id(did: str, domain: str) -> str:
    return f"transactional:{did}:{domain}:atmosphere-mail"


def prepare(message: bytes, did: str, domain: str, now: float, trace: bytes = b"", own_id: str = "") -> Prepared:
    """`own_id` is the Message-ID given to a message that has none (the relay's marked one, message_token)."""
    fields, body = split(message)
    kept = [f for f in fields if field_name(f) not in DROPPED and field_name(f)]
    names = {field_name(f) for f in kept}
    added = ["X-Atmos-Member-Did", "Feedback-ID"]
    top = [f"X-Atmos-Member-Did: {did}\r\n".encode(), f"Feedback-ID: {feedback_id(did, domain)}\r\n".encode()]
    bottom: list[bytes] = []
    message_id = ""
    for f in kept:
        if field_name(f) == b"message-id":
            message_id = field_value(f)
            break
    if not message_id:
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d%H%M%S")
        message_id = own_id or f"<{stamp}.{secrets.token_hex(8)}@{domain}>"
        bottom.append(f"Message-ID: {message_id}\r\n".encode())
        added.append("Message-ID")
    if b"date" not in names:
        bottom.append(f"Date: {format_datetime(datetime.fromtimestamp(now, timezone.utc))}\r\n".encode())
        added.append("Date")
    out = trace + b"".join(top + kept + bottom) + b"\r\n" + body
    return Prepared(out, message_id, tuple(added))
