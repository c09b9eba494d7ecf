"""Yahoo! Mail: "Sorry, we were unable to deliver your message to the following address.", then `<address>:`.

Under the address comes the remote reply ("Remote host said: 550 5.1.1 ...")
with the SMTP command it answered in brackets at its end (`[RCPT_TO]`,
`[MAIL_FROM]`, `[DATA]`, `[BODY]`). A reply without the bracket names no
command, which says nothing about when it came: user-unknown wording there
is an unknown user, not a filter.
"""
from __future__ import annotations

import re

from functions.inbound.bounces import reasons
from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR
from functions.inbound.bounces.reading import Bounced

NAME = "yahoo"
_SORRY = re.compile(r"Sorry, we were unable to deliver your message to the following address", re.I)
_ADDRESS = re.compile(rf"^\s*<({ADDR})>:?\s*$")
_COMMAND = re.compile(r"\[(RCPT_TO|MAIL_FROM|DATA|BODY)\]")
_COMMANDS = {"RCPT_TO": "RCPT", "MAIL_FROM": "MAIL", "DATA": "DATA", "BODY": "DATA"}


def recognises(doc: Document) -> bool:
    return "we were unable to deliver your message" in doc.text


def read(doc: Document) -> list[Bounced] | None:
    start = next((i for i, line in enumerate(doc.lines) if _SORRY.search(line)), -1)
    found: list[tuple[str, list[str]]] = []
    for line in doc.lines[start + 1:start + 400] if start >= 0 else []:
        address = _ADDRESS.match(line)
        if address:
            found.append((address.group(1), []))
        elif found and line.strip() and len(found[-1][1]) < 12:
            found[-1][1].append(line.strip())
    out = []
    for address, lines in found[:100]:
        diagnostic = " ".join(lines)
        bracket = _COMMAND.search(diagnostic)
        command = _COMMANDS[bracket.group(1)] if bracket else ""
        status = reasons.status_in(diagnostic)
        out.append(Bounced(address, reasons.reason_of(diagnostic, status, command, dsn=False), status,
                           diagnostic=diagnostic, command=command))
    return out or None
