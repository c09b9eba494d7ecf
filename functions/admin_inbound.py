"""`admin-inbound`: what arrived on the inbound MX, newest first, and whether it counted against a member.

Complaints and bounces that could not be proven to be about the relay's
mail count for nothing, but the operator sees them here with why and whom
they claimed (a burst of forged reports naming one member is itself worth
knowing), next to the proof of those that counted and a report's own DKIM
result.
"""
from __future__ import annotations

import json

from functions.web import admin_auth, http_api, pages
from runtime.context import LambdaContext

CLASSIFICATIONS = ("complaint", "bounce", "operator", "reply", "auto-reply", "unknown")
DEFAULT_LIMIT, MAX_LIMIT = 100, 500


def _listed(row) -> dict:
    try:
        details = json.loads(row["details"] or "{}")
    except ValueError:
        details = {}
    return {"id": row["id"], "receivedAt": row["received_at"], "classification": row["classification"],
            "memberDid": row["member_did"], "claimedMemberDid": details.get("claimed_member_did") or None,
            "subject": row["subject"], "recipient": row["recipient"], "mailFrom": row["mail_from"],
            "counted": bool(row["counted"]), "notCountedReason": row["not_counted_reason"],
            "proof": row["proof"], "reportDkim": row["report_dkim"],
            "decisions": details.get("decisions") or []}


def handler(event: dict, context: LambdaContext) -> dict:
    admin = admin_auth.admin_of(event)
    conn = context.store.connection()
    kind, counted = http_api.query(event, "classification").strip(), http_api.query(event, "counted").strip()
    did = http_api.query(event, "did").strip()
    if kind and kind not in CLASSIFICATIONS:
        return http_api.error(event, 400, f"classification must be one of {', '.join(CLASSIFICATIONS)}")
    if counted not in ("", "0", "1"):
        return http_api.error(event, 400, "counted must be 0 or 1")
    try:
        limit = http_api.page_limit(event, DEFAULT_LIMIT, MAX_LIMIT)
    except ValueError:
        return http_api.error(event, 400, "limit must be an integer")
    rows = conn.execute(
        "SELECT * FROM inbound_messages WHERE (? = '' OR classification = ?) AND (? = '' OR counted = ?)"
        " AND (? = '' OR member_did = ? OR json_extract(details, '$.claimed_member_did') = ?)"
        " ORDER BY id DESC LIMIT ?", (kind, kind, counted, counted, did, did, did, limit)).fetchall()
    listed = [_listed(r) for r in rows]
    if http_api.wants_json(event):
        return http_api.json_response(200, {"inbound": listed, "count": len(listed)})
    return pages.page(200, "inbound.html", inbound=listed, classification=kind, classifications=CLASSIFICATIONS,
                      counted=counted, did=did, csrf=admin.csrf)
