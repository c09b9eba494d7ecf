"""Google Groups: a post the group refused (no such group, or no right to post), in the sender's language.

Sent by mailer-daemon@googlemail.com with X-Failed-Recipients naming the
group and the prose localized; Sisimai reads every one as `rejected`.
"""
from __future__ import annotations

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import addresses_in
from functions.inbound.bounces.reading import Bounced

NAME = "googlegroups"


def recognises(doc: Document) -> bool:
    return "googlemail.com" in doc.sender.lower() and doc.has_header("X-Failed-Recipients") and (
        "groups.google" in doc.text or "Google Group" in doc.text or doc.has_header("X-Google-Group-Id"))


def read(doc: Document) -> list[Bounced] | None:
    diagnostic = doc.prose[:1000]
    return [Bounced(a, "rejected", "5.0.0", diagnostic=diagnostic)
            for a in sorted(addresses_in(doc.header("X-Failed-Recipients")))] or None
