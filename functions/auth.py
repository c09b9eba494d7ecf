"""`auth`: AUTH PLAIN on submission. Username is the member's DID or one of its domains.

The key is checked (`functions/members/credentials.py`, shared with the
member's status page) before the member's status, so a wrong key never
learns whether an account is pending or suspended; the status is read
every time.
"""
from __future__ import annotations

from functions.members import credentials
from functions.members.registry import domains_of
from functions.reputation import events
from runtime import replies
from runtime.context import LambdaContext
from runtime.errors import RelayError


class AuthRejected(RelayError):
    def __init__(self, reply, did: str | None = None, detail: str = "") -> None:
        super().__init__(reply, detail)
        self.did = did


def handler(event: dict, context: LambdaContext) -> dict:
    username = str(event.get("username") or "")
    password = str(event.get("password") or "")
    conn = context.store.connection()
    login = credentials.check(conn, username, password)
    if login is None:
        raise AuthRejected(replies.AUTH_INVALID)
    member, matched, did = login.member, login.matched, login.did
    if member["status"] in ("pending", "suspended"):
        with context.store.transaction() as tx:
            events.emit(tx, context, "relay_rejected", {
                "sender_did": did, "reject_reason": member["status"],
                "detail": f"AUTH from {(event.get('session') or {}).get('peer', '')}"})
        reply = replies.AUTH_PENDING if member["status"] == "pending" else replies.AUTH_SUSPENDED
        raise AuthRejected(reply, did=did)
    return {"principal": {"did": did, "domain": matched.domain, "domains": domains_of(conn, did),
                          "username": username}}
