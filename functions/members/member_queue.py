"""What a member's status means for the mail it already has in the queue (issue 14).

A suspended member's queued, deferred and held mail is frozen: the spool
neither hands it to `deliver` nor lets it be leased, and its untried
recipients stop counting against the caps. Reactivation thaws it: tried
mail resumes its retries, untried mail is planned again in arrival order
under the caps of the moment. Frozen mail still expires at
`delivery.maxAge` (housekeeping), as any undelivered mail does. An
operator may purge a member's queue instead: the rows go, nothing is
delivered, and no report goes to anyone (the member's users never got a
promise from us; the member learns of it from the event and the log).
"""
from __future__ import annotations

import sqlite3

from functions.reputation import events, holding
from runtime.context import LambdaContext


def freeze(conn: sqlite3.Connection, context: LambdaContext, did: str) -> int:
    """In the suspension's transaction: stop the member's queued mail; how many recipients froze."""
    untried = context.spool.pending(conn, did, context.clock.now(), frozen=False, untried=True)
    holding.give_back(conn, did, untried)
    frozen = context.spool.freeze(conn, did)
    if frozen:
        context.logger.info("queue.frozen", did=did, recipients=frozen)
    return frozen


def thaw(conn: sqlite3.Connection, context: LambdaContext, did: str) -> int:
    """In the reactivation's transaction: release the member's frozen mail; how many recipients thawed."""
    untried = context.spool.pending(conn, did, context.clock.now(), frozen=True, untried=True)
    thawed = context.spool.freeze(conn, did, frozen=False)
    holding.replan(conn, context, did, untried)
    if thawed:
        context.logger.info("queue.thawed", did=did, recipients=thawed)
    return thawed


def purge(conn: sqlite3.Connection, context: LambdaContext, did: str, actor: str = "") -> dict[str, int]:
    """Delete the member's queued, held and frozen mail, with a `queue_purged` event; the counts per state."""
    now = context.clock.now()
    untried = context.spool.pending(conn, did, now, frozen=False, untried=True)
    holding.give_back(conn, did, untried)
    counts = context.spool.purge(conn, did, now)
    events.emit(conn, context, "queue_purged", {"sender_did": did, "actor": actor, **counts}, when=now)
    context.logger.info("queue.purged", did=did, actor=actor, **counts)
    return counts


def expire_frozen(context: LambdaContext) -> int:
    """Frozen mail older than `delivery.maxAge` expires as any undelivered mail does: row, event, log line."""
    now = context.clock.now()
    expired = []
    with context.store.transaction() as conn:
        for row in context.spool.frozen_before(conn, now - context.settings.delivery.maxAge):
            sent = conn.execute("SELECT message_id FROM sent_messages WHERE queue_id = ?",
                                (row["queue_id"],)).fetchone()
            message_id = sent["message_id"] if sent else ""
            expired.append((row, message_id))
            context.spool.settle(conn, row["queue_id"], row["recipient"], state="expired", next_attempt_at=None,
                                 code=None, text="expired while frozen (member suspended)", now=now)
            if row["owner"]:
                events.emit(conn, context, "delivery_result", {
                    "sender_did": row["owner"], "message_id": message_id, "queue_id": row["queue_id"],
                    "recipient": row["recipient"], "status": "expired", "smtp_text": "expired while frozen",
                    "attempt": int(row["attempts"])}, when=now)
    for row, message_id in expired:
        context.logger.info("delivery.result", message_id=message_id, queue_id=row["queue_id"],
                            recipient=row["recipient"], status="expired", did=row["owner"],
                            text="expired while frozen (member suspended)")
    return len(expired)
