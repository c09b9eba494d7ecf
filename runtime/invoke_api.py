"""AWS Lambda's Invoke, ListFunctions and GetFunction APIs, so boto3's lambda client drives our functions.

`boto3.client("lambda", endpoint_url="http://relay:8080")` lists functions
and invokes them (RequestResponse, Event, DryRun); requests must carry a
SigV4 signature made with a configured key (`invoke.accessKeyId` /
`invoke.secretAccessKey` or one of `invoke.keys`); serverless.yml's
`invoke: {api: true, accessKeys: [...]}` narrows a function to some keys.
Each invocation is logged (`invoke_api.invoke`), each refusal too
(`invoke_api.denied`). Only `$LATEST` exists: no versions or aliases.
"""
from __future__ import annotations

import base64
import json
import time
import traceback
import uuid
from typing import Any

from flask import Flask, Response, g, request

from runtime.errors import FunctionTimeout, RelayError
from runtime.invoker import Deployment, FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import FunctionSpec
from runtime.payload import json_depth, to_json
from runtime.replay_guard import GuardFull, SeenSignatures
from runtime.settings import Settings
from runtime.sigv4 import SignatureError, SignedRequest, raw_path_of, verify
from runtime.trusted_proxies import client_address

API = "/2015-03-31/functions"
ACCOUNT = "000000000000"
# Events of our functions nest a handful of levels (a Kafka batch: records, topic, list, record, value).
MAX_PAYLOAD_DEPTH = 64


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


