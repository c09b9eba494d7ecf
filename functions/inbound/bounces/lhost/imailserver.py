"""Ipswitch IMail Server: one line per failed recipient, `<cause>: <address>`, then "Original message follows."

The cause comes first and in IMail's own words, so its table decides.
"""
from __future__ import annotations

import re

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR
from functions.inbound.bounces.reading import Bounced

NAME = "imailserver"
_LINE = re.compile(rf"^\s*([A-Za-z][A-Za-z ]{{3,60}}):\s*<?({ADDR})>?\s*$")
_CAUSES = [("userunknown", re.compile(r"unknown user|invalid final delivery userid", re.I)),
           ("mailboxfull", re.compile(r"user mailbox exceeds allowed size|mailbox full", re.I)),
           ("hostunknown", re.compile(r"unknown host|host not found", re.I)),
           ("expired", re.compile(r"delivery failed \d+ attempts", re.I))]


def recognises(doc: Document) -> bool:
    first = next((line for line in doc.lines if line.strip()), "")
    return doc.header("X-Mailer").lower().startswith("<smtp32") or (
        "Undeliverable Mail" in doc.subject and bool(_LINE.match(first)))


def read(doc: Document) -> list[Bounced] | None:
    found = []
    for line in doc.lines[:200]:
        hit = _LINE.match(line)
        if hit:
            reason = next((name for name, pattern in _CAUSES if pattern.search(hit.group(1))), "")
            found.append(Bounced(hit.group(2), reason, "", diagnostic=line.strip()))
    return found or None
