"""`member-status`: a member's own page, where it stands (issue 14, "Members see where they stand").

Status, tier and when it changes, caps and usage, its mail waiting in the
spool, bounces and complaints beside the rules' thresholds, suppressed
recipients, domain proof and labels (`functions/members/standing.py`), and
the one thing a member may change here: taking an address it knows is
wrong off its suppression list (`functions/members/own_suppressions.py`).
The member-authorizer has checked the member's own credentials; every
route shows or changes that member and no other. A suspended member sees
its page too: that is when it needs it most.
"""
from __future__ import annotations

from urllib.parse import unquote

from functions.members import own_suppressions, registry, standing
from functions.web import http_api, member_auth, pages
from runtime.context import LambdaContext

STATUS, STATUS_JSON = "GET /member/status", "GET /member/status.json"
SUPPRESSIONS, REMOVE, DELETE = ("GET /member/suppressions", "POST /member/suppressions/remove",
                                "DELETE /member/suppressions/{recipient}")


def route_key(event: dict) -> str:
    return str(event.get("routeKey") or "")


def paging(event: dict) -> tuple[int, int]:
    """`?offset=` and `?limit=` of the suppression list; ValueError when either is not an integer."""
    offset = max(int(http_api.query(event, "offset") or 0), 0)
    return offset, http_api.page_limit(event, own_suppressions.PAGE, own_suppressions.MAX_PAGE)


def render(event: dict, context: LambdaContext, status: int = 200, notice: str = "", error: str = "") -> dict:
    """The page (or its JSON) for the authorized member, with the outcome of a form post when there was one."""
    member = member_auth.member_of(event)
    try:
        offset, limit = paging(event)
    except ValueError:
        return http_api.error(event, 400, "offset and limit must be integers")
    try:
        view = standing.view(context.store.connection(), context, member.did, offset, limit)
    except registry.MemberNotFound as exc:  # removed between the authorizer and here
        return http_api.error(event, 404, exc.message)
    if route_key(event) == STATUS_JSON or (route_key(event) == STATUS and http_api.wants_json(event)):
        return http_api.json_response(status, view)
    return pages.page(status, "member_status.html", m=view, csrf=member.csrf, login=member.domain or member.did,
                      notice=notice, error=error)


def suppressions(event: dict, context: LambdaContext) -> dict:
    member = member_auth.member_of(event)
    try:
        offset, limit = paging(event)
    except ValueError:
        return http_api.error(event, 400, "offset and limit must be integers")
    page = own_suppressions.page(context.store.connection(), member.did, context.clock.now(),
                                 context.settings.suppressionTtl, offset, limit)
    return http_api.json_response(200, {"did": member.did, **page})


def remove(event: dict, context: LambdaContext) -> dict:
    """POST (the page's form, or JSON) or DELETE one address; the form gets the page back with the outcome."""
    member = member_auth.member_of(event)
    if route_key(event) == DELETE:
        recipient = unquote(http_api.path_param(event, "recipient"))
    else:
        recipient = http_api.form(event).get("recipient", "")
    form_post = route_key(event) == REMOVE and not http_api.wants_json(event)
    try:
        with context.store.transaction() as tx:
            removed = own_suppressions.remove(tx, context, member.did, recipient)
    except registry.MemberError as exc:
        context.logger.info("suppression.remove_refused", did=member.did, by="member",
                            recipient=recipient[:320], reason=exc.message)
        if form_post:
            return render(event, context, exc.http_status, error=exc.message)
        return http_api.error(event, exc.http_status, exc.message)
    context.logger.info("suppression.removed", did=member.did, by="member", **removed)
    if form_post:
        return render(event, context, notice=f"{removed['recipient']} is no longer suppressed")
    return http_api.json_response(200, {"did": member.did, **removed, "removed": True})


def handler(event: dict, context: LambdaContext) -> dict:
    key = route_key(event)
    if key == SUPPRESSIONS:
        return suppressions(event, context)
    if key in (REMOVE, DELETE):
        return remove(event, context)
    return render(event, context)
