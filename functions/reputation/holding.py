"""Held mail in the store: telling a member it is at a cap, and planning held mail again.

A held message's recipients are counted in the buckets of its release
time (limits.record). When its member's caps change (a tier moves up with
age, an operator raises a limit, a label comes or goes) or its mail was
frozen, those reservations are given back and the untried mail is planned
again in arrival order, so it waits no longer than the present caps require
and is counted once.
"""
from __future__ import annotations

import sqlite3
from collections import OrderedDict

from functions.reputation import events, limits
from functions.reputation.release import plan
from runtime.context import LambdaContext

# A member at a cap is told at most once this often (member_at_cap), however much mail it holds.
NOTICE_EVERY = 3600.0


def notice_at_cap(conn: sqlite3.Connection, context: LambdaContext, did: str, decision: limits.Decision,
                  outcome: str) -> bool:
    """Emit `member_at_cap` unless this member was told less than NOTICE_EVERY ago; True when emitted."""
    now = decision.now
    told = conn.execute("SELECT until FROM cap_notices WHERE did = ?", (did,)).fetchone()
    if told is not None and now < told["until"]:
        return False
    verdict = decision.verdict
    window = verdict.window if verdict else "hourly"
    conn.execute("INSERT INTO cap_notices (did, cap_window, until, noticed_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (did) DO UPDATE SET cap_window = excluded.cap_window, until = excluded.until,"
                 " noticed_at = excluded.noticed_at", (did, window, now + NOTICE_EVERY, now))
    events.emit(conn, context, "member_at_cap", {
        "sender_did": did, "window": window, "cap": verdict.cap if verdict else 0,
        "used": verdict.used if verdict else 0, "tier": verdict.tier if verdict else "",
        "outcome": outcome, "until": decision.release_at}, when=now)
    context.logger.info("limits.member_at_cap", did=did, window=window, outcome=outcome,
                        until=decision.release_at)
    return True


def _messages(rows: list[sqlite3.Row]) -> "OrderedDict[str, tuple[float, int]]":
    """Queue id -> (time counted, untried recipients), in arrival order.

    A held message was counted at the time it is held until, any other when it was spooled; its due time
    may since have moved (a failed run puts rows back for later) and says nothing about the count.
    """
    found: OrderedDict[str, tuple[float, int]] = OrderedDict()
    for row in rows:
        counted = row["held_until"] if row["held_until"] is not None else row["created_at"]
        due, count = found.get(row["queue_id"], (counted, 0))
        found[row["queue_id"]] = (due, count + 1)
    return found


def give_back(conn: sqlite3.Connection, did: str, rows: list[sqlite3.Row]) -> int:
    """Uncount untried rows from the buckets they were counted in; the recipients given back."""
    for due, count in _messages(rows).values():
        limits.unrecord(conn, did, count, due)
    return len(rows)


def replan(conn: sqlite3.Connection, context: LambdaContext, did: str, rows: list[sqlite3.Row]) -> int:
    """Count and schedule untried rows (already given back) again under the member's present caps.

    Returns how many messages were planned.
    """
    now = context.clock.now()
    caps = limits.caps_of(conn, context, did, now)
    messages = _messages(rows)
    if caps is None or not messages:
        return 0
    times = plan(limits.usage_of(conn, did, now), caps.hourly, caps.daily,
                 [count for _, count in messages.values()], now)
    for (queue_id, (_, count)), when in zip(messages.items(), times):
        limits.record(conn, did, count, when)
        context.spool.postpone(conn, queue_id, when)
    return len(messages)


def replan_held(conn: sqlite3.Connection, context: LambdaContext, did: str) -> int:
    """Plan a member's held mail again (its caps may have changed since it was held)."""
    held = [r for r in context.spool.pending(conn, did, context.clock.now(), frozen=False, untried=True)
            if r["shown"] == "held"]
    give_back(conn, did, held)
    return replan(conn, context, did, held)


def members_holding(conn: sqlite3.Connection, now: float) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT owner FROM spool_recipients WHERE state = 'queued' AND frozen = 0"
        " AND held_until > ? AND owner IS NOT NULL", (now,))]
