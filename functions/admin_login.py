"""`admin-login`: the dashboard's door. The admin token buys an HttpOnly session cookie.

A wrong token costs the client a pause, so the login form is no faster
an oracle for guessing than the bearer API. Logging out needs the
session's CSRF token, so another site cannot log an operator out.
"""
from __future__ import annotations

import time

from functions import admin_auth, http_api, web_pages
from runtime.context import LambdaContext

FAILED_LOGIN_PAUSE = 1.0


def _secure(event: dict) -> bool:
    return http_api.header(event, "x-forwarded-proto").lower() == "https"


def handler(event: dict, context: LambdaContext) -> dict:
    path = (event.get("rawPath") or "").rstrip("/")
    conn = context.store.connection()
    if path.endswith("/logout"):
        admin = admin_auth.authenticate(event, conn, context.settings.adminToken)
        if admin is not None and not admin_auth.csrf_ok(conn, admin, http_api.form(event).get("csrf", "")):
            return http_api.error(event, 403, "missing or stale CSRF token")
        return http_api.redirect("/admin/login", cookies=[admin_auth.clear_session_cookie()])
    if http_api.method(event) != "POST":
        return web_pages.page(200, "login.html", error="")
    token = http_api.form(event).get("token", "")
    client = http_api.source_ip(event)
    if not admin_auth.token_matches(token, context.settings.adminToken):
        context.logger.warning("admin.login", result="failed", client=client)
        time.sleep(min(FAILED_LOGIN_PAUSE, max(0.0, context.get_remaining_time_in_millis() / 1000 - 1)))
        if http_api.wants_json(event):
            return http_api.json_response(403, {"error": "wrong admin token", "status": 403})
        return web_pages.page(403, "login.html", error="That is not the admin token.")
    context.logger.info("admin.login", result="ok", client=client)
    cookie = admin_auth.new_session_cookie(conn, time.time(), _secure(event))
    return http_api.redirect("/admin/members", cookies=[cookie])
