"""`pool-blocks`: the providers refusing the pool's mail, for the operator (runbook: "Mail is not being delivered").

`GET /admin/pool` (behind the admin authorizer) is a page for a browser
and JSON for `Accept: application/json`; `{"list": {}}` is what
`atmos-relay pool blocks` sends. Read-only: deliveries and DSNs record and
clear the blocks (functions/inbound/bounces/pool_blocks.py).
"""
from __future__ import annotations

from functions.inbound.bounces import pool_blocks
from functions.web import admin_auth, http_api, pages
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    blocks = pool_blocks.current(context.store.connection())
    if isinstance(event.get("list"), dict):
        return {"blocks": blocks, "count": len(blocks)}
    admin = admin_auth.admin_of(event)
    if http_api.wants_json(event):
        return http_api.json_response(200, {"blocks": blocks, "count": len(blocks)})
    return pages.page(200, "pool.html", blocks=blocks, csrf=admin.csrf)
