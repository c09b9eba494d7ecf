"""A remote MTA's reply at delivery time, read with the same reason table as the bounces that come back.

`deliver` sees the 4xx/5xx of the recipient's MX; `classify` names its
reason in Sisimai's vocabulary (`bounces.reasons`) so a `550 5.7.1 ...
blocked using Spamhaus` is `blocked` (the pool's IP) and not an unknown
mailbox, and `feedback` suppresses only where `suppression_policy` says.
"""
from __future__ import annotations

from dataclasses import dataclass

from functions.inbound.bounces import reasons


@dataclass(frozen=True)
class Classification:
    kind: str
    reason: str
    status: str


def classify(status: str, text: str = "", code: int | None = None) -> Classification:
    """Hard or soft and Sisimai's reason for one SMTP reply (`code` gives the class when there is no status)."""
    status = (status or "").strip()
    if not reasons.status_in(status) and code:
        status = f"{str(code)[0]}.0.0"
    reason = reasons.reason_of(text or "", status, "RCPT" if reasons.by_text(text or "") == "userunknown" else "")
    if status.startswith("4.") and reason in reasons.HARD:
        reason = "networkerror" if reason == "hostunknown" else reason
    return Classification(reasons.kind_of(reason, status), reason, status or "5.0.0")
