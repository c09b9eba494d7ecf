"""`member-authorizer`: the gate serverless.yml puts in front of every member route (`authorizer:`).

The member's own SMTP credentials as HTTP Basic, throttled like SMTP AUTH,
and CSRF on the page's forms; the rules are in `functions/web/member_auth.py`.
"""
from __future__ import annotations

from functions.web import member_auth
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    return member_auth.authorize(event, context)
