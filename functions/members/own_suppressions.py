"""A member's own hand on its suppression list: read it page by page, take off an address it knows is wrong.

A member may remove what the relay suppressed on the member's behalf (a
hard bounce from a mailbox that exists again, an address the operator
added), never what a recipient asked for: a suppression caused by a
complaint from that recipient is the recipient's wish, so only the
operator can lift it (admin API, `suppressions`). The entry's own source
says so, and so does any complaint the relay recorded from that recipient
within the suppression TTL: a later bounce that rewrote the entry does
not make a complaint removable. Each removal is logged
(`suppression.removed` with `by: member`) and emitted as
`suppression_removed_by_member`.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from functions.members import suppression
from functions.members.registry import MemberError
from functions.reputation import events
from runtime.context import LambdaContext

PAGE, MAX_PAGE = 50, 500
COMPLAINT_SOURCE = "complaint"


class NotSuppressed(MemberError):
    http_status = 404


class RecipientsWish(MemberError):
    """The address is suppressed because its recipient complained: not the member's to lift."""

    http_status = 403


def page(conn: sqlite3.Connection, did: str, now: float, ttl: float, offset: int = 0,
         limit: int = PAGE) -> dict[str, Any]:
    """One page of the live entries, newest first, each saying whether the member may remove it."""
    live = "did = ? AND (expires_at IS NULL OR expires_at > ?)"
    total = conn.execute(f"SELECT COUNT(*) FROM suppressions WHERE {live}", (did, now)).fetchone()[0]
    rows = conn.execute(
        f"SELECT recipient, reason, source, created_at, expires_at FROM suppressions WHERE {live}"
        " ORDER BY created_at DESC, recipient LIMIT ? OFFSET ?", (did, now, limit, offset)).fetchall()
    wished = complainers(conn, did, now - ttl if ttl else 0.0) if rows else set()
    return {"total": total, "offset": offset, "limit": limit, "entries": [{
        "recipient": r["recipient"], "reason": r["reason"], "source": r["source"], "createdAt": r["created_at"],
        "expiresAt": r["expires_at"],
        "removable": r["source"] != COMPLAINT_SOURCE and r["recipient"] not in wished} for r in rows]}


def complainers(conn: sqlite3.Connection, did: str, since: float) -> set[str]:
    """Recipients who complained about the member's mail since `since` (complaint_received in relay_events)."""
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT json_extract(raw, '$.ActionData.recipient') FROM relay_events"
        " WHERE sender_did = ? AND action_name = 'complaint_received' AND created_at > ?", (did, since))}


def remove(tx: sqlite3.Connection, context: LambdaContext, did: str, recipient: str) -> dict[str, Any]:
    """Take one address off the member's list, in the caller's transaction; raises when it may not."""
    now = context.clock.now()
    address = suppression.normalize(recipient)
    entry = suppression.lookup(tx, did, address, now)
    if entry is None:
        raise NotSuppressed(f"{address} is not on your suppression list")
    ttl = context.settings.suppressionTtl or 0
    if entry["source"] == COMPLAINT_SOURCE or address in complainers(tx, did, now - ttl if ttl else 0.0):
        raise RecipientsWish(f"{address} complained about your mail: a complaint suppression is the recipient's"
                             " wish and only the relay's operator can lift it")
    suppression.remove(tx, did, address)
    events.emit(tx, context, "suppression_removed_by_member", {
        "sender_did": did, "recipient": address, "reason": entry["reason"], "source": entry["source"],
        "actor": "member"})
    return {"recipient": address, "reason": entry["reason"], "source": entry["source"]}
