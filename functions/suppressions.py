"""`suppressions`: the admin API for a member's suppression list, as Postal and SES users expect.

GET lists the live entries, POST adds one (recipient, reason), DELETE
removes one. Same bearer token (or dashboard session + CSRF) as the rest of
the admin API.
"""
from __future__ import annotations

from urllib.parse import unquote

from functions.members import suppression
from functions.members.identifiers import address_domain
from functions.web import admin_auth, http_api
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    did = admin_auth.admin_of(event).did
    conn = context.store.connection()
    if conn.execute("SELECT 1 FROM members WHERE did = ?", (did,)).fetchone() is None:
        return http_api.error(event, 404, f"no member with DID {did}")
    now = context.clock.now()
    method = http_api.method(event)
    if method == "GET":
        entries = suppression.entries(conn, did, now)
        return http_api.json_response(200, {"did": did, "suppressions": entries, "count": len(entries)})
    form = http_api.form(event)
    if method == "POST":
        recipient = (form.get("recipient") or http_api.query(event, "recipient")).strip()
        if not address_domain(recipient):
            return http_api.error(event, 400, f"not an email address: {recipient!r}")
        reason = (form.get("reason") or http_api.query(event, "reason") or "added by operator").strip()
        with context.store.transaction() as tx:
            suppression.add(tx, did, recipient, reason, "operator", now, context.settings.suppressionTtl)
        context.logger.info("suppression.added", did=did, recipient=suppression.normalize(recipient), reason=reason)
        return http_api.json_response(201, {"did": did, "recipient": suppression.normalize(recipient),
                                            "reason": reason})
    if method == "DELETE":
        recipient = unquote(http_api.path_param(event, "recipient") or http_api.query(event, "recipient"))
        with context.store.transaction() as tx:
            removed = suppression.remove(tx, did, recipient)
        if not removed:
            return http_api.error(event, 404, f"{recipient} is not suppressed for {did}")
        context.logger.info("suppression.removed", did=did, recipient=suppression.normalize(recipient))
        return http_api.json_response(200, {"did": did, "recipient": suppression.normalize(recipient),
                                            "removed": True})
    return http_api.error(event, 405, "use GET, POST or DELETE")
