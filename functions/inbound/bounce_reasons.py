"""Why a recipient failed, from an SMTP reply or DSN status (RFC 3463 codes, then the text).

`hard` means the address itself is bad (it will never work: unknown
mailbox, no such domain, disabled); everything else is `soft` (full,
policy or spam block, remote trouble, expired), because the same address
may well accept mail later. Only hard failures suppress a recipient.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_BY_CODE = {
    "1.0": ("hard", "bad address"),
    "1.1": ("hard", "mailbox unknown"),
    "1.2": ("hard", "host unknown"),
    "1.3": ("hard", "bad address syntax"),
    "1.4": ("hard", "ambiguous address"),
    "1.6": ("hard", "mailbox moved"),
    "1.10": ("hard", "domain accepts no mail"),
    "2.0": ("soft", "mailbox problem"),
    "2.1": ("hard", "mailbox disabled"),
    "2.2": ("soft", "mailbox full"),
    "2.3": ("soft", "message too large"),
    "2.4": ("soft", "mailing list expansion problem"),
    "3.0": ("soft", "remote system problem"),
    "3.1": ("soft", "remote system full"),
    "3.2": ("soft", "remote system not accepting mail"),
    "3.4": ("soft", "message too large"),
    "4.0": ("soft", "network or routing problem"),
    "4.1": ("soft", "no answer from host"),
    "4.2": ("soft", "connection dropped"),
    "4.3": ("soft", "DNS failure"),
    "4.4": ("soft", "unable to route"),
    "4.6": ("soft", "routing loop"),
    "4.7": ("soft", "expired"),
    "5.0": ("soft", "protocol problem"),
    "6.0": ("soft", "content rejected"),
    "7.0": ("soft", "policy or spam block"),
    "7.1": ("soft", "policy or spam block"),
    "7.26": ("soft", "authentication failed (DMARC/SPF/DKIM)"),
    "7.25": ("soft", "reverse DNS failed"),
    "7.27": ("soft", "authentication failed (DMARC/SPF/DKIM)"),
}

_TEXT = [
    (re.compile(r"user unknown|unknown user|no such (user|mailbox|recipient|address)|does not exist|"
                r"doesn'?t exist|invalid (recipient|mailbox|address)|recipient (address )?rejected: "
                r"(user|mailbox)|mailbox (not found|unavailable|does not)|not a valid mailbox|"
                r"unrouteable address|address rejected|account (is )?(disabled|closed|inactive)", re.I),
     ("hard", "mailbox unknown")),
    (re.compile(r"host (or domain name )?not found|domain (not found|does not exist)|name or service not known|"
                r"no mx|nxdomain", re.I), ("hard", "host unknown")),
    (re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (disk )?space|storage", re.I),
     ("soft", "mailbox full")),
    (re.compile(r"spam|blocked|block ?list|black ?list|listed|reputation|policy|rejected for policy|"
                r"not accepted|denied|dmarc|spf|dkim", re.I), ("soft", "policy or spam block")),
    (re.compile(r"too (large|big)|size limit|exceeds", re.I), ("soft", "message too large")),
    (re.compile(r"expired|too long|delivery time|retry timeout", re.I), ("soft", "expired")),
]


@dataclass(frozen=True)
class Classification:
    kind: str
    reason: str
    status: str


def classify(status: str, text: str = "", code: int | None = None) -> Classification:
    """Hard or soft, and a short reason an operator understands."""
    status = (status or "").strip()
    parts = status.split(".")
    klass = parts[0] if parts and parts[0] in ("2", "4", "5") else ""
    if not klass and code:
        klass = str(code)[0]
        status = f"{klass}.0.0"
    if klass == "4":
        detail = ".".join(parts[1:3]) if len(parts) == 3 else ""
        reason = _BY_CODE.get(detail, ("soft", ""))[1] or _from_text(text, ("soft", "temporary failure"))[1]
        return Classification("soft", reason, status)
    detail = ".".join(parts[1:3]) if len(parts) == 3 else ""
    if detail in _BY_CODE and detail not in ("0.0", "1.0", "7.0", "5.0"):
        kind, reason = _BY_CODE[detail]
        return Classification(kind, reason, status)
    kind, reason = _from_text(text, _BY_CODE.get(detail, ("soft", "permanent failure")))
    return Classification(kind, reason, status or "5.0.0")


def _from_text(text: str, default: tuple[str, str]) -> tuple[str, str]:
    for pattern, verdict in _TEXT:
        if pattern.search(text or ""):
            return verdict
    return default
