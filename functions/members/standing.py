"""Where a member stands, as the member itself reads it on its status page.

Everything here is what the relay already keeps: the caps `limits` checks
at RCPT and the usage it counts, the tier the policy file gives by age
since approval and when that changes, the member's recipients still in the
spool by state, the figures the reputation rules last compared (as the
stream app wrote them into the member's latest execution result, so the
page shows the very numbers a rule fired or did not fire on), the stored
outcome of the domain proof (no live DNS per page view), labels, and the
member's own `member_at_cap` events. Nothing about another member leaves
this module: a domain's other claimants are left out, and another DID in a
stored reason is written as "another member".
"""
from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from functions.dkim import key_pairs
from functions.members import labels, own_suppressions, registry
from functions.reputation import caps_reached, limits, policy
from runtime.context import LambdaContext

SETTLED = ("delivered", "failed", "expired")
# The waiting states, always shown (zero when empty); a state the spool learns later shows up as well.
WAITING = ("queued", "deferred", "held", "frozen")
FEEDBACK_FIGURES = ("sends_7d", "deliveries_7d", "hard_bounces_7d", "soft_bounces_7d", "complaints_7d",
                    "hard_bounce_rate_7d", "complaint_rate_7d")
_DID = re.compile(r"did:[a-z0-9]+:[A-Za-z0-9._:%-]+")


def next_tier(member: Any, member_labels: set[str], pol: policy.Policy, default_hourly: int, default_daily: int,
              now: float) -> dict[str, Any] | None:
    """The tier the member moves into next and when, by the same `caps_for` the submission path uses."""
    approved = member["approved_at"]
    if approved is None or pol.warming.trustedLabel in member_labels:
        return None
    age_days = (now - approved) / 86400
    for tier in pol.warming.tiers:
        if age_days < tier.maxAgeDays:
            at = approved + tier.maxAgeDays * 86400
            caps = limits.caps_for(member, member_labels, pol, default_hourly, default_daily, at)
            return {"tier": caps.tier, "at": at, "hourlyCap": caps.hourly, "dailyCap": caps.daily}
    return None


def sending(conn: sqlite3.Connection, context: LambdaContext, member: sqlite3.Row,
            member_labels: set[str]) -> dict[str, Any]:
    """Tier, caps and usage in the windows `limits.check` counts (the last 60 minutes, the last 24 hours)."""
    settings = context.settings
    found = limits.standing(conn, context, member["did"])
    if found is None:
        raise registry.MemberNotFound(f"no member with DID {member['did']}")
    caps, hour, day = found
    pol = policy.load(settings.rulesFile)
    return {
        "tier": caps.tier,
        "nextTier": next_tier(member, member_labels, pol, settings.limits.hourly, settings.limits.daily,
                              context.clock.now()),
        "hourly": {"cap": caps.hourly, "used": hour, "left": max(0, caps.hourly - hour), "window": "last 60 minutes"},
        "daily": {"cap": caps.daily, "used": day, "left": max(0, caps.daily - day), "window": "last 24 hours"},
    }


def _shown_state() -> str:
    """A waiting row's name as the spool shows it (runtime.spool.SHOWN_STATE), with deferred (tried, due again
    later) told apart from queued, which a member asks about. One `?`: now."""
    return ("CASE WHEN r.frozen = 1 THEN 'frozen'"
            " WHEN r.state = 'queued' AND r.held_until > ? THEN 'held'"
            " WHEN r.state = 'queued' AND r.attempts > 0 THEN 'deferred' ELSE r.state END")


def queue(conn: sqlite3.Connection, did: str, now: float) -> dict[str, dict[str, Any]]:
    """The member's recipients not yet settled, by shown state, with the earliest time one is due."""
    out: dict[str, dict[str, Any]] = {state: {"count": 0, "notBefore": None} for state in WAITING}
    marks = ",".join("?" * len(SETTLED))
    for row in conn.execute(
            f"SELECT {_shown_state()} AS shown, COUNT(*) AS n, MIN(r.next_attempt_at) AS due"
            " FROM sent_messages s JOIN spool_recipients r ON r.queue_id = s.queue_id"
            f" WHERE s.did = ? AND r.state NOT IN ({marks}) GROUP BY 1", (now, did, *SETTLED)):
        out[row["shown"]] = {"count": row["n"], "notBefore": row["due"]}
    return out


