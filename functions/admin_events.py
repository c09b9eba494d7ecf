"""`admin-events`: relay_events newest first, filtered by member and action, paged by id.

What the rules decided and why (verdicts, label mutations, the raw
execution result), so "what suspended this member?" needs no sqlite shell.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from functions.web import admin_auth, http_api, pages
from runtime.context import LambdaContext

DEFAULT_LIMIT, MAX_LIMIT = 100, 500


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def handler(event: dict, context: LambdaContext) -> dict:
    admin = admin_auth.admin_of(event)
    conn = context.store.connection()
    did, action = http_api.query(event, "did").strip(), http_api.query(event, "action").strip()
    try:
        limit = http_api.page_limit(event, DEFAULT_LIMIT, MAX_LIMIT)
        before = int(http_api.query(event, "before") or 0)
    except ValueError:
        return http_api.error(event, 400, "limit and before must be integers")
    rows = conn.execute(
        "SELECT * FROM relay_events WHERE (? = '' OR sender_did = ?) AND (? = '' OR action_name = ?)"
        " AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
        (did, did, action, action, before, before, limit)).fetchall()
    wants_json = http_api.wants_json(event)
    listed = [{"id": r["id"], "actionId": str(r["action_id"]), "senderDid": r["sender_did"],
               "actionName": r["action_name"], "verdicts": _decoded(r["verdicts"]),
               "labelMutations": _decoded(r["label_mutations"]), "createdAt": r["created_at"],
               "receivedAt": r["received_at"], **({"raw": _decoded(r["raw"])} if wants_json else {})}
              for r in rows]
    next_before = listed[-1]["id"] if len(listed) == limit else 0
    if wants_json:
        return http_api.json_response(200, {"events": listed, "count": len(listed), "nextBefore": next_before or None})
    actions = [r["action_name"] for r in conn.execute("SELECT DISTINCT action_name FROM relay_events ORDER BY 1")]
    next_query = urlencode({k: v for k, v in (("did", did), ("action", action), ("before", next_before)) if v})
    return pages.page(200, "events.html", events=listed, did=did, action=action, actions=actions,
                          next_before=next_before, next_query=next_query, csrf=admin.csrf)
