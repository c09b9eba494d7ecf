"""McAfee Email Gateway (X-NAI-Header): an RFC 3464 report whose diagnostics are the remote replies.

Sisimai reads its user-not-found replies as userunknown whatever command
they followed, because the gateway only bounces at RCPT.
"""
from __future__ import annotations

import re

from functions.inbound.bounces import rfc3464
from functions.inbound.bounces.document import Document
from functions.inbound.bounces.reading import Bounced

NAME = "mcafee"
_UNKNOWN = re.compile(r"unknown user|user not exist|no such user|user unknown", re.I)


def recognises(doc: Document) -> bool:
    return "McAfee" in doc.header("X-NAI-Header")


def read(doc: Document) -> list[Bounced] | None:
    dsn = rfc3464.read(doc)
    if not dsn:
        return None
    for rcpt in dsn[1]:
        if _UNKNOWN.search(rcpt.diagnostic):
            rcpt.command = rcpt.command or "RCPT"
    return dsn[1]
