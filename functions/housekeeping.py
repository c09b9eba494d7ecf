"""`housekeeping`: keep the store small without forgetting anything that still matters.

Outbox records every reader has consumed, settled spool rows, spent send
counters, expired suppressions and dead letters older than
`rejectedActionsRetention` are removed; `relay_events`,
`sent_messages` and `inbound_messages` are history and stay.
"""
from __future__ import annotations

from functions.members import suppression
from functions.reputation import dead_letters, limits
from functions.web import enroll_throttle
from runtime.context import LambdaContext

OUTBOX_KEEP = 2 * 86400
SETTLED_KEEP = 7 * 86400


def handler(event: dict, context: LambdaContext) -> dict:
    now = context.clock.now()
    removed = {
        "outbox": context.bus.prune(now - OUTBOX_KEEP),
        "settled_recipients": context.spool.prune_settled(now - SETTLED_KEEP),
    }
    with context.store.transaction() as conn:
        removed["send_counters"] = limits.prune(conn, now)
        removed["expired_suppressions"] = suppression.purge_expired(conn, now)
        removed["enroll_attempts"] = enroll_throttle.prune(conn, now)
        removed["rejected_actions"] = dead_letters.prune(conn, now, context.settings.rejectedActionsRetention)
    if any(removed.values()):
        context.logger.info("housekeeping.done", **removed)
    return removed
