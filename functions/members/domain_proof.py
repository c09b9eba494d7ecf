"""Has a member proven that it controls a domain? Only then does the domain carry the member's mail.

Proof is two facts the relay looks up itself: the DKIM keys it issued for
the claim are published in the domain's DNS (only whoever runs the zone can
put them there), and the attestation record in the member's own atproto
repo names the domain and those selectors (the DID vouches for it).

Several members may claim one domain; the first to prove it holds it, and a
holder keeps it while its proof holds. When another claimant proves it, the
holder is looked at again at once, so the real owner does not wait for the
schedule. A proof that is definitely gone (record missing or replaced,
attestation deleted) takes the domain out of service at once; an answer
that cannot be had (DNS timeout, unreachable PDS) changes nothing until the
proof has gone unseen for PROOF_GRACE, so a flaky resolver does not stop
mail, yet a member cannot keep a lost domain by making its PDS unreachable.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from functions.dkim import dns_check, key_pairs
from functions.members import attestation
from functions.reputation import events
from runtime.context import LambdaContext

PROOF_GRACE = 24 * 3600.0
# The labeler runs every minute; a little under a minute keeps every run checking what is due.
RECHECK = 50.0
# A claim nobody has proven for a day is looked at hourly: a stranger's bogus claims cost little.
IDLE_CLAIM_AGE, IDLE_RECHECK = 24 * 3600.0, 3600.0
# What verification leaves for the caller's own answer when a function's time is short.
MARGIN_MS = 1500


@dataclass(frozen=True)
class Finding:
    """What the lookups said: proven, failed (definitely not) or undecided (could not tell)."""

    outcome: str
    detail: str


@dataclass(frozen=True)
class Transition:
    """A claim's next state, and the event to emit when the domain starts or stops carrying mail."""

    status: str
    verified_at: float | None
    last_failure: str
    event: str = ""


def selectors_of(row: Any) -> list[str]:
    return [key_pairs.rsa_selector(row["dkim_selector"]), key_pairs.ed25519_selector(row["dkim_selector"])]


def examine(context: LambdaContext, row: Any) -> Finding:
    """Look the proof of one claim up: DNS first, the attestation only if DNS holds."""
    undecided = ""
    for check in dns_check.domain_status(context.resolver(), row):
        if check["status"] in ("missing", "mismatch"):
            return Finding("failed", f"{check['name']}: DKIM key {check['status']} ({check['detail']})")
        if check["status"] != "published":
            undecided = f"{check['name']}: {check['detail']}"
    if undecided:
        return Finding("undecided", undecided)
    atproto = context.settings.atproto
    held = attestation.check(row["did"], row["domain"], selectors_of(row), atproto.plcUrl, min(atproto.timeout, 5.0),
                             atproto.allowPrivateAddresses)
    if held.get("refused"):
        context.logger.warning("attestation.fetch_refused", did=row["did"], domain=row["domain"],
                               reason=held["refused"])
    if held["status"] in ("missing", "stale"):
        return Finding("failed", f"attestation {held['status']}: {held.get('detail', '')}")
    if held["status"] != "verified":
        return Finding("undecided", f"attestation unknown: {held.get('detail', '')}")
    return Finding("proven", "DKIM keys published and the attestation names them")


def decide(status: str, verified_at: float | None, finding: Finding, held_by: str, now: float) -> Transition:
    """The claim's next state from what was found; `held_by` is another member holding the domain, or ''."""
    if finding.outcome == "proven":
        if held_by:
            return Transition(status, verified_at, f"proven, but {held_by} holds the domain and its proof still holds")
        return Transition("verified", now, "", "" if status == "verified" else "domain_verified")
    if finding.outcome == "failed":
        if status == "verified":
            return Transition("unverified", verified_at, finding.detail, "domain_unverified")
        return Transition(status, verified_at, finding.detail)
    if status == "verified" and (verified_at is None or now - verified_at > PROOF_GRACE):
        return Transition("unverified", verified_at, f"proof unseen for over a day: {finding.detail}",
                          "domain_unverified")
    return Transition(status, verified_at, f"could not check: {finding.detail}")


