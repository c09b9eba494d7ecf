"""Members of the cooperative and their domains: enroll, approve, suspend, reactivate, look up.

Every change is one transaction that also emits the lifecycle event, so the
event stream and the members table never disagree.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from functions.dkim import key_pairs
from functions.labeling.publication import publish
from functions.members import labels, member_queue
from functions.members.api_keys import hash_api_key, new_api_key, verify_api_key
from functions.members.identifiers import normalize_did, normalize_domain
from functions.reputation import events, holding
from runtime import replies
from runtime.context import LambdaContext
from runtime.errors import RelayError


class MemberError(RelayError):
    """A member operation that cannot be done; `http_status` says how the API reports it."""

    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(replies.MEMBER_REFUSED.format(detail=message), detail=message)
        self.message = message


class MemberNotFound(MemberError):
    http_status = 404


class DomainTaken(MemberError):
    http_status = 409


class InvalidTransition(MemberError):
    http_status = 409


class OwnershipUnproven(MemberError):
    http_status = 403


@dataclass(frozen=True)
class DomainMaterial:
    """Fresh keys and API key, made before the transaction so the write lock is held briefly."""

    rsa: key_pairs.KeyPair
    ed25519: key_pairs.KeyPair
    api_key: str
    api_key_hash: str


def new_material() -> DomainMaterial:
    api_key = new_api_key()
    return DomainMaterial(key_pairs.new_rsa(), key_pairs.new_ed25519(), api_key, hash_api_key(api_key))


@dataclass(frozen=True)
class DomainCredentials:
    domain: str
    did: str
    api_key_hash: str


def _member_row(conn: sqlite3.Connection, did: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM members WHERE did = ?", (did,)).fetchone()
    if row is None:
        raise MemberNotFound(f"no member with DID {did}")
    return row


def member_view(conn: sqlite3.Connection, did: str, settings: Any) -> dict[str, Any]:
    """A member as operators see it: no private keys, no hashes."""
    row = _member_row(conn, did)
    member_labels = labels.details(conn, did)
    domains = conn.execute(
        "SELECT domain, dkim_selector, dkim_rsa_pubkey, dkim_ed_pubkey, created_at, rotated_at, status,"
        " verified_at, last_checked_at, last_failure FROM member_domains WHERE did = ? ORDER BY domain",
        (did,)).fetchall()
    return {
        "did": row["did"],
        "status": row["status"],
        "reason": row["reason"],
        "contact": row["contact"],
        "forwardTo": row["forward_to"],
        "limits": {
            "hourly": row["hourly_limit"] if row["hourly_limit"] is not None else settings.limits.hourly,
            "daily": row["daily_limit"] if row["daily_limit"] is not None else settings.limits.daily,
            "custom": row["hourly_limit"] is not None or row["daily_limit"] is not None,
        },
        "labels": [entry["val"] for entry in member_labels],
        "createdAt": row["created_at"],
        "approvedAt": row["approved_at"],
        "suspendedAt": row["suspended_at"],
        "domains": [{
            "domain": d["domain"],
            "selector": d["dkim_selector"],
            "selectors": [key_pairs.rsa_selector(d["dkim_selector"]), key_pairs.ed25519_selector(d["dkim_selector"])],
            "createdAt": d["created_at"],
            "rotatedAt": d["rotated_at"],
            **proof_view(conn, did, d),
        } for d in domains],
        "domainsProven": bool(domains) and all(d["status"] == "verified" for d in domains),
    }


def proof_view(conn: sqlite3.Connection, did: str, claim: sqlite3.Row) -> dict[str, Any]:
    """Whether a claim is proven and why not, with every other member's claim of the same domain."""
    others = conn.execute("SELECT did, status, created_at, last_failure FROM member_domains"
                          " WHERE domain = ? AND did != ? ORDER BY created_at", (claim["domain"], did)).fetchall()
    return {
        "verification": claim["status"],
        "verifiedAt": claim["verified_at"],
        "lastCheckedAt": claim["last_checked_at"],
        "lastFailure": claim["last_failure"],
        "otherClaims": [{"did": o["did"], "verification": o["status"], "createdAt": o["created_at"],
                         "lastFailure": o["last_failure"]} for o in others],
    }


