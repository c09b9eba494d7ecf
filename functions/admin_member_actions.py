"""`admin-member-actions`: approve, suspend, reactivate, verify and purge-queue, for the runbook's curl lines and the
dashboard's buttons.

Both callers hit the same routes: a script with `Authorization: Bearer`
gets the member as JSON; a browser posts a form with its CSRF token and
is sent back to the page it came from. Suspension is read by `auth` on
the member's next AUTH, so it takes effect at once, and it freezes the
member's queued mail; purge-queue deletes that mail undelivered.
"""
from __future__ import annotations

from urllib.parse import quote

from functions.members import domain_proof, member_queue, registry
from functions.web import admin_auth, http_api
from runtime.context import LambdaContext

ACTIONS = ("approve", "suspend", "reactivate", "verify", "purge-queue")


def _back(form: dict[str, str], did: str) -> str:
    target = form.get("next", "")
    if target.startswith("/admin/") and not target.startswith("//"):
        return target
    return f"/admin/members/{quote(did, safe=':')}"


def handler(event: dict, context: LambdaContext) -> dict:
    admin = admin_auth.admin_of(event)
    action = (event.get("rawPath") or "").rstrip("/").rsplit("/", 1)[-1]
    if action not in ACTIONS:
        return http_api.error(event, 404, f"no such member action {action!r}")
    form = http_api.form(event)
    did, actor = admin.did, admin.actor
    reason = (http_api.query(event, "reason") or form.get("reason", "")).strip()
    try:
        with context.store.transaction() as tx:
            if action == "approve":
                view = registry.approve(tx, context, did, actor=actor, reason=reason)
            elif action == "suspend":
                view = registry.suspend(tx, context, did, reason, actor=actor)
            elif action == "reactivate":
                view = registry.reactivate(tx, context, did, actor=actor, reason=reason)
            else:
                view = registry.member_view(tx, did, context.settings)
                if action == "purge-queue":
                    view = {**view, "purged": member_queue.purge(tx, context, did, actor=actor)}
        if action in ("approve", "verify"):
            domain_proof.verify_member(context, did)
            view = registry.member_view(context.store.connection(), did, context.settings)
    except registry.MemberError as exc:
        return http_api.error(event, exc.http_status, exc.message)
    context.logger.info("admin.member", action=action, did=did, status=view["status"], reason=view["reason"],
                        actor=actor, client=http_api.source_ip(event))
    if admin.via == "session" and not http_api.wants_json(event):
        return http_api.redirect(_back(form, did))
    return http_api.json_response(200, view)
