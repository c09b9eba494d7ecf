"""`admin-members`: the member list and the detail page an operator reads before approving.

Everything on the detail page is looked up when it is asked for: DKIM
records through the configured resolver, the attestation from the
member's PDS, usage from the send counters. Runbook task 3: green on
DKIM, attestation and labels, a sane history, then approve.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from functions.dkim import dns_check, key_pairs
from functions.members import attestation, labels, registry, suppression
from functions.reputation import caps_reached, limits
from functions.web import activity_chart, admin_auth, http_api, pages
from runtime.context import LambdaContext

STATUSES = ("pending", "active", "suspended")


def _caps(conn: sqlite3.Connection, context: LambdaContext, did: str) -> dict[str, Any]:
    found = limits.standing(conn, context, did)
    if found is None:
        return {"tier": "", "hourlyCap": 0, "dailyCap": 0, "sentLastHour": 0, "sent24h": 0}
    caps, hour, day = found
    return {"tier": caps.tier, "hourlyCap": caps.hourly, "dailyCap": caps.daily, "sentLastHour": hour,
            "sent24h": day}


def member_rows(conn: sqlite3.Connection, context: LambdaContext, status: str) -> list[dict[str, Any]]:
    """Each member with its caps and usage, and the caps it is at now (`member_at_cap` events of the window)."""
    out = []
    at_cap = caps_reached.current(conn, context.clock.now())
    for row in registry.list_members(conn, status):
        did = row["did"]
        out.append({"did": did, "status": row["status"], "reason": row["reason"],
                    "domains": sorted((row["domains"] or "").split()),
                    "labels": sorted(l["val"] for l in labels.details(conn, did)),
                    "createdAt": row["created_at"], "approvedAt": row["approved_at"],
                    "atCap": at_cap.get(did, []), **_caps(conn, context, did)})
    return out


def member_detail(conn: sqlite3.Connection, context: LambdaContext, did: str) -> dict[str, Any]:
    view = registry.member_view(conn, did, context.settings)
    resolver = context.resolver()
    atproto = context.settings.atproto
    domains = []
    for row in conn.execute("SELECT * FROM member_domains WHERE did = ? ORDER BY domain", (did,)):
        selectors = [key_pairs.rsa_selector(row["dkim_selector"]), key_pairs.ed25519_selector(row["dkim_selector"])]
        domains.append({
            "domain": row["domain"],
            "selector": row["dkim_selector"],
            "dkim": dns_check.domain_status(resolver, row),
            "attestation": attestation.check(did, row["domain"], selectors, atproto.plcUrl,
                                             min(atproto.timeout, 5.0), atproto.allowPrivateAddresses),
            "rotatedAt": row["rotated_at"],
        })
    activity = activity_chart.daily_activity(conn, did, context.clock.now())
    recent = [{"id": r["id"], "actionName": r["action_name"], "createdAt": r["created_at"],
               "verdicts": r["verdicts"]} for r in conn.execute(
        "SELECT id, action_name, created_at, verdicts FROM relay_events WHERE sender_did = ?"
        " ORDER BY id DESC LIMIT 20", (did,))]
    return {**view, "labelDetails": labels.details(conn, did), **_caps(conn, context, did),
            "domainChecks": domains, "activity": activity, "recentEvents": recent,
            "suppressions": suppression.entries(conn, did, context.clock.now())}


def handler(event: dict, context: LambdaContext) -> dict:
    admin = admin_auth.admin_of(event)
    conn = context.store.connection()
    csrf = admin.csrf
    if not admin.did:
        status = http_api.query(event, "status")
        if status and status not in STATUSES:
            return http_api.error(event, 400, f"status must be one of {', '.join(STATUSES)}")
        rows = member_rows(conn, context, status)
        if http_api.wants_json(event):
            return http_api.json_response(200, {"members": rows, "count": len(rows)})
        return pages.page(200, "members.html", members=rows, status=status, statuses=STATUSES, csrf=csrf)
    try:
        detail = member_detail(conn, context, admin.did)
    except registry.MemberNotFound as exc:
        return http_api.error(event, 404, exc.message)
    if http_api.wants_json(event):
        return http_api.json_response(200, detail)
    return pages.page(200, "member.html", m=detail, csrf=csrf, chart=activity_chart.svg(detail["activity"]))
