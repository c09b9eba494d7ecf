"""How long the stream apps' dead letters (`rejected_actions`) are kept.

A dead letter is for the operator to read and fix the producer; kept for
ever, a producer that keeps sending garbage would grow the store without
bound, so housekeeping drops letters older than `rejectedActionsRetention`
(0 keeps them all).
"""
from __future__ import annotations

import sqlite3


def prune(conn: sqlite3.Connection, now: float, retention: float) -> int:
    """Delete dead letters received more than `retention` seconds before `now`; how many went."""
    if retention <= 0:
        return 0
    return conn.execute("DELETE FROM rejected_actions WHERE received_at < ?", (now - retention,)).rowcount