def _latest_figures(conn: sqlite3.Connection, did: str) -> tuple[dict[str, float], float | None]:
    """The Figures of the member's latest execution result; a producer's non-numbers are left out."""
    row = conn.execute(
        "SELECT json_extract(raw, '$.Figures') AS figures, created_at FROM relay_events"
        " WHERE sender_did = ? AND json_type(raw, '$.Figures') = 'object' ORDER BY id DESC LIMIT 1",
        (did,)).fetchone()
    if row is None:
        return {}, None
    raw = json.loads(row["figures"])
    return {k: float(v) for k, v in raw.items() if k in policy.METRICS and isinstance(v, (int, float))
            and not isinstance(v, bool)}, row["created_at"]


def feedback(conn: sqlite3.Connection, did: str, pol: policy.Policy) -> dict[str, Any]:
    """Bounces and complaints of the last 7 days, and every rule's conditions beside the member's figures."""
    figures, as_of = _latest_figures(conn, did)
    rules = [{
        "rule": rule.name, "description": rule.description, "suspends": rule.suspend,
        "addsLabels": list(rule.add_labels), "removesLabels": list(rule.remove_labels),
        "conditions": [{"metric": c.metric, "op": c.op, "value": c.value, "yours": figures.get(c.metric, 0.0),
                        "holds": c.holds(figures)} for c in rule.when],
    } for rule in pol.rules]
    return {"asOf": as_of, "figures": {name: figures.get(name, 0.0) for name in FEEDBACK_FIGURES},
            "rules": rules}


def redact_others(text: str | None, did: str) -> str | None:
    """A stored reason with every DID but the member's own written as "another member"."""
    return _DID.sub(lambda m: m.group(0) if m.group(0) == did else "another member", text) if text else text


def domains(conn: sqlite3.Connection, did: str, operator_domain: str) -> list[dict[str, Any]]:
    """Each domain's proof as the labeler last found it, and the records to publish; never another claimant."""
    out = []
    for row in conn.execute("SELECT * FROM member_domains WHERE did = ? ORDER BY domain", (did,)):
        out.append({
            "domain": row["domain"],
            "selectors": [key_pairs.rsa_selector(row["dkim_selector"]), key_pairs.ed25519_selector(row["dkim_selector"])],
            "verification": row["status"],
            "verifiedAt": row["verified_at"],
            "lastCheckedAt": row["last_checked_at"],
            "lastFailure": redact_others(row["last_failure"], did),
            "dnsRecords": registry.dns_records(row["domain"], row["dkim_selector"], row["dkim_rsa_pubkey"],
                                               row["dkim_ed_pubkey"], operator_domain),
        })
    return out


def view(conn: sqlite3.Connection, context: LambdaContext, did: str, offset: int = 0,
         limit: int = own_suppressions.PAGE) -> dict[str, Any]:
    """The whole status page as one JSON object (docs/contract.md, "Member status")."""
    member = conn.execute("SELECT * FROM members WHERE did = ?", (did,)).fetchone()
    if member is None:
        raise registry.MemberNotFound(f"no member with DID {did}")
    now = context.clock.now()
    member_labels = labels.current(conn, did)
    return {
        "did": did,
        "status": member["status"],
        "reason": redact_others(member["reason"], did) if member["status"] == "suspended" else None,
        "createdAt": member["created_at"],
        "approvedAt": member["approved_at"],
        "suspendedAt": member["suspended_at"],
        "sending": sending(conn, context, member, member_labels),
        "atCap": caps_reached.current(conn, now, did).get(did, []),
        "queue": queue(conn, did, now),
        "feedback": feedback(conn, did, policy.load(context.settings.rulesFile)),
        "suppressions": own_suppressions.page(conn, did, now, context.settings.suppressionTtl, offset, limit),
        "domains": domains(conn, did, context.settings.operatorDomain),
        "labels": [{"label": entry["val"], "source": entry["src"], "since": entry["since"],
                    "reason": redact_others(entry["reason"], did)} for entry in labels.details(conn, did)],
    }
