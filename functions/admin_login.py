"""`admin-login`: the dashboard's door. The admin token buys an HttpOnly session cookie.

A wrong token costs the client a pause, so the login form is no faster
an oracle for guessing than the bearer API. A login posted as a form needs
the login form's CSRF token and logging out needs the session's, so another
site can neither log an operator in nor out; a JSON login (which a browser
will not send cross-site without CORS) needs only the token.
"""
from __future__ import annotations

import time

from functions.web import admin_auth, http_api, pages
from runtime.context import LambdaContext

FAILED_LOGIN_PAUSE = 1.0


def _secure(event: dict) -> bool:
    return http_api.header(event, "x-forwarded-proto").lower() == "https"


def _login_page(event: dict, conn, status: int, error: str) -> dict:
    cookie, csrf = admin_auth.new_login_form(conn, _secure(event))
    return pages.page(status, "login.html", cookies=[cookie], error=error, csrf=csrf)


def handler(event: dict, context: LambdaContext) -> dict:
    path = (event.get("rawPath") or "").rstrip("/")
    conn = context.store.connection()
    if path.endswith("/logout"):
        admin = admin_auth.authenticate(event, conn, context.settings.adminToken)
        if admin is not None and not admin_auth.csrf_ok(conn, admin, http_api.form(event).get("csrf", "")):
            return http_api.error(event, 403, "missing or stale CSRF token")
        return http_api.redirect("/admin/login", cookies=[admin_auth.clear_session_cookie()])
    if http_api.method(event) != "POST":
        return _login_page(event, conn, 200, "")
    form = http_api.form(event)
    token = form.get("token", "")
    client = http_api.source_ip(event)
    as_json = http_api.header(event, "content-type").startswith("application/json")
    if not as_json and not admin_auth.login_csrf_ok(event, conn, form.get("csrf", "")):
        context.logger.warning("admin.login", result="csrf", client=client)
        if http_api.wants_json(event):
            return http_api.json_response(403, {"error": "missing or stale CSRF token", "status": 403})
        return _login_page(event, conn, 403, "The login form expired; please enter the token again.")
    if not admin_auth.token_matches(token, context.settings.adminToken):
        context.logger.warning("admin.login", result="failed", client=client)
        time.sleep(min(FAILED_LOGIN_PAUSE, max(0.0, context.get_remaining_time_in_millis() / 1000 - 1)))
        if http_api.wants_json(event):
            return http_api.json_response(403, {"error": "wrong admin token", "status": 403})
        return _login_page(event, conn, 403, "That is not the admin token.")
    context.logger.info("admin.login", result="ok", client=client)
    cookie = admin_auth.new_session_cookie(conn, time.time(), _secure(event))
    return http_api.redirect("/admin/members", cookies=[cookie, admin_auth.clear_login_cookie()])
