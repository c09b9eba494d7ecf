"""`auth`: AUTH PLAIN on submission. Username is the member's DID or one of its domains.

The key is checked before the member's status, so a wrong key never learns
whether an account is pending or suspended; an unknown username costs the
same hash as a known one. A key verified in the last few minutes is not
hashed again (`api_keys.VerifiedKeys`); the status is read every time.
"""
from __future__ import annotations

from functions.members.api_keys import DUMMY_HASH, verified_keys, verify_api_key
from functions.members.registry import credentials_for, domains_of
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
    member, candidates = credentials_for(conn, username)
    matched = None
    if not candidates or member is None:
        verify_api_key(DUMMY_HASH, password)
    for candidate in candidates:
        if verified_keys.verify(candidate.api_key_hash, password):
            matched = candidate
            break
    if matched is None or member is None:
        raise AuthRejected(replies.AUTH_INVALID)
    did = member["did"]
    if member["status"] in ("pending", "suspended"):
        with context.store.transaction() as tx:
            events.emit(tx, context, "relay_rejected", {
                "sender_did": did, "reject_reason": member["status"],
                "detail": f"AUTH from {(event.get('session') or {}).get('peer', '')}"})
        reply = replies.AUTH_PENDING if member["status"] == "pending" else replies.AUTH_SUSPENDED
        raise AuthRejected(reply, did=did)
    return {"principal": {"did": did, "domain": matched.domain, "domains": domains_of(conn, did),
                          "username": username}}
