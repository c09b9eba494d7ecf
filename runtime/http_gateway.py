"""The HTTP gateway: Flask turns requests into API Gateway v2 events and back.

Routes come from the `httpApi` triggers of the deployment current when the
request arrives, so a deploy adds or changes routes without a restart. The
Lambda-compatible invoke API (`/2015-03-31/functions/...`) lives in
`runtime.invoke_api` and is mounted here.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qsl

from flask import Flask, Response, request
from waitress.adjustments import Adjustments

from runtime.errors import BadRequest, FunctionTimeout
from runtime.http_guard import ConnectionGuard, GuardedServer
from runtime.invoke_api import API as INVOKE_API
from runtime.invoke_api import InvokeApi
from runtime.invoker import Deployment, FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import HttpTrigger
from runtime.settings import Settings
from runtime.trusted_proxies import FORWARDING_HEADERS, ORIGIN_KEY, ClientOrigin, TrustedProxies, client_origin

MAX_HEADER_SECTION = 64 * 1024
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern
    function: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.template}"


def compile_route(method: str, template: str, function: str) -> Route:
    regex, pos = "", 0
    for match in _PARAM.finditer(template):
        regex += re.escape(template[pos:match.start()])
        name, greedy = match.group(1), match.group(2)
        regex += f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)"
        pos = match.end()
    regex += re.escape(template[pos:])
    return Route(method, template, re.compile(f"^{regex}/?$"), function)


_route_cache: dict[int, list[Route]] = {}


def routes_of(deployment: Deployment) -> list[Route]:
    routes = _route_cache.get(deployment.version)
    if routes is None:
        routes = [compile_route(t.method, t.path, spec.name)
                  for spec in deployment.manifest.functions.values()
                  for t in spec.triggers(HttpTrigger)]
        # Literal segments beat parameters: /admin/members beats /admin/{page}.
        routes.sort(key=lambda r: (-len(_PARAM.sub("", r.template)), r.method == "ANY"))
        _route_cache.clear()
        _route_cache[deployment.version] = routes
    return routes


def match_route(deployment: Deployment, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """The route for (method, path), its path parameters, and whether the path exists at all."""
    path_known = False
    for route in routes_of(deployment):
        m = route.pattern.match(path)
        if not m:
            continue
        path_known = True
        if route.method in (method, "ANY") or (method == "HEAD" and route.method == "GET"):
            return route, m.groupdict(), True
    return None, {}, path_known


def _headers(origin: ClientOrigin) -> dict[str, str]:
    """The request's headers, the forwarding ones replaced by what the gateway believes (as API Gateway does)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key in FORWARDING_HEADERS:
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers["x-forwarded-for"], headers["x-forwarded-proto"] = origin.address, origin.scheme
    return headers


def build_event(route: Route, params: dict[str, str], deployment: Deployment) -> dict[str, Any]:
    body = request.get_data(cache=True)
    ctype = (request.content_type or "").lower()
    textual = not body or ctype.startswith(("text/", "application/json", "application/x-www-form-urlencoded"))
    origin = client_origin(request)
    headers = _headers(origin)
    query: dict[str, str] = {}
    for key, value in parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "cookies": [f"{k}={v}" for k, v in request.cookies.items()],
        "headers": headers,
        "queryStringParameters": query or None,
        "pathParameters": params or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "atmos-relay",
            "domainName": request.host,
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": origin.address,
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": datetime.fromtimestamp(now, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
            "deploymentVersion": deployment.version,
        },
        "body": (body.decode("utf-8", "replace") if textual else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": bool(body) and not textual,
    }


