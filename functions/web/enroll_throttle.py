"""How often one client may enroll: key generation and hashing are costly, so an address gets a few an hour."""
from __future__ import annotations

import sqlite3

from runtime.auth_throttle import address_key
from runtime.context import LambdaContext

ENROLLS_PER_CLIENT_HOUR = 20


def admit(context: LambdaContext, client: str) -> bool:
    """Count this attempt and say whether it is within the hour's budget.

    `client` is the gateway's sourceIp: the forwarded address when a trusted
    proxy sent the request. An IPv6 client counts per /64, as one host holds a /64.
    """
    client = address_key(client)
    hour = int(context.clock.now() // 3600)
    with context.store.transaction() as conn:
        conn.execute("INSERT INTO enroll_attempts (client, hour, count) VALUES (?, ?, 1)"
                     " ON CONFLICT (client, hour) DO UPDATE SET count = count + 1", (client, hour))
        count = conn.execute("SELECT count FROM enroll_attempts WHERE client = ? AND hour = ?",
                             (client, hour)).fetchone()["count"]
    return count <= ENROLLS_PER_CLIENT_HOUR


def prune(conn: sqlite3.Connection, now: float) -> int:
    """Forget the hours that are over."""
    return conn.execute("DELETE FROM enroll_attempts WHERE hour < ?", (int(now // 3600),)).rowcount
