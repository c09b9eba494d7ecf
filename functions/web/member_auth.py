"""Who may read a member's status page: that member, with the credentials its PDS sends over SMTP.

HTTP Basic with the member's DID or domain as user and its API key as
password, checked by `functions/members/credentials.py` like SMTP AUTH, and
counted in the same failure store (`runtime/auth_throttle.py`): a wrong key
here costs the address and the username what it costs on port 587, so the
page is no cheaper way to guess keys. Past the limit an attempt waits its
turn before it is checked, as an SMTP session does, but a request waits at
most MAX_WAIT: one whose turn is further off gets 429 with Retry-After,
unchecked, and does not count.

A browser sends Basic credentials with any request to the relay, even one
another site's form makes, so the page's own forms carry a CSRF token
derived from the member and its current key hash (a rotated key voids it).
A JSON body (`Content-Type: application/json`) and DELETE need none: no
other site can send them without a CORS preflight, which the relay never
grants.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import sqlite3
import time
from dataclasses import dataclass

from functions.members import credentials
from functions.web import http_api
from runtime.auth_throttle import address_key, username_key
from runtime.context import LambdaContext

REALM = 'Basic realm="Atmosphere Mail member", charset="UTF-8"'
# The longest turn a request waits for before its credentials are checked; a later turn gets 429.
MAX_WAIT = 5.0


@dataclass(frozen=True)
class Member:
    did: str
    domain: str  # the domain whose key was given
    csrf: str


def basic_credentials(event: dict) -> tuple[str, str] | None:
    """(user, password) of `Authorization: Basic ...`; None when absent, another scheme or undecodable.

    RFC 7617 splits at the first colon, but the user here may be a DID (`did:plc:...`, as SMTP AUTH
    takes it), and API keys are URL-safe base64: the last colon is the one that separates them.
    """
    scheme, _, encoded = http_api.header(event, "authorization").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip() or len(encoded) > 2048:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.rpartition(":")  # a DID has colons; an API key never does
    return (user.strip(), password) if colon and user.strip() else None


def csrf_token(conn: sqlite3.Connection, login: credentials.Login) -> str:
    """Keyed by the relay's session secret under a name of its own, so it is never an admin token's."""
    row = conn.execute("SELECT value FROM relay_secrets WHERE name = 'admin-session'").fetchone()
    text = f"member-csrf:{login.did}:{login.matched.api_key_hash}"
    return hmac.new(bytes.fromhex(row["value"]), text.encode(), hashlib.sha256).hexdigest()


def challenge(event: dict, message: str) -> dict:
    response = http_api.error(event, 401, message)
    response["headers"]["WWW-Authenticate"] = REALM
    return response


def throttled(event: dict, wait: float) -> dict:
    response = http_api.error(event, 429, "too many failed logins from your address or for this member;"
                                          " try again later")
    response["headers"]["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _login(event: dict, context: LambdaContext, user: str, password: str) -> credentials.Login | dict:
    """The member, or the refusal: 429 when its turn is too far off (nothing checked), 401 for wrong credentials."""
    client = http_api.source_ip(event)
    keys = (address_key(client), username_key(user))
    throttle = context.auth_throttle()
    attempt = throttle.begin(*keys)
    bound = min(MAX_WAIT, max(0.0, context.get_remaining_time_in_millis() / 1000 - 2))
    if attempt.wait:
        refused = attempt.refused or attempt.wait > bound
        context.logger.warning("member_status.auth_throttled", client=client, username=user,
                               delay=round(attempt.wait, 3), refused=refused)
        if refused:
            throttle.abandon(attempt)
            return throttled(event, attempt.wait)
        time.sleep(attempt.wait)
    login = credentials.check(context.store.connection(), user, password)
    if login is None:
        failures = throttle.failed(attempt)
        context.logger.warning("member_status.auth", result="failed", client=client, username=user,
                               failures=failures)
        return challenge(event, "Unauthorized: your domain or DID and API key, as for SMTP AUTH")
    throttle.succeeded(attempt, reset=username_key(user))
    return login


def authorize(event: dict, context: LambdaContext) -> dict:
    """The gateway's verdict on one member request: whose credentials, and the CSRF token on a form post."""
    given = basic_credentials(event)
    if given is None:
        if http_api.header(event, "authorization"):
            context.auth_throttle().record_failure(address_key(http_api.source_ip(event)))
        return {"isAuthorized": False, "response": challenge(
            event, "Unauthorized: send HTTP Basic with your domain or DID and your API key")}
    found = _login(event, context, *given)
    if isinstance(found, dict):
        return {"isAuthorized": False, "response": found}
    csrf = csrf_token(context.store.connection(), found)
    if _needs_csrf(event) and not hmac.compare_digest(http_api.form(event).get("csrf", "").encode(), csrf.encode()):
        return {"isAuthorized": False, "response": http_api.error(event, 403, "missing or stale CSRF token")}
    return {"isAuthorized": True, "context": {"did": found.did, "domain": found.matched.domain, "csrf": csrf}}


def _needs_csrf(event: dict) -> bool:
    method = http_api.method(event)
    if method in http_api.SAFE_METHODS or method == "DELETE":
        return False
    return not http_api.header(event, "content-type").lower().startswith("application/json")


def member_of(event: dict) -> Member:
    """The member the gateway's authorizer let through; never a default."""
    verdict = http_api.authorizer_verdict(event)
    if not verdict.get("did"):
        raise http_api.AuthorizerMissing("member route reached without member-authorizer's verdict")
    return Member(verdict["did"], verdict.get("domain", ""), verdict.get("csrf", ""))
