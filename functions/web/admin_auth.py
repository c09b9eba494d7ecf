"""Who may use the admin API and pages: the bearer of `adminToken`, or a browser session it opened.

Scripts send `Authorization: Bearer <adminToken>` (the runbook's curl
lines). A browser logs in once with the token and gets an HttpOnly,
SameSite=Strict cookie holding an expiry and an HMAC; every form it posts
carries a CSRF token derived from that cookie. The login form itself carries
one tied to a short-lived pre-login cookie (double submit), so another site
cannot post a login. Comparisons are constant-time.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass

from functions.web import http_api

COOKIE = "atmos_admin"
SESSION_SECONDS = 12 * 3600
LOGIN_COOKIE = "atmos_login"
LOGIN_FORM_SECONDS = 3600


@dataclass(frozen=True)
class Admin:
    via: str  # "bearer" | "session"
    session: str = ""


def _secret(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT value FROM relay_secrets WHERE name = 'admin-session'").fetchone()
    return bytes.fromhex(row["value"])


def _sign(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def bearer_matches(event: dict, admin_token: str) -> bool | None:
    """True/False when a bearer token was sent, None when there was none."""
    auth = http_api.header(event, "authorization")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return bool(admin_token) and hmac.compare_digest(token.strip().encode(), admin_token.encode())


def token_matches(candidate: str, admin_token: str) -> bool:
    return bool(admin_token) and hmac.compare_digest((candidate or "").strip().encode(), admin_token.encode())


def new_session_cookie(conn: sqlite3.Connection, now: float, secure: bool) -> str:
    expires = int(now + SESSION_SECONDS)
    value = f"{expires}.{_sign(_secret(conn), f'session:{expires}')}"
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{flags}"


def new_login_form(conn: sqlite3.Connection, secure: bool) -> tuple[str, str]:
    """(pre-login cookie, the login form's CSRF token): a random nonce, and its HMAC."""
    nonce = secrets.token_hex(16)
    flags = "; Secure" if secure else ""
    cookie = (f"{LOGIN_COOKIE}={nonce}; Path=/admin/login; HttpOnly; SameSite=Strict;"
              f" Max-Age={LOGIN_FORM_SECONDS}{flags}")
    return cookie, _sign(_secret(conn), f"login:{nonce}")


def login_csrf_ok(event: dict, conn: sqlite3.Connection, submitted: str) -> bool:
    nonce = http_api.cookies(event).get(LOGIN_COOKIE, "")
    return bool(nonce and submitted) and hmac.compare_digest(submitted, _sign(_secret(conn), f"login:{nonce}"))


def clear_login_cookie() -> str:
    return f"{LOGIN_COOKIE}=; Path=/admin/login; HttpOnly; SameSite=Strict; Max-Age=0"


def clear_session_cookie() -> str:
    return f"{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"


def _session(event: dict, conn: sqlite3.Connection, now: float) -> str | None:
    value = http_api.cookies(event).get(COOKIE, "")
    expires, _, mac = value.partition(".")
    if not expires.isdigit() or int(expires) < now:
        return None
    if not hmac.compare_digest(mac, _sign(_secret(conn), f"session:{expires}")):
        return None
    return value


def authenticate(event: dict, conn: sqlite3.Connection, admin_token: str, now: float | None = None) -> Admin | None:
    """The admin behind this request, or None. A wrong bearer token never falls back to a cookie."""
    now = time.time() if now is None else now
    bearer = bearer_matches(event, admin_token)
    if bearer is not None:
        return Admin("bearer") if bearer else None
    session = _session(event, conn, now)
    return Admin("session", session) if session else None


def admit(event: dict, conn: sqlite3.Connection, admin_token: str) -> tuple[Admin | None, dict | None]:
    """(the admin, None), or (None, the refusal to send back) for every admin route alike."""
    admin = authenticate(event, conn, admin_token)
    if admin is None:
        return None, denied(event, had_credentials=bool(http_api.header(event, "authorization")))
    return admin, None


def csrf_token(conn: sqlite3.Connection, admin: Admin) -> str:
    return _sign(_secret(conn), f"csrf:{admin.session}") if admin.via == "session" else ""


def csrf_ok(conn: sqlite3.Connection, admin: Admin, submitted: str) -> bool:
    """Bearer callers are not browsers and need none; a session must echo its token."""
    if admin.via == "bearer":
        return True
    return bool(submitted) and hmac.compare_digest(submitted, csrf_token(conn, admin))


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
