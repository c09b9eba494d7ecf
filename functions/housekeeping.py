"""`housekeeping`: keep the store small without forgetting anything that still matters.

Outbox records every reader has consumed, settled spool rows, spent send
counters, expired suppressions and dead letters older than
`rejectedActionsRetention` are removed; `relay_events`,
`sent_messages` and `inbound_messages` are history and stay. Held mail is
planned again under its member's present caps (they may have risen), and
frozen mail past `delivery.maxAge` expires.
"""
from __future__ import annotations

from functions.members import member_queue, suppression
from functions.reputation import dead_letters, holding, limits
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
        removed["held_replanned"] = sum(holding.replan_held(conn, context, did)
                                        for did in holding.members_holding(conn, now))
    removed["frozen_expired"] = member_queue.expire_frozen(context)
    if any(removed.values()):
        context.logger.info("housekeeping.done", **removed)
    return removed