class InvokeApi:
    """The three Lambda APIs over the functions serverless.yml exposes (`invoke: {api: true}`).

    Every other function (sign, auth, the SMTP hooks, the admin pages) is
    internal: not listed, not described, not invocable, exactly as if it
    did not exist. A signature is accepted once (`SeenSignatures`).
    """

    def __init__(self, settings: Settings, runtime: FunctionRuntime, log: JsonLog) -> None:
        self.settings, self.runtime, self.log = settings, runtime, log
        self.region = settings.invoke.region
        self.seen = SeenSignatures()

    def register(self, app: Flask) -> None:
        app.add_url_rule(f"{API}/", "lambda_list", self.list_functions, methods=["GET"])
        app.add_url_rule(API, "lambda_list_bare", self.list_functions, methods=["GET"])
        app.add_url_rule(f"{API}/<path:raw_name>", "lambda_get", self.get_function, methods=["GET"])
        app.add_url_rule(f"{API}/<path:raw_name>/invocations", "lambda_invoke", self.invoke, methods=["POST"])

    def _denied(self, code: str, reason: str, status: int = 403) -> Response:
        self.log.warning("invoke_api.denied", code=code, reason=reason, peer=client_address(request))
        return _error(status, code, reason)

    def authenticate(self) -> Response | None:
        """None when the request is signed with a configured invoke key and its signature is new.

        The signing key id is kept on flask.g for the per-function gate (`invoke.accessKeys`).
        """
        credentials = self.settings.invoke.credentials()
        if not credentials:
            return _error(403, "AccessDeniedException", "The invoke API is disabled: set invoke.accessKeyId "
                                                         "and invoke.secretAccessKey (or invoke.keys) in config.json")
        signed = SignedRequest(method=request.method, raw_path=raw_path_of(request.environ),
                               query_string=request.query_string.decode("latin-1"),
                               headers=dict(request.headers.items()), body=request.get_data(cache=True))
        try:
            verified = verify(signed, credentials)
            fresh = self.seen.first_use(verified.signature, verified.signed_at.timestamp(), time.time())
        except SignatureError as exc:
            return self._denied(exc.code, str(exc))
        except GuardFull as exc:
            return self._denied("TooManyRequestsException", f"Rate exceeded: {exc}", status=429)
        if not fresh:
            return self._denied("InvalidSignatureException", "Signature already used: a signed request is "
                                                             "accepted once; sign each request anew")
        g.invoke_caller = verified.access_key_id
        return None

    def _caller_may_not(self, spec: FunctionSpec) -> Response | None:
        """403 when serverless.yml's `invoke.accessKeys` for this function leaves out the signing key."""
        caller = g.invoke_caller
        if spec.invocable_by(caller):
            return None
        self.log.warning("invoke_api.denied", code="AccessDeniedException", function=spec.name, accessKeyId=caller,
                         reason="access key not in the function's invoke.accessKeys", peer=client_address(request))
        return _error(403, "AccessDeniedException", f"Access key {caller} may not call function {spec.name}")

    def _exposed(self, deployment: Deployment) -> list[str]:
        return sorted(n for n, spec in deployment.manifest.functions.items() if spec.invocable_by(g.invoke_caller))

    def list_functions(self) -> Response:
        denied = self.authenticate()
        if denied:
            return denied
        deployment = self.runtime.require()
        names = self._exposed(deployment)
        marker = request.args.get("Marker") or "0"
        max_items = request.args.get("MaxItems") or "50"
        if not max_items.isdigit() or not 1 <= int(max_items) <= 10000:
            return _error(400, "InvalidParameterValueException", f"MaxItems must be 1-10000, not {max_items!r}")
        if not marker.isdigit() or int(marker) > len(names):
            return _error(400, "InvalidParameterValueException", f"Invalid Marker {marker!r}")
        # Lambda returns at most 50 a page whatever MaxItems asks; NextMarker is the next offset.
        limit = min(int(max_items), 50)
        start = int(marker)
        body: dict[str, Any] = {"Functions": [_configuration(deployment, n, self.region)
                                              for n in names[start:start + limit]]}
        if start + limit < len(names):
            body["NextMarker"] = str(start + limit)
        return Response(json.dumps(body), mimetype="application/json")

    def _lookup(self, deployment: Deployment, raw_name: str) -> tuple[str, Response | None]:
        """The function's name, or Lambda's ResourceNotFoundException for an unknown or internal one.

        Only `$LATEST` exists here (no published versions or aliases), so any other
        qualifier is unknown rather than silently running the latest code.
        """
        name, qualifier = _function_name(raw_name.rstrip("/"))
        qualifier = request.args.get("Qualifier") or qualifier
        spec = deployment.manifest.functions.get(name)
        if spec is None or not spec.invokeApi or qualifier not in (None, "$LATEST"):
            if spec is not None and not spec.invokeApi:
                self.log.warning("invoke_api.denied", code="ResourceNotFoundException", function=name,
                                 reason="internal function (serverless.yml: no invoke: {api: true})",
                                 peer=client_address(request))
            arn = _arn(self.region, name, qualifier)
            return name, _error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        return name, self._caller_may_not(spec)

    def get_function(self, raw_name: str) -> Response:
        denied = self.authenticate()
        if denied:
            return denied
        deployment = self.runtime.require()
        name, missing = self._lookup(deployment, raw_name)
        if missing:
            return missing
        config = _configuration(deployment, name, self.region)
        return Response(json.dumps({"Configuration": config, "Code": {"RepositoryType": "Local"}}),
                        mimetype="application/json")

    def invoke(self, raw_name: str) -> Response:
        denied = self.authenticate()
        if denied:
            return denied
        deployment = self.runtime.require()
        name, missing = self._lookup(deployment, raw_name)
        if missing:
            return missing
        event, unreadable = _payload(request.get_data(cache=True))
        if unreadable:
            self.log.warning("invoke_api.bad_payload", function=name, reason=unreadable, peer=client_address(request))
            return _error(400, "InvalidRequestContentException", f"Could not parse request body into json: {unreadable}")
        kind = request.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return _error(400, "InvalidParameterValueException", f"Unsupported X-Amz-Invocation-Type {kind}")
        # Lambda's own id for this invocation (the SDK's amz-sdk-invocation-id is per attempt, not ours).
        request_id = str(uuid.uuid4())
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
        self.log.info("invoke_api.invoke", function=name, invocation=kind, requestId=request_id,
                      peer=client_address(request))
        if kind == "DryRun":
            return Response(b"", status=204, headers=headers)
        if kind == "Event":
            self.runtime.submit(name, event, deployment=deployment)
            return Response(b"", status=202, headers=headers)
        return self._request_response(name, event, deployment, headers)

    def _request_response(self, name: str, event: Any, deployment: Deployment, headers: dict) -> Response:
        try:
            result = self.runtime.invoke(name, event, deployment=deployment)
        except FunctionTimeout as exc:
            payload = {"errorMessage": f"Task timed out: {exc.detail}", "errorType": "Sandbox.Timedout"}
            return _function_error(payload, headers)
        except RelayError as exc:
            # A deliberate refusal (bad member action, AUTH rejected): its reply is the message.
            payload = {"errorMessage": str(exc.reply), "errorType": type(exc).__name__,
                       "reply": exc.reply.as_dict(), "stackTrace": []}
            self.log.warning("function.error", function=name, error=repr(exc), invocation="RequestResponse")
            return _function_error(payload, headers)
        except Exception as exc:
            payload = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                       "stackTrace": traceback.format_exception(exc)[-5:]}
            self.log.error("function.error", function=name, error=repr(exc), invocation="RequestResponse")
            return _function_error(payload, headers)
        if request.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(b"").decode()
        # Bytes in a result (a signed message) go out as base64, as `atmos-relay invoke` prints them.
        return Response(to_json(result), status=200, mimetype="application/json", headers=headers)


def _payload(raw: bytes) -> tuple[Any, str]:
    """The invocation's event, or why it cannot be read. Its size the HTTP guard bounded (413 before reading)."""
    if not raw.strip():
        return {}, ""
    if json_depth(raw) > MAX_PAYLOAD_DEPTH:
        return None, f"the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
    try:
        return json.loads(raw), ""
    except (ValueError, RecursionError):
        return None, "the payload is not valid JSON"


def _function_error(payload: dict, headers: dict) -> Response:
    return Response(json.dumps(payload), status=200, mimetype="application/json",
                    headers={**headers, "X-Amz-Function-Error": "Unhandled"})
