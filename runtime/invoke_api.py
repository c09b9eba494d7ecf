"""AWS Lambda's Invoke, ListFunctions and GetFunction APIs, so boto3's lambda client drives our functions.

`boto3.client("lambda", endpoint_url="http://relay:8080")` lists functions
and invokes them (RequestResponse, Event, DryRun); requests must carry a
SigV4 signature made with `invoke.accessKeyId` / `invoke.secretAccessKey`.
Each invocation is logged (`invoke_api.invoke`), each refusal too
(`invoke_api.denied`). Only `$LATEST` exists: no versions or aliases.
"""
from __future__ import annotations

import base64
import json
import traceback
import uuid
from typing import Any

from flask import Flask, Response, request

from runtime.errors import FunctionTimeout, RelayError
from runtime.invoker import Deployment, FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.payload import to_json
from runtime.settings import Settings
from runtime.sigv4 import SignatureError, SignedRequest, raw_path_of, verify

API = "/2015-03-31/functions"
ACCOUNT = "000000000000"


def _error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"Type": "User", "message": message, "__type": code})
    return Response(body, status=status, mimetype="application/json", headers={"x-amzn-ErrorType": code})


def _function_name(raw: str) -> tuple[str, str | None]:
    """`name`, `name:qualifier`, a partial ARN (`account:function:name`) or a full ARN, as Lambda accepts."""
    parts = raw.split(":")
    if "function" in parts[:-1] and (raw.startswith("arn:") or len(parts) >= 3):
        at = parts.index("function")
        parts = parts[at + 1:]
    name = parts[0]
    qualifier = parts[1] if len(parts) > 1 and parts[1] else None
    return name, qualifier


def _arn(region: str, name: str, qualifier: str | None = None) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}" + (f":{qualifier}" if qualifier else "")


def _lookup(deployment: Deployment, raw_name: str, region: str) -> tuple[str, Response | None]:
    """The function's name, or Lambda's ResourceNotFoundException for an unknown name or version.

    Only `$LATEST` exists here (no published versions or aliases), so any other
    qualifier is unknown rather than silently running the latest code.
    """
    name, qualifier = _function_name(raw_name.rstrip("/"))
    qualifier = request.args.get("Qualifier") or qualifier
    if name not in deployment.manifest.functions or qualifier not in (None, "$LATEST"):
        return name, _error(404, "ResourceNotFoundException", f"Function not found: {_arn(region, name, qualifier)}")
    return name, None


