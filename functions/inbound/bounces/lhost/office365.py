"""Office 365 / Exchange Online: "Delivery has failed to these recipients or groups:" and X-MS-Exchange headers.

Exchange Online's NDR (X-MS-Exchange-Message-Is-Ndr, the CrossTenant
headers) has a text part for people: each recipient as
`address<mailto:address>` under "Delivery has failed to these recipients
or groups" (or "Your message to <address> couldn't be delivered"), and,
under "Diagnostic information for administrators:", the generating
server, the recipient again, and `Remote Server returned '<reply>'`. The
delivery-status part, when it comes, names the recipients; the remote
reply from the text is their diagnostic where the fields give none.
"""
from __future__ import annotations

import re

from functions.inbound.bounces import reasons, rfc3464
from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR
from functions.inbound.bounces.reading import Bounced

NAME = "office365"
_FAILED = re.compile(r"Delivery has failed to these recipients or groups|Your message to .{1,200} couldn't be "
                     r"delivered|Diagnostic information for administrators", re.I)
_LISTED = re.compile(rf"^\s*<?({ADDR})>?\s*(?:<mailto:[^>]*>|\({ADDR}\))?\s*$")
_RETURNED = re.compile(r"Remote Server returned '([^']{1,1000})'?", re.I)
_EXCHANGE_REPLY = re.compile(r"#([45]\d\d [45]\.\d{1,3}\.\d{1,3}[^#]{0,300})")
_TO = re.compile(rf"Your message to ({ADDR}) couldn't be delivered", re.I)


def recognises(doc: Document) -> bool:
    microsoft = doc.has_header("X-MS-Exchange-Message-Is-Ndr") or doc.has_header(
        "X-MS-Exchange-CrossTenant-OriginalArrivalTime")
    return microsoft and bool(_FAILED.search(doc.text[:20000]))


def _replies(doc: Document) -> dict[str, str]:
    """What each recipient's server replied, from the administrators' block (the recipient named before it)."""
    found: dict[str, str] = {}
    last = ""
    for line in doc.lines[:1000]:
        listed = _LISTED.match(line)
        if listed:
            last = listed.group(1).lower()
        reply = _RETURNED.search(line) or _EXCHANGE_REPLY.search(line)
        if reply and last:
            found.setdefault(last, reply.group(1).strip())
    return found


def read(doc: Document) -> list[Bounced] | None:
    replies = _replies(doc)
    dsn = rfc3464.read(doc)
    if dsn:
        for rcpt in dsn[1]:
            told = replies.get(rcpt.recipient.lower(), "")
            if told and (not rcpt.diagnostic or told not in rcpt.diagnostic):
                rcpt.diagnostic = f"{rcpt.diagnostic} {told}".strip()
        return dsn[1]
    addresses = list(replies) or [m.group(1) for m in map(_TO.search, doc.lines[:50]) if m][:1]
    text = doc.prose[:1000]
    return [Bounced(a, "", reasons.status_in(replies.get(a.lower(), "")),
                    diagnostic=replies.get(a.lower(), "") or text) for a in addresses[:100]] or None
