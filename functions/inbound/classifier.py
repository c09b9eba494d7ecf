"""What an inbound message is: complaint, bounce, auto-reply, operator mail, a reply for a member, or unknown.

The reading (ARF, RFC 3464, each MTA family's own bounces, RFC 3834
auto-replies) is `bounces.read`, which never raises; whatever it does not
recognise is classified by the address it was sent to. A message over the
reading bounds is `unknown` with the reason in its details.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from email.message import Message

from functions.inbound import bounces
from functions.inbound.addresses import InboundAddress
from functions.inbound.attribution import Attribution, by_queue


@dataclass
class RecipientOutcome:
    address: str
    kind: str  # "hard" | "soft" | "complaint"
    status: str
    reason: str
    action: str = "failed"  # "failed" | "delayed" | "complained"
    diagnostic: str = ""

    def as_dict(self) -> dict:
        return {"address": self.address, "kind": self.kind, "status": self.status, "reason": self.reason,
                "action": self.action, "diagnostic": self.diagnostic}


@dataclass
class Verdict:
    classification: str
    attribution: Attribution | None = None
    recipients: list[RecipientOutcome] = field(default_factory=list)
    feedback_type: str = ""
    user_agent: str = ""
    details: dict = field(default_factory=dict)

    @property
    def member_did(self) -> str | None:
        return self.attribution.did if self.attribution else None


def _attribute(conn: sqlite3.Connection, targets: list[InboundAddress], returned: Message | None,
               operator_domain: str, senders: tuple[str, ...] = ()) -> Attribution | None:
    """The VERP address it came to; proof from the quoted message is the handler's (attribution.prove)."""
    for target in targets:
        if target.kind == "bounce":
            found = by_queue(conn, target.queue_id, target.index)
            if found:
                return found
    return None


def _outcome(rcpt: bounces.Bounced) -> RecipientOutcome:
    """The relay's own recipient: the address it sent to, not where the receiving side rewrote it."""
    return RecipientOutcome(rcpt.sent_to, rcpt.kind, rcpt.status, rcpt.reason, rcpt.action, rcpt.diagnostic[:500])


def _complaint(conn, reading: bounces.Reading, targets, operator_domain) -> Verdict:
    report = reading.feedback
    attribution = _attribute(conn, targets, reading.returned, operator_domain, (report.original_mail_from,))
    recipients = [_outcome(r) for r in reading.recipients]
    if not report.fields.get("original_rcpt_to") and attribution and attribution.recipient:
        recipients = [RecipientOutcome(attribution.recipient, "complaint", "", report.feedback_type, "complained")]
    for outcome in recipients:
        outcome.reason = report.feedback_type
    return Verdict("complaint", attribution, recipients, report.feedback_type, report.user_agent,
                   {"report": report.fields})


def _bounce(conn, reading: bounces.Reading, targets, operator_domain) -> Verdict:
    attribution = _attribute(conn, targets, reading.returned, operator_domain)
    recipients = [_outcome(r) for r in reading.recipients]
    if attribution and attribution.how == "verp" and attribution.recipient and len(recipients) == 1:
        recipients[0].address = attribution.recipient
    return Verdict("bounce", attribution, recipients, details={
        **reading.details(), "recipients": [r.as_dict() for r in reading.recipients]})


def classify(conn: sqlite3.Connection, message: Message, targets: list[InboundAddress],
             operator_domain: str) -> Verdict:
    reading = bounces.read(message)
    if reading.kind == "complaint":
        return _complaint(conn, reading, targets, operator_domain)
    if reading.kind == "bounce":
        return _bounce(conn, reading, targets, operator_domain)
    reply_to = next((t for t in targets if t.kind == "reply"), None)
    if reading.kind == "auto-reply":
        signals = reading.signals
        if reply_to is not None:
            return Verdict("auto-reply", Attribution(reply_to.member_did, "address"),
                           details={"signals": signals, "forward_to": reply_to.forward_to})
        return Verdict("auto-reply", _attribute(conn, targets, None, operator_domain), details={"signals": signals})
    kinds = {t.kind for t in targets}
    if reading.kind == "unreadable":
        return Verdict("unknown", details=reading.details())
    if reply_to is not None:
        return Verdict("reply", Attribution(reply_to.member_did, "address"),
                       details={"forward_to": reply_to.forward_to})
    if "operator" in kinds:
        return Verdict("operator", details={"aliases": sorted({t.alias for t in targets if t.alias})})
    return Verdict("unknown", _attribute(conn, targets, None, operator_domain), details=reading.details())
