"""Lotus Notes and Domino: the failure reason is written before the address ("Failure Reasons", "because:").

Notes' own wording for an unknown user is "not listed in (public) Name &
Address Book" or "not listed in Domino Directory".
"""
from __future__ import annotations

import re

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR, scan
from functions.inbound.bounces.reading import Bounced

NAME = "notes"
_UNLISTED = re.compile(r"not listed in (public )?(name & address book|domino directory)|no such user", re.I)
_ADDRESS = re.compile(rf"<?({ADDR})>?")


def recognises(doc: Document) -> bool:
    return any("------- Failure Reasons" in line for line in doc.lines[:10]) or (
        "DELIVERY FAILURE" in doc.subject and any("was not delivered to" in line for line in doc.lines[:10]))


def read(doc: Document) -> list[Bounced] | None:
    text = " ".join(doc.lines) + " " + doc.subject
    reason = "userunknown" if _UNLISTED.search(text) else ""
    found = scan(doc.lines, set())
    if not found:
        hit = _ADDRESS.search(doc.subject)
        found = [Bounced(hit.group(1), "", "")] if hit else []
    for rcpt in found:
        rcpt.reason = rcpt.reason or reason
        rcpt.diagnostic = rcpt.diagnostic or doc.prose[:500]
    return found or None
