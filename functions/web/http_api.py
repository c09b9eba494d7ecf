"""What every HTTP handler needs: read an API Gateway v2 event, answer JSON or HTML.

Pages answer HTML to a browser and JSON to `Accept: application/json`, so
the runbook's curl lines and the dashboard share one handler.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Any
from urllib.parse import parse_qs

from runtime.errors import BadRequest
from runtime.payload import json_depth

MAX_JSON_DEPTH = 32
MAX_FORM_FIELDS = 256
SAFE_METHODS = ("GET", "HEAD")


class AuthorizerMissing(RuntimeError):
    """A route ran without its gateway authorizer's verdict: its serverless.yml entry lost `authorizer:`."""


def authorizer_verdict(event: dict) -> dict:
    """What the route's authorizer (serverless.yml `authorizer:`) returned as context; {} when none ran."""
    verdict = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda")
    return verdict if isinstance(verdict, dict) else {}


def header(event: dict, name: str, default: str = "") -> str:
    return (event.get("headers") or {}).get(name.lower(), default)


def wants_json(event: dict) -> bool:
    """JSON unless the client asked for HTML first (a browser); curl's */* gets JSON."""
    accept = header(event, "accept").lower()
    if "application/json" in accept:
        return "text/html" not in accept or accept.index("application/json") < accept.index("text/html")
    return "text/html" not in accept


def method(event: dict) -> str:
    return ((event.get("requestContext") or {}).get("http") or {}).get("method", "GET").upper()


def source_ip(event: dict) -> str:
    return ((event.get("requestContext") or {}).get("http") or {}).get("sourceIp", "")


def served_over_https(event: dict) -> bool:
    """The gateway sets x-forwarded-proto itself (from a trusted proxy's header, else its own scheme)."""
    return header(event, "x-forwarded-proto").lower() == "https"


def bearer_token(event: dict) -> str | None:
    """The token of `Authorization: Bearer <token>`; "" for another scheme, None without the header."""
    auth = header(event, "authorization")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def path_param(event: dict, name: str) -> str:
    return (event.get("pathParameters") or {}).get(name, "")


def query(event: dict, name: str, default: str = "") -> str:
    return (event.get("queryStringParameters") or {}).get(name, default)


def page_limit(event: dict, default: int, maximum: int) -> int:
    """`?limit=` held to 1..maximum; ValueError when it is not an integer (the caller answers 400)."""
    return min(max(int(query(event, "limit") or default), 1), maximum)


def body_bytes(event: dict) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")


def form(event: dict) -> dict[str, str]:
    """A urlencoded form or a JSON object body, as one flat dict of strings.

    The gateway has already bounded the body's size (`http.maxFormSize`);
    nesting and the number of fields are bounded here, before parsing, as
    the parsers' cost grows with them. Raises BadRequest (400) with the reason.
    """
    raw = body_bytes(event)
    if header(event, "content-type").startswith("application/json"):
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise BadRequest(f"JSON body nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}"[:200]) from None
        if not isinstance(data, dict) or len(data) > MAX_FORM_FIELDS:
            raise BadRequest(f"JSON body must be an object of at most {MAX_FORM_FIELDS} fields")
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    try:
        fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise BadRequest(f"form has more than {MAX_FORM_FIELDS} fields") from None
    return {k: v[-1] for k, v in fields.items()}


def cookies(event: dict) -> dict[str, str]:
    out = {}
    for cookie in event.get("cookies") or []:
        name, _, value = cookie.partition("=")
        out[name.strip()] = value.strip()
    return out


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def json_response(status: int, body: Any, headers: dict | None = None, cookies: list[str] | None = None) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **SECURITY_HEADERS,
                                              **(headers or {})},
            "body": json.dumps(body, default=str), "cookies": cookies or []}


def html_response(status: int, page: str, headers: dict | None = None, cookies: list[str] | None = None) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS,
                                              **(headers or {})},
            "body": page, "cookies": cookies or []}


def redirect(location: str, cookies: list[str] | None = None) -> dict:
    return {"statusCode": 303, "headers": {"Location": location, **SECURITY_HEADERS}, "body": "",
            "cookies": cookies or []}


def error(event: dict, status: int, message: str) -> dict:
    if wants_json(event):
        return json_response(status, {"error": message, "status": status})
    return html_response(status, f"<!doctype html><title>{status}</title><h1>{status}</h1>"
                                 f"<p>{html.escape(message)}</p>")