def domain_records(conn: sqlite3.Connection, domain: str, operator_domain: str) -> list[dict[str, str]]:
    """The records of the domain's holder, else of its latest claim."""
    row = conn.execute("SELECT * FROM member_domains WHERE domain = ?"
                       " ORDER BY status = 'verified' DESC, rotated_at DESC", (domain,)).fetchone()
    if row is None:
        raise MemberNotFound(f"domain {domain} is not enrolled")
    return dns_records(domain, row["dkim_selector"], row["dkim_rsa_pubkey"], row["dkim_ed_pubkey"], operator_domain)


def dns_records(domain: str, selector: str, rsa_pub: str, ed_pub: str, operator_domain: str) -> list[dict[str, str]]:
    return key_pairs.dkim_records(domain, selector, rsa_pub, ed_pub) + [
        {"name": domain, "type": "TXT", "value": f"v=spf1 include:_spf.{operator_domain} ~all"},
        {"name": f"_dmarc.{domain}", "type": "TXT",
         "value": f"v=DMARC1; p=none; adkim=r; aspf=r; rua=mailto:postmaster@{domain}"},
    ]


NOT_PROVEN_YET = ("not verified yet: publish the DKIM records and write the attestation record to your repo;"
                  " the relay looks every minute")


def holder_of(conn: sqlite3.Connection, domain: str, other_than: str = "") -> str:
    """The member that has proven the domain (other than `other_than`), or ''; only a proven claim blocks others."""
    row = conn.execute("SELECT did FROM member_domains WHERE domain = ? AND did != ? AND status = 'verified'",
                       (domain, other_than)).fetchone()
    return row["did"] if row else ""


def _add_member(conn: sqlite3.Connection, context: LambdaContext, did: str, domain: str, contact: str,
                forward_to: str, now: float) -> None:
    member = conn.execute("SELECT 1 FROM members WHERE did = ?", (did,)).fetchone()
    if member is None:
        conn.execute(
            "INSERT INTO members (did, status, contact, forward_to, created_at, updated_at)"
            " VALUES (?, 'pending', ?, ?, ?, ?)", (did, contact, forward_to, now, now))
        events.emit(conn, context, "member_enrolled", {"sender_did": did, "domain": domain, "actor": "enroll"})
    elif contact or forward_to:
        conn.execute("UPDATE members SET contact = COALESCE(NULLIF(?, ''), contact),"
                     " forward_to = COALESCE(NULLIF(?, ''), forward_to), updated_at = ? WHERE did = ?",
                     (contact, forward_to, now, did))


def enroll(conn: sqlite3.Connection, context: LambdaContext, did: str, domain: str, material: DomainMaterial,
           contact: str = "", forward_to: str = "") -> dict[str, Any]:
    """Create a pending member (or add/rotate a domain of an existing one); the API key is returned once.

    The claim starts unproven: its keys were made a moment ago, so nothing can be in DNS yet, and
    re-keying a proven domain takes it out of service until the new records are published.
    """
    did = normalize_did(did)
    domain = normalize_domain(domain)
    now = context.clock.now()
    if holder_of(conn, domain, did):
        raise DomainTaken(f"domain {domain} is already enrolled by another member")
    claim = conn.execute("SELECT status FROM member_domains WHERE domain = ? AND did = ?", (domain, did)).fetchone()
    _add_member(conn, context, did, domain, contact, forward_to, now)
    rsa_key, ed_key = material.rsa, material.ed25519
    selector = key_pairs.selector_base(now)
    if claim is None:
        conn.execute(
            "INSERT INTO member_domains (domain, did, dkim_selector, dkim_rsa_privkey, dkim_ed_privkey,"
            " dkim_rsa_pubkey, dkim_ed_pubkey, api_key_hash, created_at, rotated_at, last_failure)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (domain, did, selector, rsa_key.private_pem, ed_key.private_pem, rsa_key.public_b64,
             ed_key.public_b64, material.api_key_hash, now, now, NOT_PROVEN_YET))
    else:
        conn.execute(
            "UPDATE member_domains SET dkim_selector = ?, dkim_rsa_privkey = ?, dkim_ed_privkey = ?,"
            " dkim_rsa_pubkey = ?, dkim_ed_pubkey = ?, api_key_hash = ?, rotated_at = ?, status = 'pending',"
            " last_checked_at = NULL, last_failure = ? WHERE domain = ? AND did = ?",
            (selector, rsa_key.private_pem, ed_key.private_pem, rsa_key.public_b64, ed_key.public_b64,
             material.api_key_hash, now, "keys rotated: " + NOT_PROVEN_YET, domain, did))
        events.emit(conn, context, "member_keys_rotated",
                    {"sender_did": did, "domain": domain, "selector": selector, "actor": "enroll"})
        if claim["status"] == "verified":
            events.emit(conn, context, "domain_unverified",
                        {"sender_did": did, "domain": domain, "reason": "keys rotated"})
    status = conn.execute("SELECT status FROM members WHERE did = ?", (did,)).fetchone()["status"]
    return {
        "did": did,
        "domain": domain,
        "status": status,
        "apiKey": material.api_key,
        "selector": selector,
        "selectors": [key_pairs.rsa_selector(selector), key_pairs.ed25519_selector(selector)],
        "rotated": claim is not None,
        "verification": "pending",
        "verificationDetail": NOT_PROVEN_YET,
        "dnsRecords": dns_records(domain, selector, rsa_key.public_b64, ed_key.public_b64,
                                  context.settings.operatorDomain),
    }


