"""Feedback reports (ARF, RFC 5965): a recipient's provider telling us they clicked "spam".

multipart/report; report-type=feedback-report with a message/feedback-report
part and the returned message or its headers. Providers are lenient with
the format (Version: 0.1, Received-Date, a report-type missing or the
fields in a text part), so reading is too.
"""
from __future__ import annotations

from email.message import Message

from functions.inbound.bounces.document import Document, header_text, value_text
from functions.inbound.bounces.reading import Bounced, Feedback
from functions.inbound.bounces.rfc3464 import blocks, payload_text

SINGLE = ("Feedback-Type", "User-Agent", "Version", "Original-Envelope-Id", "Original-Mail-From", "Arrival-Date",
          "Received-Date", "Reporting-MTA", "Source-IP", "Incidents")
MULTI = ("Original-Rcpt-To", "Reported-Domain", "Reported-URI", "Authentication-Results")


def _fields(doc: Document) -> Message | None:
    part = next((p for p in doc.parts if p.get_content_type() == "message/feedback-report"), None)
    if part is None:
        return None
    payload = part.get_payload()
    found = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else blocks(
        payload_text(part))
    merged = Message()
    for block in found:
        for key, value in block.items():  # every value of a repeated field (Original-Rcpt-To) as it stands
            merged[key] = value_text(value)
    return merged


def _values(fields: Message, name: str) -> list[str]:
    try:
        return [" ".join(str(v).split()) for v in fields.get_all(name, [])]
    except Exception:
        return []


def _microsoft_jmrp(doc: Document) -> tuple[Feedback, list[Bounced]] | None:
    """Hotmail/Outlook.com's older complaint: the message returned whole, the complainant in X-HmXmrOriginalRecipient."""
    complainant = header_text(doc.returned, "X-HmXmrOriginalRecipient").strip().strip("<>")
    if not complainant or "@" not in complainant:
        return None
    report = {"feedback_type": "abuse", "user_agent": "Microsoft JMRP", "original_rcpt_to": [complainant],
              "source_ip": header_text(doc.returned, "X-Reporter-IP").strip()}
    return Feedback("abuse", "Microsoft JMRP", "", report), [
        Bounced(complainant, "feedback", "", kind="complaint", action="complained", diagnostic="abuse")]


def read(doc: Document) -> tuple[Feedback, list[Bounced]] | None:
    fields = _fields(doc)
    if fields is None:
        return _microsoft_jmrp(doc) if doc.returned is not None else None
    one = {name: (_values(fields, name) or [""])[0] for name in SINGLE}
    feedback_type = (one["Feedback-Type"] or "abuse").strip().lower()
    rcpt_to = [v.strip("<>") for v in _values(fields, "Original-Rcpt-To")]
    report = {
        "feedback_type": feedback_type, "user_agent": one["User-Agent"], "version": one["Version"],
        "original_mail_from": one["Original-Mail-From"].strip("<>"), "original_rcpt_to": rcpt_to,
        "arrival_date": one["Arrival-Date"] or one["Received-Date"], "source_ip": one["Source-IP"],
        "reporting_mta": one["Reporting-MTA"], "reported_domain": _values(fields, "Reported-Domain"),
        "incidents": one["Incidents"]}
    complainants = rcpt_to or [header_text(doc.returned, "To")] if doc.returned is not None else rcpt_to
    recipients = [Bounced(a.strip().strip("<>"), "feedback", "", kind="complaint", action="complained",
                          diagnostic=feedback_type) for a in complainants if a and "@" in a]
    return Feedback(feedback_type, one["User-Agent"], report["original_mail_from"], report), recipients
