"""`enroll`: the self-service wizard at /enroll, for a browser and for `Accept: application/json`.

A new DID and domain need nothing but the form: the member is created
pending and an operator approves it. Touching an existing member (rotating
a domain's keys, as runbook task 2 asks, or adding a domain) needs one of
its current API keys; an operator without it uses `atmos-relay member enroll`.
Either way the domain starts unproven and carries no mail until the member
has published its DKIM records and attestation and the relay has seen them
(`functions/members/domain_proof.py`); a claim nobody has proven blocks no one.
"""
from __future__ import annotations

from email.utils import parseaddr

from functions.members import onboarding, registry
from functions.members.identifiers import InvalidIdentifier, address_domain, normalize_did, normalize_domain
from functions.web import enroll_throttle, http_api, pages
from runtime.context import LambdaContext

FIELDS = ("did", "domain", "contact", "forwardTo", "currentApiKey")
_EMAIL_MAX = 254


def _check_address(value: str, what: str) -> str:
    """A bare address (no display name) at a valid domain, or empty."""
    value = value.strip()
    if value and (len(value) > _EMAIL_MAX or parseaddr(value)[1] != value or not address_domain(value)):
        raise InvalidIdentifier(f"{what} is not an email address: {value!r}")
    return value


def _form_page(event: dict, status: int, form: dict[str, str], error: str = "") -> dict:
    if http_api.wants_json(event):
        if error:
            return http_api.json_response(status, {"error": error, "status": status})
        return http_api.json_response(200, {
            "enroll": {"method": "POST", "path": "/enroll", "fields": list(FIELDS), "required": ["did", "domain"]}})
    shown = {k: form.get(k, "") for k in FIELDS if k != "currentApiKey"}
    return pages.page(status, "enroll_form.html", form=shown, error=error)


def handler(event: dict, context: LambdaContext) -> dict:
    if (event.get("rawPath") or "/") == "/":
        return http_api.redirect("/enroll")
    if http_api.method(event) != "POST":
        return _form_page(event, 200, {})
    client = http_api.source_ip(event)
    if not enroll_throttle.admit(context, client):  # before the body is parsed: a refused attempt costs nothing
        context.logger.warning("enroll.refused", reason="throttled", client=client)
        response = _form_page(event, 429, {}, f"too many enrollments from {client} this hour; try again later")
        response["headers"]["Retry-After"] = str(3600 - int(context.clock.now()) % 3600)
        return response
    form = {k: (v or "").strip() for k, v in http_api.form(event).items()}
    try:
        did = normalize_did(form.get("did", ""))
        domain = normalize_domain(form.get("domain", ""))
        contact = _check_address(form.get("contact", ""), "contact")
        forward_to = _check_address(form.get("forwardTo", ""), "forward address")
        registry.prove_ownership(context.store.connection(), did, domain, form.get("currentApiKey", ""))
        material = registry.new_material()
        with context.store.transaction() as conn:
            enrolled = registry.enroll(conn, context, did, domain, material, contact=contact, forward_to=forward_to)
    except InvalidIdentifier as exc:
        return _form_page(event, 400, form, exc.message)
    except registry.MemberError as exc:
        context.logger.info("enroll.refused", did=form.get("did", ""), domain=form.get("domain", ""),
                            reason=exc.message, client=client)
        return _form_page(event, exc.http_status, form, exc.message)
    context.logger.info("member.enrolled", did=did, domain=domain, rotated=enrolled["rotated"],
                        verification=enrolled["verification"], via="enroll", client=client)
    setup = onboarding.instructions(context.settings, enrolled)
    if http_api.wants_json(event):
        return http_api.json_response(201, {**enrolled, **setup})
    return pages.page(201, "enroll_done.html", enrolled=enrolled, setup=setup,
                          operator_domain=context.settings.operatorDomain)
