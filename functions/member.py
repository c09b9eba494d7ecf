"""`member`: the operator's member commands (`atmos-relay member ...`), one action per event."""
from __future__ import annotations

from functions.members import domain_proof, member_queue, registry
from functions.members.identifiers import normalize_did, normalize_domain
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict | list:
    action = event.get("action")
    store = context.store
    actor = str(event.get("actor") or "cli")
    if action == "enroll":
        did, domain = normalize_did(event.get("did", "")), normalize_domain(event.get("domain", ""))
        material = registry.new_material()
        with store.transaction() as conn:
            return registry.enroll(conn, context, did, domain, material,
                                  contact=str(event.get("contact") or ""), forward_to=str(event.get("forwardTo") or ""))
    if action == "approve":
        with store.transaction() as conn:
            view = registry.approve(conn, context, event.get("did", ""), actor=actor,
                                    reason=str(event.get("reason") or ""))
        return verified_view(context, view["did"])
    if action == "verify":
        return verified_view(context, normalize_did(event.get("did", "")))
    if action == "suspend":
        with store.transaction() as conn:
            return registry.suspend(conn, context, event.get("did", ""), str(event.get("reason") or ""), actor=actor)
    if action == "reactivate":
        with store.transaction() as conn:
            return registry.reactivate(conn, context, event.get("did", ""), actor=actor,
                                      reason=str(event.get("reason") or ""))
    if action == "purge-queue":
        with store.transaction() as conn:
            did = normalize_did(event.get("did", ""))
            registry.member_view(conn, did, context.settings)
            return {"did": did, "purged": member_queue.purge(conn, context, did, actor=actor)}
    if action == "limits":
        with store.transaction() as conn:
            return registry.set_limits(conn, context, event.get("did", ""), event.get("hourly"), event.get("daily"))
    if action == "label":
        with store.transaction() as conn:
            return registry.set_label(conn, context, event.get("did", ""), str(event.get("label") or ""),
                                     add=not event.get("remove"), actor=actor, reason=str(event.get("reason") or ""))
    if action == "show":
        return registry.member_view(store.connection(), normalize_did(event.get("did", "")), context.settings)
    if action == "list":
        rows = registry.list_members(store.connection(), str(event.get("status") or ""))
        return [{"did": r["did"], "status": r["status"], "domains": (r["domains"] or "").split(),
                 "reason": r["reason"], "createdAt": r["created_at"], "approvedAt": r["approved_at"]} for r in rows]
    if action == "dns":
        domain = normalize_domain(event.get("domain", ""))
        return {"domain": domain, "dnsRecords": registry.domain_records(
            store.connection(), domain, context.settings.operatorDomain)}
    raise registry.MemberError(f"unknown member action {action!r}")


def verified_view(context: LambdaContext, did: str) -> dict:
    """Check every domain of the member now (approval, `member verify`) and show the member as it then stands."""
    registry.member_view(context.store.connection(), did, context.settings)
    checks = domain_proof.verify_member(context, did)
    return {**registry.member_view(context.store.connection(), did, context.settings), "checks": checks}