def prove_ownership(conn: sqlite3.Connection, did: str, domain: str, api_key: str) -> None:
    """A self-service enrollment that touches an existing member must carry one of its API keys.

    Otherwise anyone who knows a member's DID and domain could rotate its
    keys away, or add a domain of their own that sends under its DID. A
    domain someone else has only claimed stays open: control is settled by
    proof, not by who came first.
    """
    if holder_of(conn, domain, did):
        raise DomainTaken(f"domain {domain} is already enrolled by another member")
    claimed = conn.execute("SELECT 1 FROM member_domains WHERE domain = ? AND did = ?", (domain, did)).fetchone()
    if claimed is None and conn.execute("SELECT 1 FROM members WHERE did = ?", (did,)).fetchone() is None:
        return
    hashes = [r["api_key_hash"] for r in conn.execute(
        "SELECT api_key_hash FROM member_domains WHERE did = ? ORDER BY domain = ? DESC", (did, domain))]
    if not api_key or not any(verify_api_key(h, api_key) for h in hashes):
        what = f"domain {domain}" if claimed is not None else f"member {did}"
        raise OwnershipUnproven(f"{what} is already enrolled: give its current API key to rotate its keys or "
                                "add a domain, or ask an operator to do it")


def approve(conn: sqlite3.Connection, context: LambdaContext, did: str, actor: str = "",
            reason: str = "") -> dict[str, Any]:
    did = normalize_did(did)
    row = _member_row(conn, did)
    if row["status"] == "suspended":
        raise InvalidTransition(f"{did} is suspended; use reactivate")
    if row["status"] == "pending":
        now = context.clock.now()
        conn.execute("UPDATE members SET status = 'active', reason = '', approved_at = ?, updated_at = ?"
                     " WHERE did = ?", (now, now, did))
        events.emit(conn, context, "member_approved", {"sender_did": did, "actor": actor, "reason": reason})
    return member_view(conn, did, context.settings)


def suspend(conn: sqlite3.Connection, context: LambdaContext, did: str, reason: str, actor: str = "",
            rule: str = "", figures: dict | None = None) -> dict[str, Any]:
    did = normalize_did(did)
    row = _member_row(conn, did)
    reason = (reason or "").strip() or "suspended by operator"
    if row["status"] != "suspended":
        now = context.clock.now()
        conn.execute("UPDATE members SET status = 'suspended', reason = ?, suspended_at = ?, updated_at = ?"
                     " WHERE did = ?", (reason[:500], now, now, did))
        events.emit(conn, context, "member_suspended", {
            "sender_did": did, "reason": reason, "actor": actor, "rule": rule, "figures": figures or {},
            "previous_status": row["status"]})
        member_queue.freeze(conn, context, did)
    return member_view(conn, did, context.settings)


