"""What comes back about a member's mail: bounces and complaints, recorded once for every source.

A 5xx at delivery time, a DSN on the MX and an ARF report all end here:
one event on the member's stream, and suppression of a recipient that must
not be mailed again (a hard bounce or a complaint).
"""
from __future__ import annotations

import sqlite3

from functions.inbound.bounce_reasons import Classification
from functions.inbound.bounces.suppression_policy import suppresses
from functions.members import suppression
from functions.reputation import events
from runtime.context import LambdaContext


def record_bounce(conn: sqlite3.Connection, context: LambdaContext, did: str, recipient: str,
                  result: Classification, message_id: str = "", source: str = "dsn") -> int:
    now = context.clock.now()
    if suppresses(result.reason, result.status):  # only a reason about the address itself
        suppression.add(conn, did, recipient, f"hard bounce: {result.reason} ({result.status})", f"bounce:{source}",
                        now, context.settings.suppressionTtl)
    return events.emit(conn, context, "bounce_received", {
        "sender_did": did, "recipient": suppression.normalize(recipient), "kind": result.kind,
        "status": result.status, "reason": result.reason, "message_id": message_id, "source": source}, when=now)


def record_complaint(conn: sqlite3.Connection, context: LambdaContext, did: str, recipient: str,
                     feedback_type: str, message_id: str = "", user_agent: str = "") -> int:
    now = context.clock.now()
    if recipient:
        suppression.add(conn, did, recipient, f"complaint ({feedback_type})", "complaint", now,
                        context.settings.suppressionTtl)
    return events.emit(conn, context, "complaint_received", {
        "sender_did": did, "recipient": suppression.normalize(recipient), "feedback_type": feedback_type,
        "message_id": message_id, "user_agent": user_agent}, when=now)
