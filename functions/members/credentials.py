"""Who a member's credentials name: the one check SMTP AUTH and the member's status page share.

The key is checked before anything about the member is read, so a wrong
key never learns whether an account is pending or suspended; an unknown
username costs the same hash as a known one. A key verified in the last few
minutes is not hashed again (`api_keys.VerifiedKeys`). What a caller does
with the member's status is its own business: AUTH refuses a suspended
member, the status page shows it where it stands.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from functions.members.api_keys import dummy_hash, verified_keys, verify_api_key
from functions.members.registry import DomainCredentials, credentials_for


@dataclass(frozen=True)
class Login:
    member: sqlite3.Row
    matched: DomainCredentials

    @property
    def did(self) -> str:
        return self.member["did"]

    @property
    def status(self) -> str:
        return self.member["status"]


def check(conn: sqlite3.Connection, username: str, password: str) -> Login | None:
    """The member whose DID or domain is `username` and whose API key is `password`, else None."""
    member, candidates = credentials_for(conn, username)
    if not candidates or member is None:
        verify_api_key(dummy_hash(), password)
        return None
    for candidate in candidates:
        if verified_keys.verify(candidate.api_key_hash, password):
            return Login(member, candidate)
    return None
