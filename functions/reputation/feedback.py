"""What comes back about a member's mail: bounces and complaints, recorded once for every source.

A 5xx at delivery time, a DSN on the MX and an ARF report all end here:
one event on the member's stream, and suppression of a recipient that must
not be mailed again (a hard bounce, a soft one that keeps repeating, or a
complaint). Each (sent message,
recipient) counts once per kind however often a report about it arrives
(`feedback_counted`): a replayed DSN or a provider's duplicate report must
not count twice against the member.
"""
from __future__ import annotations

import sqlite3

from functions.inbound.bounce_reasons import Classification
from functions.inbound.bounces import soft_repeats
from functions.inbound.bounces.suppression_policy import suppresses
from functions.members import suppression
from functions.reputation import events
from runtime.context import LambdaContext


def claim(conn: sqlite3.Connection, queue_id: str, recipient: str, kind: str, now: float,
          inbound_id: int | None = None) -> bool:
    """True the first time (message, recipient, kind) is counted; False ever after."""
    return conn.execute(
        "INSERT INTO feedback_counted (queue_id, recipient, kind, inbound_id, counted_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (queue_id, recipient, kind) DO NOTHING",
        (queue_id, suppression.normalize(recipient), kind, inbound_id, now)).rowcount > 0


def record_bounce(conn: sqlite3.Connection, context: LambdaContext, did: str, recipient: str,
                  result: Classification, message_id: str = "", source: str = "dsn", queue_id: str = "",
                  inbound_id: int | None = None) -> int | None:
    """The event id, or None when this message's bounce for this recipient was already counted."""
    now = context.clock.now()
    if queue_id and not claim(conn, queue_id, recipient, "bounce", now, inbound_id):
        return None
    policy = context.settings.suppression
    repeats = soft_repeats.count(conn, did, recipient, result, source, now, policy)
    if suppresses(result.reason, result.status, repeats, policy.softRepeats):  # about the address itself
        suppression.add(conn, did, recipient, soft_repeats.why(result, repeats, policy), f"bounce:{source}",
                        now, context.settings.suppressionTtl)
    return events.emit(conn, context, "bounce_received", {
        "sender_did": did, "recipient": suppression.normalize(recipient), "kind": result.kind,
        "status": result.status, "reason": result.reason, "message_id": message_id, "source": source,
        "queue_id": queue_id}, when=now)


def record_complaint(conn: sqlite3.Connection, context: LambdaContext, did: str, recipient: str,
                     feedback_type: str, message_id: str = "", user_agent: str = "", queue_id: str = "",
                     inbound_id: int | None = None) -> int | None:
    """The event id, or None when this message's complaint for this recipient was already counted."""
    now = context.clock.now()
    if queue_id and not claim(conn, queue_id, recipient, "complaint", now, inbound_id):
        return None
    if recipient:
        suppression.add(conn, did, recipient, f"complaint ({feedback_type})", "complaint", now,
                        context.settings.suppressionTtl)
    return events.emit(conn, context, "complaint_received", {
        "sender_did": did, "recipient": suppression.normalize(recipient), "feedback_type": feedback_type,
        "message_id": message_id, "user_agent": user_agent, "queue_id": queue_id}, when=now)