def reactivate(conn: sqlite3.Connection, context: LambdaContext, did: str, actor: str = "",
               reason: str = "") -> dict[str, Any]:
    did = normalize_did(did)
    row = _member_row(conn, did)
    if row["status"] == "pending":
        raise InvalidTransition(f"{did} was never approved; use approve")
    if row["status"] == "suspended":
        now = context.clock.now()
        conn.execute("UPDATE members SET status = 'active', reason = '', suspended_at = NULL, updated_at = ?,"
                     " approved_at = COALESCE(approved_at, ?) WHERE did = ?", (now, now, did))
        events.emit(conn, context, "member_reactivated", {"sender_did": did, "actor": actor, "reason": reason})
        member_queue.thaw(conn, context, did)
    return member_view(conn, did, context.settings)


def set_limits(conn: sqlite3.Connection, context: LambdaContext, did: str, hourly: int | None,
               daily: int | None) -> dict[str, Any]:
    did = normalize_did(did)
    _member_row(conn, did)
    for value in (hourly, daily):
        if value is not None and value < 0:
            raise MemberError("limits cannot be negative")
    conn.execute("UPDATE members SET hourly_limit = ?, daily_limit = ?, updated_at = ? WHERE did = ?",
                 (hourly, daily, context.clock.now(), did))
    holding.replan_held(conn, context, did)
    return member_view(conn, did, context.settings)


def set_label(conn: sqlite3.Connection, context: LambdaContext, did: str, label: str, add: bool,
              actor: str = "", reason: str = "") -> dict[str, Any]:
    """An operator's own label decision (Osprey's MANUALLY_ADDED / MANUALLY_REMOVED)."""
    did = normalize_did(did)
    _member_row(conn, did)
    label = (label or "").strip()
    if not label or len(label) > 128 or any(c.isspace() or c == "/" for c in label):
        raise MemberError("a label is 1 to 128 characters without spaces or '/'")
    if labels.apply(conn, did, label, add, f"operator:{actor or 'cli'}", reason or "set by operator",
                    context.clock.now()):
        events.emit(conn, context, "label_changed", {"sender_did": did, "label": label,
                                                     "status": "added" if add else "removed",
                                                     "source": f"operator:{actor or 'cli'}"})
        publish(conn, context, did, label, add)
        holding.replan_held(conn, context, did)
    return member_view(conn, did, context.settings)


def list_members(conn: sqlite3.Connection, status: str = "") -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT m.*, GROUP_CONCAT(d.domain, ' ') AS domains FROM members m"
        " LEFT JOIN member_domains d ON d.did = m.did"
        " WHERE (? = '' OR m.status = ?) GROUP BY m.did ORDER BY m.created_at DESC", (status, status)).fetchall()


def credentials_for(conn: sqlite3.Connection, username: str) -> tuple[sqlite3.Row | None, list[DomainCredentials]]:
    """The member an SMTP username names (its DID or one of its domains) and the keys to try."""
    name = (username or "").strip()
    if name.lower().startswith("did:"):
        member = conn.execute("SELECT * FROM members WHERE did = ?", (name,)).fetchone()
        rows = conn.execute("SELECT domain, did, api_key_hash FROM member_domains WHERE did = ?"
                            " ORDER BY rotated_at DESC", (name,)).fetchall()
    else:
        # One member per domain name: the holder, else the first claimant (others log in with their DID).
        rows = conn.execute("SELECT domain, did, api_key_hash FROM member_domains WHERE domain = ?"
                            " ORDER BY status = 'verified' DESC, created_at", (name.lower().rstrip("."),)).fetchall()
        rows = [r for r in rows if r["did"] == rows[0]["did"]]
        member = conn.execute("SELECT * FROM members WHERE did = ?", (rows[0]["did"],)).fetchone() if rows else None
    return member, [DomainCredentials(r["domain"], r["did"], r["api_key_hash"]) for r in rows]


def domains_of(conn: sqlite3.Connection, did: str) -> list[str]:
    return [r["domain"] for r in conn.execute(
        "SELECT domain FROM member_domains WHERE did = ? ORDER BY domain", (did,)).fetchall()]


def verified_domains_of(conn: sqlite3.Connection, did: str) -> list[str]:
    """The domains that carry the member's mail: those it has proven and still holds."""
    return [r["domain"] for r in conn.execute(
        "SELECT domain FROM member_domains WHERE did = ? AND status = 'verified' ORDER BY domain", (did,)).fetchall()]
