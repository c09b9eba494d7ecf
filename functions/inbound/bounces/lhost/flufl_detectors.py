"""Mailing-list-era formats (Microsoft Exchange 5, AOL, Yale, GroupWise, SimpleMatch ...) through flufl.bounce.

flufl.bounce (PyPI, GNU Mailman's bounce detectors) knows a long tail of
old formats by their exact wording. It is asked last, only for a message
that looks like a bounce and that no reader of ours could read; its
addresses then get their reason from our table like any other.
"""
from __future__ import annotations

from email.message import Message

from functions.inbound.bounces.document import Document
from functions.inbound.bounces.reading import Bounced

NAME = "flufl.bounce"


def _readable(part: Message, depth: int = 0) -> Message:
    """The message without its attachments: the detectors would scan a returned PDF or image line by line."""
    payload = part.get_payload()
    if not isinstance(payload, list) or depth > 10:
        return part
    kept = [_readable(p, depth + 1) for p in payload
            if isinstance(p, Message) and p.get_content_maintype() in ("text", "message", "multipart")]
    if len(kept) == len(payload) and all(k is p for k, p in zip(kept, payload)):
        return part
    copy = Message()
    for name, value in part.items():
        copy[name] = value
    copy.set_payload(kept)
    return copy


def read(doc: Document) -> list[Bounced] | None:
    from flufl.bounce import all_failures  # its 150 patterns compile on import; most processes never get here

    try:
        temporary, permanent = all_failures(_readable(doc.message))
    except Exception:  # its detectors trip over some malformed messages
        return None
    diagnostic = doc.prose[:1500]
    found = [Bounced(_text(a), "", "", action="failed", diagnostic=diagnostic) for a in sorted(permanent)]
    found += [Bounced(_text(a), "", "4.0.0", action="delayed", diagnostic=diagnostic)
              for a in sorted(temporary - permanent)]
    return [b for b in found if "@" in b.recipient][:100] or None


def _text(address: bytes | str) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
