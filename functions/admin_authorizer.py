"""`admin-authorizer`: the gate serverless.yml puts in front of every admin route (`authorizer:`).

The gateway calls it with the request before the route's function runs;
the rules (token or session, throttled wrong tokens, CSRF on writes, the
{did} in the path) are in `functions/web/admin_auth.py`.
"""
from __future__ import annotations

from functions.web import admin_auth
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    return admin_auth.authorize(event, context)
