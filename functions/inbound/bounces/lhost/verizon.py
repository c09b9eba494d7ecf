"""Verizon Wireless MMS gateways (vtext.com, vzwpix.com): "Message could not be delivered to mobile".

The recipient is only in the returned message's To:; "No valid recipients"
is an unknown number.
"""
from __future__ import annotations

import re

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import addresses_in
from functions.inbound.bounces.reading import Bounced

NAME = "verizon"
_TO = re.compile(r"^To:\s*(.+)$", re.M)


def recognises(doc: Document) -> bool:
    sender = doc.sender.lower()
    return ("vzwpix.com" in sender or "vtext.com" in sender) and "could not be delivered" in doc.text


def read(doc: Document) -> list[Bounced] | None:
    found = _TO.search(doc.text)
    addresses = sorted(addresses_in(found.group(1))) if found else []
    reason = "userunknown" if "No valid recipients" in doc.text else ""
    diagnostic = doc.prose[:500]
    return [Bounced(a, reason, "", diagnostic=diagnostic) for a in addresses] or None
