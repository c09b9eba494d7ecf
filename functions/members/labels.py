"""Labels on members (`labels.db`): reputation labels from the rules and the labeler's own.

An append-only log (`labels.label_log`, like an atproto label stream with
`neg` for removals) plus the current set per member (`labels.member_labels`)
for the submission hot path.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone


def current(conn: sqlite3.Connection, did: str) -> set[str]:
    return {r["val"] for r in conn.execute("SELECT val FROM labels.member_labels WHERE uri = ?", (did,))}


def details(conn: sqlite3.Connection, did: str) -> list[dict]:
    return [dict(r) for r in conn.execute(
        "SELECT val, src, since, reason FROM labels.member_labels WHERE uri = ? ORDER BY val", (did,))]


def apply(conn: sqlite3.Connection, did: str, val: str, add: bool, src: str, reason: str, now: float) -> bool:
    """Add or remove one label; returns False when nothing changed."""
    present = conn.execute("SELECT 1 FROM labels.member_labels WHERE uri = ? AND val = ?", (did, val)).fetchone()
    if add == bool(present):
        return False
    cts = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    conn.execute("INSERT INTO labels.label_log (src, uri, val, neg, cts, reason) VALUES (?, ?, ?, ?, ?, ?)",
                 (src, did, val, 0 if add else 1, cts, reason[:500]))
    if add:
        conn.execute("INSERT INTO labels.member_labels (uri, val, src, since, reason) VALUES (?, ?, ?, ?, ?)",
                     (did, val, src, now, reason[:500]))
    else:
        conn.execute("DELETE FROM labels.member_labels WHERE uri = ? AND val = ?", (did, val))
    return True
