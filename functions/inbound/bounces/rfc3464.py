"""Delivery status notifications (RFC 3464): the machine-readable per-recipient fields.

The message/delivery-status part holds a per-message block then one block
per recipient (Final-Recipient, Action, Status, Diagnostic-Code,
Remote-MTA). Real MTAs bend it: 8-bit text in any field, "failure" for
"failed", a status only in the diagnostic, blocks run together. Some
(Amazon WorkMail, qmail-ldap) put the same fields in a text/plain part.
"""
from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser

from functions.inbound.bounces import reasons
from functions.inbound.bounces.document import Document, header_text, payload_text
from functions.inbound.bounces.reading import Bounced

_ADDRESS = re.compile(r"<?([^\s<>;\"()]+@[^\s<>;\"()]+?)>?[.,]?$")
MAX_RECIPIENTS = 500
_QUOTED = re.compile(r'^<?("[^"<>]{1,64}"@[A-Za-z0-9.\-]+)>?$')
_COMMAND = re.compile(r"\b(initial connection|RCPT TO|MAIL FROM|DATA|end of data|HELO|EHLO|CONNECT|RCPT|MAIL_FROM|RCPT_TO)\b", re.I)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_FIELDS = re.compile(r"^(Final-Recipient|Original-Recipient|Action|Status|Diagnostic-Code|Remote-MTA|Reporting-MTA)"
                     r"\s*:", re.I | re.M)


def address_of(value: str) -> str:
    """`rfc822; user@example.com` → user@example.com (empty when there is no address)."""
    kind, sep, rest = (value or "").partition(";")
    candidate = (rest if sep else kind).strip()
    quoted = _QUOTED.search(candidate)
    if quoted:
        return quoted.group(1)
    found = _ADDRESS.search(candidate.split()[-1]) if candidate.split() else None
    return found.group(1).strip("<>").rstrip(".") if found else ""


def deliverable(address: str) -> bool:
    """An address some MTA could have delivered to: a quoted local part, or a dot-atom (no empty atom)."""
    local = address.rpartition("@")[0]
    return bool(local) and (local.startswith('"') or "" not in local.split("."))


def field_value(value: str) -> str:
    kind, sep, rest = (value or "").partition(";")
    return " ".join((rest if sep else kind).split())


def action_of(value: str) -> str:
    word = (value or "").strip().lower().split(" ", 1)[0].rstrip(";,.")
    return {"failure": "failed", "fail": "failed", "delay": "delayed", "deferred": "delayed"}.get(word, word)


def command_of(text: str) -> str:
    found = _COMMAND.search(text or "")
    if not found:
        return ""
    word = found.group(1).upper()
    return {"RCPT TO": "RCPT", "RCPT_TO": "RCPT", "MAIL FROM": "MAIL", "MAIL_FROM": "MAIL",
            "END OF DATA": "DATA", "INITIAL CONNECTION": "CONNECT"}.get(word, word)


def blocks(text: str) -> list[Message]:
    text = text.replace("\r\n", "\n")
    return [HeaderParser().parsestr(block.strip() + "\n") for block in _BLANK_LINE.split(text)
            if block.strip()]


def _status_blocks(doc: Document) -> list[Message]:
    """The delivery-status part's blocks, parsed once for every reader that asks."""
    if doc.status_blocks is None:
        payload = doc.status_part.get_payload()
        if isinstance(payload, list) and payload and all(isinstance(p, Message) for p in payload):
            doc.status_blocks = payload
        else:
            doc.status_blocks = blocks(payload_text(doc.status_part))
    return doc.status_blocks


def _per_recipient(block: Message) -> list[Message]:
    """A block as one block per recipient: some MTAs (AOL) run the recipients' fields together."""
    try:
        if len(block.get_all("Final-Recipient") or []) < 2:
            return [block]
        groups: list[Message] = [Message()]
        for key, value in block.items():
            name = key.lower()
            seen = {k.lower() for k in groups[-1].keys()}
            if (name == "final-recipient" and "final-recipient" in seen) or (
                    name == "original-recipient" and seen & {"action", "status"}):
                groups.append(Message())
            groups[-1][key] = value
        return groups
    except Exception:
        return [block]


def recipients_in(found: list[Message]) -> tuple[str, list[Bounced]]:
    reporting, out = "", []
    for block in (one for whole in found for one in _per_recipient(whole)):
        if not reporting:
            reporting = field_value(header_text(block, "Reporting-MTA"))
        if len(out) >= MAX_RECIPIENTS:
            break
        final = address_of(header_text(block, "Final-Recipient"))
        original = address_of(header_text(block, "Original-Recipient"))
        original = original if "." in original.rpartition("@")[2] and deliverable(original) else ""
        if "." not in final.rpartition("@")[2]:  # an internal routing name: the address we sent to is better
            final = original or final
        if not final:
            continue
        diagnostic = field_value(header_text(block, "Diagnostic-Code"))
        action = action_of(header_text(block, "Action")) or "failed"
        status = reasons.status_in(header_text(block, "Status")) or reasons.status_in(diagnostic)
        if (status.startswith("2.") and action == "failed") or status.endswith(".0.0"):
            status = reasons.status_in(diagnostic) if reasons.status_in(diagnostic)[:1] == status[:1] else status
        out.append(Bounced(final, "", status, action=action, diagnostic=diagnostic, command=command_of(diagnostic),
                           original=original if original.lower() != final.lower() else ""))
    return reporting, out


def reporting_mta(doc: Document) -> str:
    """The per-message Reporting-MTA of the report, when it has a delivery-status part."""
    if doc.status_part is None:
        return ""
    found = _status_blocks(doc)
    return field_value(header_text(found[0], "Reporting-MTA")) if found else ""


def read(doc: Document) -> tuple[str, list[Bounced]] | None:
    """The report's recipients from its delivery-status part, or from DSN fields in its text."""
    if doc.status_part is not None:
        reporting, found = recipients_in(_status_blocks(doc))
        if found:
            return reporting, found
    if len(_FIELDS.findall(doc.text)) >= 3:
        start = _FIELDS.search(doc.text)
        reporting, found = recipients_in(blocks(doc.text[start.start():] if start else doc.text))
        if found:
            return reporting, found
    return None
