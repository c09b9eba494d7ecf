"""VERP bounce addresses: `bounces+<queue id>.<recipient index>-<mac>@<operatorDomain>`.

Each recipient gets its own envelope sender, so a bounce names exactly the
message and recipient it is about even when the bounce itself is garbled.
The MAC (HMAC-SHA256 with a secret kept in the store) stops anyone from
forging bounces that would count against a member.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3

_LOCAL = re.compile(r"^bounces\+([0-9A-F]{19})\.(\d{1,4})-([0-9a-f]{10})$")


def secret(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT value FROM relay_secrets WHERE name = 'verp'").fetchone()
    return bytes.fromhex(row["value"])


def _mac(key: bytes, queue_id: str, index: int) -> str:
    return hmac.new(key, f"{queue_id}.{index}".encode(), hashlib.sha256).hexdigest()[:10]


def address(key: bytes, queue_id: str, index: int, operator_domain: str) -> str:
    return f"bounces+{queue_id}.{index}-{_mac(key, queue_id, index)}@{operator_domain}"


def parse(key: bytes, addr: str, operator_domain: str) -> tuple[str, int] | None:
    """(queue id, recipient index) of a genuine bounce address, else None."""
    local, _, domain = (addr or "").strip("<> ").rpartition("@")
    if domain.lower() != operator_domain.lower():
        return None
    match = _LOCAL.match(local)
    if not match:
        return None
    queue_id, index, mac = match.group(1), int(match.group(2)), match.group(3)
    if not hmac.compare_digest(mac, _mac(key, queue_id, index)):
        return None
    return queue_id, index
