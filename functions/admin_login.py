"""`admin-login`: the dashboard's door. The admin token buys an HttpOnly session cookie.

A wrong token counts against the client's address in the same store as
a wrong bearer token or SMTP AUTH key, so the login form is no faster an
oracle for guessing than the API. A login posted as a form needs the login
form's CSRF token and logging out needs the session's, so another site can
neither log an operator in nor out; a JSON login (which a browser will not
send cross-site without CORS) needs only the token. Logging out deletes the
session, so a copied cookie dies with it.
"""
from __future__ import annotations

import time

from functions.web import admin_auth, http_api, pages
from runtime.context import LambdaContext


def _login_page(event: dict, conn, status: int, error: str) -> dict:
    cookie, csrf = admin_auth.new_login_form(conn, http_api.served_over_https(event))
    return pages.page(status, "login.html", cookies=[cookie], error=error, csrf=csrf)


def _logout(event: dict, context: LambdaContext) -> dict:
    conn = context.store.connection()
    token = admin_auth.session_token(event, conn)
    if token is not None:
        if not admin_auth.csrf_ok(conn, token, http_api.form(event).get("csrf", "")):
            return http_api.error(event, 403, "missing or stale CSRF token")
        with context.store.transaction() as tx:
            admin_auth.close_session(tx, token)
        context.logger.info("admin.logout", client=http_api.source_ip(event))
    return http_api.redirect("/admin/login", cookies=[admin_auth.clear_session_cookie()])


def handler(event: dict, context: LambdaContext) -> dict:
    if (event.get("rawPath") or "").rstrip("/").endswith("/logout"):
        return _logout(event, context)
    conn = context.store.connection()
    if http_api.method(event) != "POST":
        return _login_page(event, conn, 200, "")
    form = http_api.form(event)
    client = http_api.source_ip(event)
    as_json = http_api.header(event, "content-type").startswith("application/json")
    if not as_json and not admin_auth.login_csrf_ok(event, conn, form.get("csrf", "")):
        context.logger.warning("admin.login", result="csrf", client=client)
        if http_api.wants_json(event):
            return http_api.json_response(403, {"error": "missing or stale CSRF token", "status": 403})
        return _login_page(event, conn, 403, "The login form expired; please enter the token again.")
    if not admin_auth.admin_token_ok(context, client, form.get("token", "")):
        context.logger.warning("admin.login", result="failed", client=client)
        if http_api.wants_json(event):
            return http_api.json_response(403, {"error": "wrong admin token", "status": 403})
        return _login_page(event, conn, 403, "That is not the admin token.")
    with context.store.transaction() as tx:
        token = admin_auth.open_session(tx, time.time(), client)
    context.logger.info("admin.login", result="ok", client=client)
    cookie = admin_auth.session_cookie(token, http_api.served_over_https(event))
    return http_api.redirect("/admin/members", cookies=[cookie, admin_auth.clear_login_cookie()])
