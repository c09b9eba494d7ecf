"""Feedback reports (ARF, RFC 5965): a recipient's provider telling us they clicked "spam".

A report is multipart/report; report-type=feedback-report with a
machine-readable message/feedback-report part and the returned message (or
its headers). Providers are lenient with the format (Version: 0.1,
Received-Date), so parsing is too.
"""
from __future__ import annotations

import email
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

SINGLE = ("Feedback-Type", "User-Agent", "Version", "Original-Envelope-Id", "Original-Mail-From", "Arrival-Date",
          "Received-Date", "Reporting-MTA", "Source-IP", "Incidents")
MULTI = ("Original-Rcpt-To", "Reported-Domain", "Reported-URI", "Authentication-Results")


@dataclass
class FeedbackReport:
    feedback_type: str
    user_agent: str = ""
    version: str = ""
    original_mail_from: str = ""
    original_rcpt_to: list[str] = field(default_factory=list)
    arrival_date: str = ""
    source_ip: str = ""
    reporting_mta: str = ""
    reported_domain: list[str] = field(default_factory=list)
    incidents: str = ""
    returned: Message | None = None

    def as_dict(self) -> dict:
        return {"feedback_type": self.feedback_type, "user_agent": self.user_agent, "version": self.version,
                "original_mail_from": self.original_mail_from, "original_rcpt_to": self.original_rcpt_to,
                "arrival_date": self.arrival_date, "source_ip": self.source_ip,
                "reporting_mta": self.reporting_mta, "reported_domain": self.reported_domain,
                "incidents": self.incidents}


def _fields_of(part: Message) -> Message:
    """The report fields, whether the part was parsed into a payload or kept as text."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        merged = Message()
        for sub in payload:
            for key, value in sub.items():
                merged[key] = value
        return merged
    text = part.get_payload(decode=True) or b""
    return HeaderParser().parsestr(text.decode("utf-8", "replace").strip() + "\n")


def _returned(part: Message) -> Message | None:
    ctype = part.get_content_type()
    if ctype in ("message/rfc822", "message/global"):
        payload = part.get_payload()
        return payload[0] if isinstance(payload, list) and payload else None
    if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
        raw = part.get_payload(decode=True) or b""
        return email.message_from_bytes(raw)
    return None


def parse(message: Message) -> FeedbackReport | None:
    """The report carried by `message`, or None when it is not an ARF report."""
    if message.get_content_type() != "multipart/report":
        return None
    if (message.get_param("report-type") or "").lower() != "feedback-report":
        return None
    fields: Message | None = None
    returned: Message | None = None
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report" and fields is None:
            fields = _fields_of(part)
        elif returned is None and part is not message:
            returned = _returned(part)
    if fields is None:
        return None
    report = FeedbackReport(
        feedback_type=(fields.get("Feedback-Type") or "abuse").strip().lower(),
        user_agent=(fields.get("User-Agent") or "").strip(),
        version=(fields.get("Version") or "").strip(),
        original_mail_from=(fields.get("Original-Mail-From") or "").strip().strip("<>"),
        original_rcpt_to=[v.strip().strip("<>") for v in fields.get_all("Original-Rcpt-To", [])],
        arrival_date=(fields.get("Arrival-Date") or fields.get("Received-Date") or "").strip(),
        source_ip=(fields.get("Source-IP") or "").strip(),
        reporting_mta=(fields.get("Reporting-MTA") or "").strip(),
        reported_domain=[v.strip() for v in fields.get_all("Reported-Domain", [])],
        incidents=(fields.get("Incidents") or "").strip(),
        returned=returned,
    )
    return report
