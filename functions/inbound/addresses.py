"""Which addresses the inbound MX handles, and what each one is for. Anything else is refused.

Operator aliases at the operator domain (runbook section 6), VERP bounce
addresses whose MAC checks out, and any address at a member domain the
member has proven and asked replies for to be forwarded. Never an open relay.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from functions.members.identifiers import address_domain
from functions.outbound import verp

OPERATOR_ALIASES = ("postmaster", "abuse", "fbl", "support", "hostmaster")


@dataclass(frozen=True)
class InboundAddress:
    kind: str  # "operator" | "bounce" | "reply"
    address: str
    alias: str = ""
    queue_id: str = ""
    index: int = -1
    member_did: str = ""
    forward_to: str = ""


def resolve(conn: sqlite3.Connection, address: str, operator_domain: str) -> InboundAddress | None:
    address = (address or "").strip().strip("<>")
    if address.lower() == "postmaster":  # RFC 5321 4.5.1: accepted without a domain
        return InboundAddress("operator", address, alias="postmaster")
    local, _, _ = address.rpartition("@")
    domain = address_domain(address)
    if not domain or not local:
        return None
    if domain == operator_domain.lower():
        if local.lower() in OPERATOR_ALIASES:
            return InboundAddress("operator", address, alias=local.lower())
        parsed = verp.parse(verp.secret(conn), address, operator_domain)
        if parsed is not None:
            return InboundAddress("bounce", address, queue_id=parsed[0], index=parsed[1])
        return None
    row = conn.execute(
        "SELECT m.did, m.forward_to, m.status FROM member_domains d JOIN members m ON m.did = d.did"
        " WHERE d.domain = ? AND d.status = 'verified'", (domain,)).fetchone()
    if row is not None and row["forward_to"] and row["status"] == "active":
        return InboundAddress("reply", address, member_did=row["did"], forward_to=row["forward_to"])
    return None