def to_response(result: Any) -> Response:
    """Payload format 2.0: a dict with statusCode is a response; anything else is a JSON body."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return Response(json.dumps(result), status=200, mimetype="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    response = Response(data, status=int(result["statusCode"]))
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    if "content-type" not in {k.lower() for k in (result.get("headers") or {})}:
        response.headers["Content-Type"] = "application/json" if body[:1] in ("{", "[") else "text/plain; charset=utf-8"
    return response


FORBIDDEN = {"statusCode": 403, "headers": {"Content-Type": "application/json"}, "body": '{"message":"Forbidden"}'}


def authorize(runtime: FunctionRuntime, deployment: Deployment, authorizer: str, event: dict) -> Response | None:
    """Run the route's authorizer (serverless.yml `authorizer:`); None lets the request through.

    Like an API Gateway REQUEST authorizer with simple responses, it answers
    `{"isAuthorized": bool, "context": {...}}` and the context reaches the
    route's function as `requestContext.authorizer.lambda`. Two differences:
    it sees the body (a CSRF token travels in the form), and a refusal may
    carry the `response` to send (401, a redirect to a login page) instead of
    a bare 403.
    """
    verdict = runtime.invoke(authorizer, {**event, "type": "REQUEST"}, deployment=deployment)
    if not isinstance(verdict, dict) or verdict.get("isAuthorized") is not True:
        refusal = verdict.get("response") if isinstance(verdict, dict) else None
        return to_response(refusal if isinstance(refusal, dict) and "statusCode" in refusal else FORBIDDEN)
    event["requestContext"]["authorizer"] = {"lambda": verdict.get("context") or {}}
    return None


def create_app(settings: Settings, runtime: FunctionRuntime, log: JsonLog) -> Flask:
    app = Flask("atmos-relay")
    app.config["MAX_CONTENT_LENGTH"] = max(settings.smtp.maxMessageSize * 2, 16 * 1024 * 1024)
    proxies = TrustedProxies(settings.http.trustedProxies)

    @app.before_request
    def find_origin() -> None:
        request.environ[ORIGIN_KEY] = proxies.origin(request.remote_addr or "", request.headers, request.scheme)

    InvokeApi(settings, runtime, log).register(app)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    def dispatch(path: str) -> Response:
        deployment = runtime.require()
        route, params, known = match_route(deployment, request.method, request.path)
        if route is None:
            status = 405 if known else 404
            return Response('{"message":"%s"}' % ("Method Not Allowed" if known else "Not Found"),
                            status=status, mimetype="application/json")
        event = build_event(route, params, deployment)
        try:
            authorizer = deployment.spec(route.function).authorizer
            refused = authorize(runtime, deployment, authorizer, event) if authorizer else None
            if refused is not None:
                return refused
            result = runtime.invoke(route.function, event, deployment=deployment)
        except FunctionTimeout:
            return Response('{"message":"Endpoint request timed out"}', status=504, mimetype="application/json")
        except BadRequest as exc:
            return Response(json.dumps({"message": exc.reason}), status=exc.status, mimetype="application/json")
        except Exception as exc:
            log.error("function.error", function=route.function, route=route.route_key, error=repr(exc))
            return Response('{"message":"Internal Server Error"}', status=500, mimetype="application/json")
        return to_response(result)

    return app


def body_limit(settings: Settings, app: Flask) -> Callable[[str], int]:
    """The largest body a path may carry: a page or admin form `http.maxFormSize`, an invocation more."""
    form, invocation = settings.http.maxFormSize, int(app.config["MAX_CONTENT_LENGTH"])

    def limit(path: str) -> int:
        return invocation if path.startswith(f"{INVOKE_API}/") else form
    return limit


class HttpServer:
    """Waitress serving the Flask app from a background thread, each connection held to runtime.http_guard."""

    def __init__(self, app: Flask, host: str, port: int, log: JsonLog, threads: int = 16,
                 settings: Settings | None = None) -> None:
        settings = settings or Settings()
        adjustments = Adjustments(host=host, port=port, threads=threads, ident="atmos-relay",
                                  clear_untrusted_proxy_headers=False,  # runtime.trusted_proxies decides
                                  connection_limit=settings.http.maxConnections,
                                  log_socket_errors=False,  # a reset per hostile client is no news
                                  max_request_header_size=MAX_HEADER_SECTION,
                                  max_request_body_size=int(app.config["MAX_CONTENT_LENGTH"]) + 1)
        guard = ConnectionGuard(settings.http, body_limit(settings, app), log)
        self._server = GuardedServer(app, guard, log, map={}, adj=adjustments)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.log = log
        self.host, self.port = host, port

    def start(self) -> None:
        self._thread.start()
        self.log.info("http.listening", host=self.host, port=self.port)

    def stop(self) -> None:
        self._server.close()
