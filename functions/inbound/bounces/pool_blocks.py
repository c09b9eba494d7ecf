"""A provider refusing the pool's mail: an operator alert, never a suppression.

When a recipient's MX answers the relay's own delivery with a reason about
the pool's standing (blocked by a list or by reputation, spam detected, a
policy rejection, too many connections or messages), the provider is
recorded in `pool_blocks` with since when and
the last reply; `pool_blocked` is emitted and `pool.blocked` logged when it
starts and again at most once per `poolBlocks.alertInterval` while it
lasts. The first delivery the provider accepts again clears it
(`pool_unblocked`, `pool.unblocked`). The provider is the registrable part
of the MX host's name (gmail-smtp-in.l.google.com is google.com), else the
recipient's domain.

Only the relay's own SMTP replies count here. A DSN that comes back, even
one proven to be about our message, reports a refusal at a hop after the
MX we delivered to (a forwarder, an inbound gateway): its Remote-MTA names
whom that hop talked to, and anyone who received our message can write one.
It counts as the recipient's bounce, not as a block of the pool.
"""
from __future__ import annotations

import ipaddress
import sqlite3
from typing import Any

from functions.inbound.bounce_reasons import Classification
from functions.inbound.bounces.suppression_policy import about_the_pool
from functions.members.suppression import normalize
from functions.reputation import events
from runtime.context import LambdaContext

SOURCE = "smtp"  # the rows' and alerts' `source`: the relay's own delivery replies are the only one


def provider_of(mx: str, recipient: str) -> str:
    """Who refused: the MX host's registrable domain (two labels, three under a ccTLD's second level)."""
    host = (mx or "").strip().strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        host = ""
    except ValueError:
        pass
    labels = [label for label in host.split(".") if label]
    if len(labels) >= 2:
        keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3 else 2
        return ".".join(labels[-keep:])
    return normalize(recipient).rpartition("@")[2]


def after_delivery(conn: sqlite3.Connection, context: LambdaContext, did: str, recipient: str, reply: str,
                   reading: Classification | None, mx: str, delivered: bool) -> None:
    """One delivery attempt's reply (`reading`: bounce_reasons.classify of a 4xx/5xx, else None): a block
    about the pool is recorded, a delivery clears its provider."""
    if delivered:
        clear(conn, context, did, provider_of(mx, recipient))
    elif reading is not None and mx:  # a reply from the provider's MX, not a failure to reach it
        _observe(conn, context, did, recipient, reading, reply, mx)


def _observe(conn: sqlite3.Connection, context: LambdaContext, did: str, recipient: str, reading: Classification,
             reply: str, mx: str) -> bool:
    """Record a reply about the pool; True when it raised the alert (new, or the interval has passed)."""
    reason, status, source = reading.reason, reading.status, SOURCE
    if not about_the_pool(reason) or not did:
        return False
    provider, now = provider_of(mx, recipient), context.clock.now()
    reply = " ".join((reply or "").split())[:500]
    row = conn.execute("SELECT since, alerted_at FROM pool_blocks WHERE provider = ?", (provider,)).fetchone()
    due = row is None or now - row["alerted_at"] >= context.settings.poolBlocks.alertInterval
    conn.execute(
        "INSERT INTO pool_blocks (provider, reason, status, since, last_seen_at, last_reply, last_recipient,"
        " last_member, mx, source, replies, alerted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
        " ON CONFLICT (provider) DO UPDATE SET reason = excluded.reason, status = excluded.status,"
        " last_seen_at = excluded.last_seen_at, last_reply = excluded.last_reply,"
        " last_recipient = excluded.last_recipient, last_member = excluded.last_member, mx = excluded.mx,"
        " source = excluded.source, replies = replies + 1,"
        " alerted_at = CASE WHEN ? THEN excluded.alerted_at ELSE alerted_at END",
        (provider, reason, status, now, now, reply, normalize(recipient), did, mx or "", source, now, due))
    if due:
        since = now if row is None else row["since"]
        alert = {"sender_did": did, "provider": provider, "reason": reason, "status": status, "reply": reply,
                 "recipient": normalize(recipient), "since": since, "source": source}
        events.emit(conn, context, "pool_blocked", alert, when=now)
        context.logger.warning("pool.blocked", **{k: v for k, v in alert.items() if k != "sender_did"},
                               did=did, mx=mx or None, first=row is None)
    return due


def clear(conn: sqlite3.Connection, context: LambdaContext, did: str, provider: str) -> bool:
    """The provider took the pool's mail again: the alert is over."""
    row = conn.execute("DELETE FROM pool_blocks WHERE provider = ? RETURNING since, reason", (provider,)).fetchone()
    if row is None:
        return False
    events.emit(conn, context, "pool_unblocked", {"sender_did": did, "provider": provider,
                                                  "reason": row["reason"], "since": row["since"]})
    context.logger.info("pool.unblocked", provider=provider, reason=row["reason"], since=row["since"],
                        blocked_seconds=round(context.clock.now() - row["since"], 1))
    return True


def current(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The providers refusing the pool's mail now, the longest-standing first."""
    rows = conn.execute("SELECT * FROM pool_blocks ORDER BY since, provider").fetchall()
    return [{"provider": r["provider"], "reason": r["reason"], "status": r["status"], "since": r["since"],
             "lastSeenAt": r["last_seen_at"], "lastReply": r["last_reply"], "lastRecipient": r["last_recipient"],
             "lastMember": r["last_member"], "mx": r["mx"], "source": r["source"], "replies": r["replies"]}
            for r in rows]
