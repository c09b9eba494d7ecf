"""Postfix: "This is the mail system at host ..." with `<address>: host X said: <reply> (in reply to <CMD> command)`.

Postfix sends an RFC 3464 report, but its text part names the SMTP
command the remote refused, which decides between userunknown and
filtered; older versions send only the text.
"""
from __future__ import annotations

import re

from functions.inbound.bounces import rfc3464
from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import scan
from functions.inbound.bounces.reading import Bounced

NAME = "postfix"
_IN_REPLY = re.compile(r"\(in reply to (RCPT TO|MAIL FROM|end of DATA|DATA|HELO|EHLO)", re.I)


def recognises(doc: Document) -> bool:
    return "This is the mail system at host" in doc.text or "The Postfix program" in doc.text


def read(doc: Document) -> list[Bounced] | None:
    start = next((i for i, line in enumerate(doc.lines) if "The mail system" in line or "Postfix program" in line),
                 0)
    prose = {b.recipient.lower(): b for b in scan(doc.lines[start:], set())}
    dsn = rfc3464.read(doc)
    found = dsn[1] if dsn else list(prose.values())
    for rcpt in found:
        told = prose.get(rcpt.recipient.lower())
        text = told.diagnostic if told else ""
        command = _IN_REPLY.search(text) or _IN_REPLY.search(rcpt.diagnostic)
        if command:
            rcpt.command = rfc3464.command_of(command.group(1))
        if not rcpt.diagnostic and text:
            rcpt.diagnostic = text
    return found or None