def _configuration(deployment: Deployment, name: str, region: str) -> dict[str, Any]:
    spec = deployment.spec(name)
    return {
        "FunctionName": spec.name,
        "FunctionArn": _arn(region, spec.name),
        "Runtime": "python3.11",
        "Role": f"arn:aws:iam::{ACCOUNT}:role/atmos-relay",
        "Handler": spec.handler,
        "CodeSize": 0,
        "Description": spec.description,
        "Timeout": int(spec.timeout) if spec.timeout >= 1 else 1,
        "MemorySize": spec.memorySize,
        "LastModified": _iso(deployment.loaded_at),
        "Version": "$LATEST",
        "PackageType": "Zip",
        "State": "Active",
        "Architectures": ["x86_64"],
    }


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def register_invoke_api(app: Flask, settings: Settings, runtime: FunctionRuntime, log: JsonLog) -> None:
    region = settings.invoke.region

    def authenticate() -> Response | None:
        if not settings.invoke.accessKeyId or not settings.invoke.secretAccessKey:
            return _error(403, "AccessDeniedException", "The invoke API is disabled: set invoke.accessKeyId "
                                                         "and invoke.secretAccessKey in config.json")
        signed = SignedRequest(
            method=request.method,
            raw_path=raw_path_of(request.environ),
            query_string=request.query_string.decode("latin-1"),
            headers=dict(request.headers.items()),
            body=request.get_data(cache=True),
        )
        try:
            verify(signed, settings.invoke.accessKeyId, settings.invoke.secretAccessKey)
        except SignatureError as exc:
            log.warning("invoke_api.denied", code=exc.code, reason=str(exc), peer=request.remote_addr)
            return _error(403, exc.code, str(exc))
        return None

    @app.get(f"{API}/")
    @app.get(API)
    def list_functions() -> Response:
        denied = authenticate()
        if denied:
            return denied
        deployment = runtime.require()
        names = sorted(deployment.manifest.functions)
        marker = request.args.get("Marker") or "0"
        max_items = request.args.get("MaxItems") or "50"
        if not max_items.isdigit() or not 1 <= int(max_items) <= 10000:
            return _error(400, "InvalidParameterValueException", f"MaxItems must be 1-10000, not {max_items!r}")
        if not marker.isdigit() or int(marker) > len(names):
            return _error(400, "InvalidParameterValueException", f"Invalid Marker {marker!r}")
        # Lambda returns at most 50 a page whatever MaxItems asks; NextMarker is the next offset.
        limit = min(int(max_items), 50)
        start = int(marker)
        page = names[start:start + limit]
        body: dict[str, Any] = {"Functions": [_configuration(deployment, n, region) for n in page]}
        if start + limit < len(names):
            body["NextMarker"] = str(start + limit)
        return Response(json.dumps(body), mimetype="application/json")

    @app.get(f"{API}/<path:raw_name>")
    def get_function(raw_name: str) -> Response:
        denied = authenticate()
        if denied:
            return denied
        deployment = runtime.require()
        name, missing = _lookup(deployment, raw_name, region)
        if missing:
            return missing
        config = _configuration(deployment, name, region)
        return Response(json.dumps({"Configuration": config, "Code": {"RepositoryType": "Local"}}),
                        mimetype="application/json")

    @app.post(f"{API}/<path:raw_name>/invocations")
    def invoke(raw_name: str) -> Response:
        denied = authenticate()
        if denied:
            return denied
        deployment = runtime.require()
        name, missing = _lookup(deployment, raw_name, region)
        if missing:
            return missing
        raw = request.get_data(cache=True)
        try:
            event = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _error(400, "InvalidRequestContentException",
                          "Could not parse request body into json: the payload is not valid JSON")
        kind = request.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return _error(400, "InvalidParameterValueException", f"Unsupported X-Amz-Invocation-Type {kind}")
        # Lambda's own id for this invocation (the SDK's amz-sdk-invocation-id is per attempt, not ours).
        request_id = str(uuid.uuid4())
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
        log.info("invoke_api.invoke", function=name, invocation=kind, requestId=request_id,
                 peer=request.remote_addr)
        if kind == "DryRun":
            return Response(b"", status=204, headers=headers)
        if kind == "Event":
            runtime.submit(name, event, deployment=deployment)
            return Response(b"", status=202, headers=headers)
        try:
            result = runtime.invoke(name, event, deployment=deployment)
        except FunctionTimeout as exc:
            payload = {"errorMessage": f"Task timed out: {exc.detail}", "errorType": "Sandbox.Timedout"}
            return _function_error(payload, headers)
        except RelayError as exc:
            # A deliberate refusal (bad member action, AUTH rejected): its reply is the message.
            payload = {"errorMessage": str(exc.reply), "errorType": type(exc).__name__,
                       "reply": exc.reply.as_dict(), "stackTrace": []}
            log.warning("function.error", function=name, error=repr(exc), invocation="RequestResponse")
            return _function_error(payload, headers)
        except Exception as exc:
            payload = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                       "stackTrace": traceback.format_exception(exc)[-5:]}
            log.error("function.error", function=name, error=repr(exc), invocation="RequestResponse")
            return _function_error(payload, headers)
        if request.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(b"").decode()
        # Bytes in a result (a signed message) go out as base64, as `atmos-relay invoke` prints them.
        return Response(to_json(result), status=200, mimetype="application/json", headers=headers)


def _function_error(payload: dict, headers: dict) -> Response:
    return Response(json.dumps(payload), status=200, mimetype="application/json",
                    headers={**headers, "X-Amz-Function-Error": "Unhandled"})
