"""Gmail: "Delivery to the following recipient failed permanently:" (or "has been delayed:"), then the addresses.

Google's notices (mailer-daemon@googlemail.com) list each recipient
indented on a line of its own, then "Technical details of permanent (or
temporary) failure:": Google's own sentence ("Google tried to deliver your
message, but it was rejected by the server for the recipient domain ...",
"The recipient server did not accept our requests to connect") and, after
"The error that the other server returned was:", the remote reply. A delay
notice is soft whatever it says. When a delivery-status part comes too,
its fields are the recipients and Google's words their diagnostic.
"""
from __future__ import annotations

import re

from functions.inbound.bounces import rfc3464
from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR
from functions.inbound.bounces.reading import Bounced

NAME = "gmail"
_HEADING = re.compile(r"Delivery to the following recipients? (failed permanently|has been delayed|"
                      r"was delayed|failed)", re.I)
_ADDRESS = re.compile(rf"^\s+<?({ADDR})>?\s*$")
_DETAILS = re.compile(r"Technical details of (permanent|temporary) failure", re.I)


def recognises(doc: Document) -> bool:
    sender = doc.sender.lower()
    return ("googlemail.com" in sender or "google.com" in sender) and bool(_HEADING.search(doc.text))


def read(doc: Document) -> list[Bounced] | None:
    start = next((i for i, line in enumerate(doc.lines) if _HEADING.search(line)), -1)
    if start < 0:
        return None
    delayed = "delay" in _HEADING.search(doc.lines[start]).group(1).lower()
    addresses, details = [], []
    for line in doc.lines[start + 1:start + 300]:
        found = _ADDRESS.match(line)
        if found and not details:
            addresses.append(found.group(1))
        elif _DETAILS.search(line) or details:
            details.append(line.strip())
        elif addresses and line.strip() and not details:
            details.append(line.strip())
    diagnostic = " ".join(" ".join(details).split())[:1000]
    dsn = rfc3464.read(doc) if doc.status_part is not None else None
    if dsn:
        for rcpt in dsn[1]:
            rcpt.diagnostic = rcpt.diagnostic or diagnostic
        return dsn[1]
    return [Bounced(address, "", "", action="delayed" if delayed else "failed", diagnostic=diagnostic)
            for address in addresses[:100]] or None
