"""Per-member suppression lists: recipients that hard-bounced or complained are not mailed again.

Entries expire (`suppressionTtl`, 90 days by default) so a mailbox that was
full or a complaint made in error does not block a member forever.
"""
from __future__ import annotations

import sqlite3


def normalize(address: str) -> str:
    return (address or "").strip().strip("<>").lower()


def lookup(conn: sqlite3.Connection, did: str, recipient: str, now: float) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM suppressions WHERE did = ? AND recipient = ? AND (expires_at IS NULL OR expires_at > ?)",
        (did, normalize(recipient), now)).fetchone()


def add(conn: sqlite3.Connection, did: str, recipient: str, reason: str, source: str, now: float,
        ttl: float | None) -> None:
    expires = now + ttl if ttl else None
    conn.execute(
        "INSERT INTO suppressions (did, recipient, reason, source, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (did, recipient) DO UPDATE SET reason = excluded.reason,"
        " source = excluded.source, created_at = excluded.created_at, expires_at = excluded.expires_at",
        (did, normalize(recipient), reason[:300], source, now, expires))


def remove(conn: sqlite3.Connection, did: str, recipient: str) -> bool:
    return conn.execute("DELETE FROM suppressions WHERE did = ? AND recipient = ?",
                        (did, normalize(recipient))).rowcount > 0


def entries(conn: sqlite3.Connection, did: str, now: float) -> list[dict]:
    return [dict(r) for r in conn.execute(
        "SELECT recipient, reason, source, created_at, expires_at FROM suppressions"
        " WHERE did = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC", (did, now))]


def purge_expired(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM suppressions WHERE expires_at IS NOT NULL AND expires_at <= ?",
                        (now,)).rowcount
