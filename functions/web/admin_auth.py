"""Who may use the admin API and pages: the bearer of `adminToken`, or a browser session it opened.

Every admin route names `authorizer: admin-authorizer` in serverless.yml, so
the gateway runs `authorize` before the route's function and the function
only reads the verdict (`admin_of`). Scripts send `Authorization: Bearer
<adminToken>` (the runbook's curl lines); a wrong token counts as a failed
login in the store SMTP AUTH uses, and past its limit each attempt waits
longer. A browser logs in once with the token and gets an HttpOnly,
SameSite=Strict cookie holding a random session id (Secure when the page was
served over HTTPS); the session lives in `admin_sessions` and logging out
deletes it. Every form a session posts carries a CSRF token derived from its
id; the login form carries one tied to a short-lived pre-login cookie
(double submit), so another site can neither post a login nor act for a
logged-in operator. Comparisons are constant-time.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import unquote

from functions.members.identifiers import InvalidIdentifier, normalize_did
from functions.web import http_api
from runtime.auth_throttle import address_key
from runtime.context import LambdaContext

COOKIE = "atmos_admin"
SESSION_SECONDS = 12 * 3600
LOGIN_COOKIE = "atmos_login"
LOGIN_FORM_SECONDS = 3600


@dataclass(frozen=True)
class Admin:
    via: str  # "bearer" | "session"
    csrf: str = ""  # the token a session's forms must carry; empty for bearer callers
    did: str = ""  # the member the route's {did} names, normalised

    @property
    def actor(self) -> str:
        return f"admin:{self.via}"


def _secret(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT value FROM relay_secrets WHERE name = 'admin-session'").fetchone()
    return bytes.fromhex(row["value"])


def _sign(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def _session_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _flags(secure: bool) -> str:
    return "; Secure" if secure else ""


def token_matches(candidate: str, admin_token: str) -> bool:
    return bool(admin_token) and hmac.compare_digest((candidate or "").strip().encode(), admin_token.encode())


def admin_token_ok(context: LambdaContext, client: str, candidate: str) -> bool:
    """Check a presented admin token the way SMTP AUTH checks a key: a throttled address waits first.

    The wait comes before the check, so guessing in parallel gains nothing;
    it is cut short only to answer within the function's timeout.
    """
    throttle = context.auth_throttle()
    key = address_key(client)
    attempt = throttle.begin(key)
    if attempt.refused:
        context.logger.warning("admin.auth_throttled", client=client, delay=round(attempt.wait, 3), refused=True)
        return False
    if attempt.wait:
        context.logger.warning("admin.auth_throttled", client=client, delay=round(attempt.wait, 3))
        time.sleep(min(attempt.wait, max(0.0, context.get_remaining_time_in_millis() / 1000 - 1)))
    if token_matches(candidate, context.settings.adminToken):
        throttle.succeeded(attempt, reset=key)
        return True
    failures = throttle.failed(attempt)
    context.logger.warning("admin.auth", result="failed", client=client, failures=failures)
    return False


def open_session(tx: sqlite3.Connection, now: float, client: str) -> str:
    """A new random session id (the cookie's value); expired sessions are forgotten on the way."""
    token = secrets.token_urlsafe(32)
    tx.execute("DELETE FROM admin_sessions WHERE expires_at <= ?", (now,))
    tx.execute("INSERT INTO admin_sessions (id, client, created_at, expires_at) VALUES (?, ?, ?, ?)",
               (_session_key(token), client, now, now + SESSION_SECONDS))
    return token


def close_session(tx: sqlite3.Connection, token: str) -> bool:
    return tx.execute("DELETE FROM admin_sessions WHERE id = ?", (_session_key(token),)).rowcount > 0


def session_cookie(token: str, secure: bool) -> str:
    return (f"{COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"
            f"{_flags(secure)}")


def clear_session_cookie() -> str:
    return f"{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"


def session_token(event: dict, conn: sqlite3.Connection, now: float | None = None) -> str | None:
    """The request's session id if it names a live session, else None."""
    token = http_api.cookies(event).get(COOKIE, "")
    if not token:
        return None
    now = time.time() if now is None else now
    row = conn.execute("SELECT 1 FROM admin_sessions WHERE id = ? AND expires_at > ?",
                       (_session_key(token), now)).fetchone()
    return token if row else None


def csrf_token(conn: sqlite3.Connection, token: str) -> str:
    return _sign(_secret(conn), f"csrf:{token}")


def csrf_ok(conn: sqlite3.Connection, token: str, submitted: str) -> bool:
    return bool(submitted) and hmac.compare_digest(submitted, csrf_token(conn, token))


def new_login_form(conn: sqlite3.Connection, secure: bool) -> tuple[str, str]:
    """(pre-login cookie, the login form's CSRF token): a random nonce, and its HMAC."""
    nonce = secrets.token_hex(16)
    cookie = (f"{LOGIN_COOKIE}={nonce}; Path=/admin/login; HttpOnly; SameSite=Strict;"
              f" Max-Age={LOGIN_FORM_SECONDS}{_flags(secure)}")
    return cookie, _sign(_secret(conn), f"login:{nonce}")


def login_csrf_ok(event: dict, conn: sqlite3.Connection, submitted: str) -> bool:
    nonce = http_api.cookies(event).get(LOGIN_COOKIE, "")
    return bool(nonce and submitted) and hmac.compare_digest(submitted, _sign(_secret(conn), f"login:{nonce}"))


def clear_login_cookie() -> str:
    return f"{LOGIN_COOKIE}=; Path=/admin/login; HttpOnly; SameSite=Strict; Max-Age=0"


def denied(event: dict, had_credentials: bool) -> dict:
    """401 without credentials, 403 with wrong ones; a browser without any is sent to the login page."""
    if not had_credentials and not http_api.wants_json(event) and http_api.method(event) == "GET":
        return http_api.redirect("/admin/login")
    status = 403 if had_credentials else 401
    response = http_api.error(event, status, "Forbidden: bad admin token" if had_credentials
                              else "Unauthorized: send Authorization: Bearer <adminToken>")
    if status == 401:
        response["headers"]["WWW-Authenticate"] = 'Bearer realm="atmos-relay admin"'
    return response


def _refuse(response: dict) -> dict:
    return {"isAuthorized": False, "response": response}


def _caller(event: dict, context: LambdaContext, conn: sqlite3.Connection) -> Admin | dict:
    """The admin behind the request, or the refusal. A wrong bearer token never falls back to a cookie."""
    bearer = http_api.bearer_token(event)
    if bearer is not None:
        if not admin_token_ok(context, http_api.source_ip(event), bearer):
            return denied(event, had_credentials=True)
        return Admin("bearer")
    token = session_token(event, conn)
    if token is None:
        return denied(event, had_credentials=False)
    admin = Admin("session", csrf=csrf_token(conn, token))
    if http_api.method(event) not in http_api.SAFE_METHODS:
        submitted = http_api.form(event).get("csrf", "")
        if not (submitted and hmac.compare_digest(submitted, admin.csrf)):
            return http_api.error(event, 403, "missing or stale CSRF token")
    return admin


def authorize(event: dict, context: LambdaContext) -> dict:
    """The gateway's verdict on one admin request: who (bearer or session), CSRF on writes, the {did}.

    Returns `{"isAuthorized": True, "context": ...}` or `{"isAuthorized":
    False, "response": ...}` with the refusal the route would have sent.
    """
    caller = _caller(event, context, context.store.connection())
    if isinstance(caller, dict):
        return _refuse(caller)
    raw_did = http_api.path_param(event, "did")
    did = ""
    if raw_did:
        try:
            did = normalize_did(unquote(raw_did))
        except InvalidIdentifier as exc:
            return _refuse(http_api.error(event, 400, exc.message))
    return {"isAuthorized": True, "context": {"via": caller.via, "csrf": caller.csrf, "did": did}}


def admin_of(event: dict) -> Admin:
    """The admin the gateway's authorizer let through; never a default."""
    verdict = http_api.authorizer_verdict(event)
    if verdict.get("via") not in ("bearer", "session"):
        raise http_api.AuthorizerMissing("admin route reached without admin-authorizer's verdict")
    return Admin(verdict["via"], verdict.get("csrf", ""), verdict.get("did", ""))
