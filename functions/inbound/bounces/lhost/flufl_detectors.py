"""Mailing-list-era formats (Microsoft Exchange 5, AOL, Yale, GroupWise, SimpleMatch ...) through flufl.bounce.

flufl.bounce (PyPI, GNU Mailman's bounce detectors) knows a long tail of
old formats by their exact wording. It is asked last, only for a message
that looks like a bounce and that no reader of ours could read; its
addresses then get their reason from our table like any other.
"""
from __future__ import annotations

from flufl.bounce import all_failures

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.reading import Bounced

NAME = "flufl.bounce"


def read(doc: Document) -> list[Bounced] | None:
    try:
        temporary, permanent = all_failures(doc.message)
    except Exception:  # its detectors trip over some malformed messages
        return None
    diagnostic = " ".join(" ".join(doc.lines).split())[:1500]
    found = [Bounced(_text(a), "", "", action="failed", diagnostic=diagnostic) for a in sorted(permanent)]
    found += [Bounced(_text(a), "", "4.0.0", action="delayed", diagnostic=diagnostic)
              for a in sorted(temporary - permanent)]
    return [b for b in found if "@" in b.recipient][:100] or None


def _text(address: bytes | str) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
