"""What an inbound message is: complaint, bounce, auto-reply, operator mail, a reply for a member, or unknown.

Standards first (ARF, then RFC 3464 DSNs), then the non-standard bounces
real MTAs send, recognised by flufl.bounce's detectors, then RFC 3834
auto-replies; whatever is left is classified by the address it was sent to.
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message

from flufl.bounce import all_failures

from functions.inbound import arf, auto_reply, dsn
from functions.inbound.addresses import InboundAddress
from functions.inbound.attribution import Attribution, by_queue
from functions.inbound.bounce_reasons import classify as classify_status

_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mdaemon|returned|bounce", re.I)
_BOUNCE_SUBJECT = re.compile(r"undeliver|delivery (status|failure|notification)|returned mail|failure notice|"
                             r"could not be delivered|delivery has failed|non[- ]?delivery|mail delivery failed|"
                             r"warning: could not send|delivery problem", re.I)


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


def _text(message: Message) -> str:
    parts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts)


def _header(message: Message, name: str) -> str:
    try:
        return str(make_header(decode_header(message.get(name) or "")))
    except (UnicodeError, LookupError, HeaderParseError):
        return str(message.get(name) or "")


def _looks_like_bounce(message: Message, targets: list[InboundAddress]) -> bool:
    """Sent to a bounce address, or (for mail to other addresses) shaped like a bounce."""
    if not targets or any(t.kind == "bounce" for t in targets):
        return True
    return bool(_BOUNCE_SENDER.search(_header(message, "From")) or
                _BOUNCE_SUBJECT.search(_header(message, "Subject")) or
                (message.get("Return-Path") or "").strip() in ("<>", ""))


def _attribute(conn: sqlite3.Connection, targets: list[InboundAddress], returned: Message | None,
               operator_domain: str, senders: tuple[str, ...] = ()) -> Attribution | None:
    """The VERP address it came to; proof from the quoted message is the handler's (attribution.prove)."""
    for target in targets:
        if target.kind == "bounce":
            found = by_queue(conn, target.queue_id, target.index)
            if found:
                return found
    return None


def _complaint(conn, report: arf.FeedbackReport, targets, operator_domain) -> Verdict:
    attribution = _attribute(conn, targets, report.returned, operator_domain, (report.original_mail_from,))
    complainants = report.original_rcpt_to or ([report.returned.get("To", "")] if report.returned else [])
    if not report.original_rcpt_to and attribution and attribution.recipient:
        complainants = [attribution.recipient]
    recipients = [RecipientOutcome(a.strip(), "complaint", "", report.feedback_type, "complained")
                  for a in complainants if a and "@" in a]
    return Verdict("complaint", attribution, recipients, report.feedback_type, report.user_agent,
                   {"report": report.as_dict()})


def _delivery_report(conn, report: dsn.DeliveryReport, targets, operator_domain) -> Verdict:
    attribution = _attribute(conn, targets, report.returned, operator_domain)
    recipients = []
    for rcpt in report.recipients:
        if rcpt.action not in ("failed", "delayed"):
            continue
        verdict = classify_status(rcpt.status or ("5.0.0" if rcpt.action == "failed" else "4.0.0"),
                                  rcpt.diagnostic_code)
        kind = verdict.kind if rcpt.action == "failed" else "soft"
        reason = verdict.reason if rcpt.action == "failed" else "delayed"
        address = rcpt.original_recipient or rcpt.final_recipient
        if attribution and attribution.how == "verp" and attribution.recipient and len(report.recipients) == 1:
            address = attribution.recipient
        recipients.append(RecipientOutcome(address, kind, verdict.status, reason, rcpt.action, rcpt.diagnostic_code))
    classification = "bounce" if recipients else "unknown"
    return Verdict(classification, attribution, recipients,
                   details={"reporting_mta": report.reporting_mta,
                            "recipients": [r.as_dict() for r in report.recipients]})


def _detected_bounce(conn, message: Message, targets, operator_domain) -> Verdict | None:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # flufl.bounce's detectors trip over some malformed messages
        return None
    if not temporary and not permanent:
        return None
    text = _text(message)
    status = dsn.status_of(text)
    recipients = []
    for raw, temp in [(a, False) for a in sorted(permanent)] + [(a, True) for a in sorted(temporary)]:
        address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        verdict = classify_status(status if status and status[0] == ("4" if temp else "5") else
                                  ("4.0.0" if temp else "5.0.0"), text)
        recipients.append(RecipientOutcome(address, "soft" if temp else verdict.kind, verdict.status,
                                           verdict.reason if not temp else "temporary failure",
                                           "delayed" if temp else "failed"))
    attribution = _attribute(conn, targets, _embedded_original(message), operator_domain)
    if attribution and attribution.how == "verp" and attribution.recipient and len(recipients) == 1:
        recipients[0].address = attribution.recipient
    return Verdict("bounce", attribution, recipients, details={"detector": "flufl.bounce"})


def _embedded_original(message: Message) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
    return None


def classify(conn: sqlite3.Connection, message: Message, targets: list[InboundAddress],
             operator_domain: str) -> Verdict:
    report = arf.parse(message)
    if report is not None:
        return _complaint(conn, report, targets, operator_domain)
    delivery = dsn.parse(message)
    if delivery is not None:
        verdict = _delivery_report(conn, delivery, targets, operator_domain)
        if verdict.classification == "bounce" or delivery.recipients:
            return verdict
    if _looks_like_bounce(message, targets):
        detected = _detected_bounce(conn, message, targets, operator_domain)
        if detected is not None:
            return detected
    reply_to = next((t for t in targets if t.kind == "reply"), None)
    signals = auto_reply.signals(message)
    if signals:
        if reply_to is not None:
            return Verdict("auto-reply", Attribution(reply_to.member_did, "address"),
                           details={"signals": signals, "forward_to": reply_to.forward_to})
        return Verdict("auto-reply", _attribute(conn, targets, None, operator_domain), details={"signals": signals})
    kinds = {t.kind for t in targets}
    if reply_to is not None:
        return Verdict("reply", Attribution(reply_to.member_did, "address"),
                       details={"forward_to": reply_to.forward_to})
    if "operator" in kinds:
        return Verdict("operator", details={"aliases": sorted({t.alias for t in targets if t.alias})})
    return Verdict("unknown", _attribute(conn, targets, None, operator_domain))
