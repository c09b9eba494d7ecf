"""Delivery status notifications (RFC 3464): what a remote MTA says became of each recipient.

A DSN is multipart/report; report-type=delivery-status whose
message/delivery-status part holds one per-message block then one block
per recipient (Final-Recipient, Action, Status, Diagnostic-Code,
Remote-MTA). The returned original, when present, carries our attribution
headers.
"""
from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CODE = re.compile(r"\b([245])\d\d\b")


@dataclass
class RecipientStatus:
    final_recipient: str
    action: str
    status: str
    diagnostic_code: str = ""
    remote_mta: str = ""
    original_recipient: str = ""

    def as_dict(self) -> dict:
        return {"final_recipient": self.final_recipient, "action": self.action, "status": self.status,
                "diagnostic_code": self.diagnostic_code, "remote_mta": self.remote_mta,
                "original_recipient": self.original_recipient}


@dataclass
class DeliveryReport:
    reporting_mta: str = ""
    arrival_date: str = ""
    recipients: list[RecipientStatus] = field(default_factory=list)
    returned: Message | None = None


def _address(value: str) -> str:
    """`rfc822; user@example.com` → user@example.com."""
    kind, sep, rest = (value or "").partition(";")
    return (rest if sep else kind).strip().strip("<>")


def _value(value: str) -> str:
    kind, sep, rest = (value or "").partition(";")
    return " ".join((rest if sep else kind).split())


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace").replace("\r\n", "\n")
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\n\s*\n", text) if block.strip()]


def _returned(message: Message) -> Message | None:
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            return email.message_from_bytes(part.get_payload(decode=True) or b"")
    return None


def status_of(text: str) -> str:
    """The enhanced status in `text`; failing that, the class of a bare reply code (553 → 5.0.0)."""
    match = _STATUS.search(text or "")
    if match:
        return ".".join(match.groups())
    code = _CODE.search(text or "")
    return f"{code.group(1)}.0.0" if code else ""


def _action(value: str) -> str:
    """RFC 3464 actions, read leniently: "failure", "failed (Bad destination mailbox)" → failed."""
    word = (value or "").strip().lower().split(" ", 1)[0].rstrip(";,")
    return {"failure": "failed", "fail": "failed", "delay": "delayed"}.get(word, word)


def parse(message: Message) -> DeliveryReport | None:
    """The DSN carried by `message`, or None when it is not one."""
    if message.get_content_type() != "multipart/report":
        return None
    if (message.get_param("report-type") or "").lower() != "delivery-status":
        return None
    status_part = next((p for p in message.walk() if p.get_content_type() in
                        ("message/delivery-status", "message/global-delivery-status")), None)
    if status_part is None:
        return None
    blocks = _blocks(status_part)
    if not blocks:
        return None
    report = DeliveryReport(returned=_returned(message))
    first = blocks[0]
    if first.get("Final-Recipient") is None:
        report.reporting_mta = _value(first.get("Reporting-MTA", ""))
        report.arrival_date = (first.get("Arrival-Date") or "").strip()
        blocks = blocks[1:]
    for block in blocks:
        final = block.get("Final-Recipient") or block.get("Original-Recipient")
        if not final:
            continue
        diagnostic = _value(block.get("Diagnostic-Code", ""))
        status = status_of(block.get("Status", "")) or status_of(diagnostic)
        report.recipients.append(RecipientStatus(
            final_recipient=_address(final),
            action=_action(block.get("Action") or ""),
            status=status,
            diagnostic_code=diagnostic,
            remote_mta=_value(block.get("Remote-MTA", "")),
            original_recipient=_address(block.get("Original-Recipient", "")),
        ))
    return report
