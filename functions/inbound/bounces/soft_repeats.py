"""Soft bounces that repeat: a mailbox full or suspended for days is suppressed after all.

Each final soft bounce of a recipient for a member whose reason may add
up (`suppression_policy.AFTER_REPEATS`) is kept in `soft_bounces`; the
count within `suppression.softWindowDays` is what `suppresses` weighs.
Rows older than the window are dropped as the recipient's next one comes.
"""
from __future__ import annotations

import sqlite3

from functions.inbound.bounce_reasons import Classification
from functions.inbound.bounces.suppression_policy import AFTER_REPEATS
from functions.members.suppression import normalize
from runtime.bounce_settings import SuppressionSettings


def count(conn: sqlite3.Connection, did: str, recipient: str, result: Classification, source: str, now: float,
          settings: SuppressionSettings) -> int:
    """This bounce recorded; how many of the recipient's bounces that may add up fall within the window."""
    if result.reason not in AFTER_REPEATS:
        return 1
    recipient = normalize(recipient)
    since = now - settings.window_seconds
    conn.execute("DELETE FROM soft_bounces WHERE did = ? AND recipient = ? AND bounced_at < ?",
                 (did, recipient, since))
    conn.execute("INSERT INTO soft_bounces (did, recipient, reason, status, source, bounced_at)"
                 " VALUES (?, ?, ?, ?, ?, ?)", (did, recipient, result.reason, result.status, source, now))
    return conn.execute("SELECT COUNT(*) FROM soft_bounces WHERE did = ? AND recipient = ? AND bounced_at >= ?",
                        (did, recipient, since)).fetchone()[0]


def why(result: Classification, repeats: int, settings: SuppressionSettings) -> str:
    """The suppression's reason as the operator reads it."""
    if result.reason in AFTER_REPEATS:
        return (f"repeated soft bounce: {result.reason} ({result.status}) {repeats} times within "
                f"{settings.softWindowDays} days")
    return f"hard bounce: {result.reason} ({result.status})"
