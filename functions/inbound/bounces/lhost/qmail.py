"""qmail: "Hi. This is the qmail-send program at <host>", then `<address>:` and what went wrong.

Under each address qmail-send writes one paragraph: its own sentence
("Sorry, no mailbox here by that name. (#5.1.1)", "Sorry, I couldn't find
any host named ..."), or the remote host's reply after `<ip> does not like
recipient.` (RCPT), `Connected to <ip> but sender was rejected.` (MAIL) or
`<ip> failed after I sent the message.` (DATA), ending with `Giving up on
<ip>.` The `(#x.y.z)` in its own sentences is the enhanced status.
"""
from __future__ import annotations

import re

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR
from functions.inbound.bounces.reading import Bounced

NAME = "qmail"
_GREETING = re.compile(r"This is the qmail-send program|qmail-send program at|I'm afraid I wasn't able to deliver "
                       r"your message to the following addresses", re.I)
_ADDRESS = re.compile(rf"^\s*<({ADDR})>:?\s*(.*)$")
_COMMAND = [("RCPT", re.compile(r"does not like recipient", re.I)),
            ("MAIL", re.compile(r"but sender was rejected", re.I)),
            ("DATA", re.compile(r"failed after I sent the message", re.I)),
            ("CONNECT", re.compile(r"(greeting|connection) (failed|refused|was not accepted)", re.I))]
_OWN_STATUS = re.compile(r"\(#([45]\.\d{1,3}\.\d{1,3})\)")
_END = re.compile(r"^\s*-+\s*(below this line|enclosed is)", re.I)


def recognises(doc: Document) -> bool:
    return ("qmail-send program" in doc.text or "wasn't able to deliver your message" in doc.text) and bool(
        _GREETING.search(doc.text))


def read(doc: Document) -> list[Bounced] | None:
    found: list[Bounced] = []
    paragraph: list[str] = []

    def close() -> None:
        if found and paragraph:
            text = " ".join(paragraph)
            found[-1].diagnostic = text[:1000]
            found[-1].command = next((name for name, pattern in _COMMAND if pattern.search(text)), "")
            own = _OWN_STATUS.search(text)
            found[-1].status = own.group(1) if own else ""
    for line in doc.lines[:1000]:
        if _END.match(line):
            break
        address = _ADDRESS.match(line)
        if address:
            close()
            found.append(Bounced(address.group(1), ""))
            paragraph = [address.group(2)] if address.group(2) else []
        elif found and line.strip():
            paragraph.append(line.strip())
    close()
    return found[:200] or None