def recheck_due(row: Any, now: float) -> bool:
    """Is a claim due for the schedule's look-up? Fresh and verified claims every run, idle ones hourly."""
    last = row["last_checked_at"]
    if last is None:
        return True
    idle = row["status"] != "verified" and now - row["rotated_at"] > IDLE_CLAIM_AGE
    return now - last >= (IDLE_RECHECK if idle else RECHECK)


def _claim(conn: sqlite3.Connection, did: str, domain: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM member_domains WHERE did = ? AND domain = ?", (did, domain)).fetchone()


def _holder(conn: sqlite3.Connection, did: str, domain: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM member_domains WHERE domain = ? AND did != ? AND status = 'verified'",
                        (domain, did)).fetchone()


def record(context: LambdaContext, row: Any, finding: Finding) -> dict[str, Any]:
    """Store one claim's finding in one transaction, with its event; a claim re-keyed meanwhile is left alone."""
    did, domain = row["did"], row["domain"]
    with context.store.transaction() as tx:
        now = context.clock.now()
        current = _claim(tx, did, domain)
        if current is None or current["rotated_at"] != row["rotated_at"]:
            return {"domain": domain, "did": did, "status": current["status"] if current else "gone",
                    "detail": "keys changed while checking; checked again on the next run", "changed": False}
        holder = _holder(tx, did, domain)
        step = decide(current["status"], current["verified_at"], finding, holder["did"] if holder else "", now)
        tx.execute("UPDATE member_domains SET status = ?, verified_at = ?, last_checked_at = ?, last_failure = ?"
                   " WHERE did = ? AND domain = ?", (step.status, step.verified_at, now, step.last_failure[:500],
                                                     did, domain))
        if step.event:
            reason = step.last_failure or finding.detail
            events.emit(tx, context, step.event, {"sender_did": did, "domain": domain, "reason": reason})
    if step.event:
        log = context.logger.info if step.event == "domain_verified" else context.logger.warning
        log(step.event.replace("_", ".", 1), did=did, domain=domain, reason=step.last_failure or finding.detail)
    return {"domain": domain, "did": did, "status": step.status, "detail": step.last_failure or finding.detail,
            "changed": bool(step.event)}


def verify_claim(context: LambdaContext, row: Any) -> dict[str, Any]:
    """Check one claim; if it is proven while another member holds the domain, check the holder too."""
    finding = examine(context, row)
    holder = _holder(context.store.connection(), row["did"], row["domain"])
    if finding.outcome == "proven" and holder is not None:
        record(context, holder, examine(context, holder))
    return record(context, row, finding)


def _out_of_time(context: LambdaContext) -> bool:
    return context.get_remaining_time_in_millis() < MARGIN_MS


def verify_member(context: LambdaContext, did: str) -> list[dict[str, Any]]:
    """Every claim of one member, now (`member verify`, the Verify button, approval)."""
    rows = context.store.connection().execute(
        "SELECT * FROM member_domains WHERE did = ? ORDER BY domain", (did,)).fetchall()
    results = []
    for row in rows:
        if _out_of_time(context):
            results.append({"domain": row["domain"], "did": did, "status": row["status"],
                            "detail": "not checked: out of time; the labeler checks it within a minute",
                            "changed": False})
            continue
        results.append(verify_claim(context, row))
    return results


def verify_due(context: LambdaContext) -> dict[str, Any]:
    """The schedule's pass over every claim that is due, oldest check first, as far as time allows."""
    now = context.clock.now()
    rows = context.store.connection().execute(
        "SELECT * FROM member_domains ORDER BY last_checked_at IS NOT NULL, last_checked_at").fetchall()
    checked, changed = 0, []
    for row in rows:
        if not recheck_due(row, now):
            continue
        if _out_of_time(context):
            break
        result = verify_claim(context, row)
        checked += 1
        if result["changed"]:
            changed.append({k: result[k] for k in ("did", "domain", "status")})
    return {"claimsChecked": checked, "claimsChanged": changed}
