"""Whose mail a report is about: the member who sent the message that bounced or was complained about.

In order of trust for a DSN: the VERP address it was sent to (exact: message
and recipient); then, in the returned message, X-Atmos-Member-Did, a VERP
Return-Path, and the Message-ID of a message we relayed.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from email.message import Message

from functions.outbound import verp


@dataclass(frozen=True)
class Attribution:
    did: str
    how: str  # "verp" | "header" | "message-id"
    message_id: str = ""
    recipient: str = ""
    queue_id: str = ""


def by_queue(conn: sqlite3.Connection, queue_id: str, index: int = -1) -> Attribution | None:
    row = conn.execute("SELECT did, message_id, recipients FROM sent_messages WHERE queue_id = ?",
                       (queue_id,)).fetchone()
    if row is None:
        return None
    recipients = json.loads(row["recipients"])
    recipient = recipients[index] if 0 <= index < len(recipients) else ""
    return Attribution(row["did"], "verp", row["message_id"], recipient, queue_id)


def by_returned(conn: sqlite3.Connection, returned: Message | None, operator_domain: str,
                extra_senders: tuple[str, ...] = ()) -> Attribution | None:
    """From the headers of the message that came back (or an ARF Original-Mail-From)."""
    message_id = ((returned.get("Message-ID") or "").strip() if returned is not None else "")
    did = ((returned.get("X-Atmos-Member-Did") or "").strip() if returned is not None else "")
    if did.startswith("did:"):
        known = conn.execute("SELECT 1 FROM members WHERE did = ?", (did,)).fetchone()
        if known:
            return Attribution(did, "header", message_id)
    key = verp.secret(conn)
    senders = list(extra_senders)
    if returned is not None:
        senders += [returned.get("Return-Path") or "", returned.get("X-Original-Mail-From") or ""]
    for sender in senders:
        parsed = verp.parse(key, sender.strip(), operator_domain)
        if parsed:
            found = by_queue(conn, *parsed)
            if found:
                return found
    if message_id:
        row = conn.execute("SELECT did, queue_id FROM sent_messages WHERE message_id = ? ORDER BY created_at DESC",
                           (message_id,)).fetchone()
        if row:
            return Attribution(row["did"], "message-id", message_id, queue_id=row["queue_id"])
    return None
