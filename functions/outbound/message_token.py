"""The relay's mark in the Message-ID it gives a message: `<atmos.<queue id>.<mac>@<member domain>>`.

A feedback report often quotes only the headers of the message it is
about, sometimes re-encoded so that no DKIM signature survives; a
Message-ID survives. The MAC (HMAC-SHA256 with a secret kept in the store,
never leaving the relay) means only the relay can produce one, so a
returned Message-ID carrying a valid mark proves which message the report
is about.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3

_MARK = re.compile(r"<atmos\.([0-9A-F]{19})\.([0-9a-f]{16})@", re.I)


def secret(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT value FROM relay_secrets WHERE name = 'message-token'").fetchone()
    return bytes.fromhex(row["value"])


def _mac(key: bytes, queue_id: str) -> str:
    return hmac.new(key, f"message-id:{queue_id}".encode(), hashlib.sha256).hexdigest()[:16]


def message_id(key: bytes, queue_id: str, domain: str) -> str:
    return f"<atmos.{queue_id}.{_mac(key, queue_id)}@{domain}>"


def queue_of(key: bytes, value: str) -> str | None:
    """The queue id a Message-ID field value was issued for, when its mark is genuine."""
    match = _MARK.match((value or "").strip())
    if match is None:
        return None
    queue_id, mac = match.group(1).upper(), match.group(2).lower()
    return queue_id if hmac.compare_digest(mac, _mac(key, queue_id)) else None
