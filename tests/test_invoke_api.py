"""The Lambda-compatible invoke API: an operator drives the relay's functions with boto3.

`boto3.client("lambda", endpoint_url=<relay HTTP>)` with the `invoke.accessKeyId`
/ `invoke.secretAccessKey` of config.json lists, describes and invokes the
functions serverless.yml exposes (`invoke: {api: true}`) exactly as it would on
AWS Lambda; the others (sign, auth, the SMTP hooks) do not exist for it.
Anything not signed with a configured key, signed once and sent again, or signed
by a key serverless.yml does not list for the function (`invoke.accessKeys`), is
refused before a function runs.
"""
from __future__ import annotations

import base64
import datetime
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
import botocore.auth
import botocore.config
import pytest
import yaml
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness.relay import ROOT, Relay
from runtime.errors import ManifestError
from runtime.manifest import load_manifest
from runtime.replay_guard import GuardFull, SeenSignatures

ACCESS_KEY = "AKIDTESTRELAY"
SECRET = "test-secret-key"
PENDING_DID = "did:plc:invokeinvokeinvokeinvoke"
PENDING_DOMAIN = "invoke.example"
EVENT_DID = "did:plc:eventeventeventeventeven"
EVENT_DOMAIN = "event.example"
DRY_DID = "did:plc:drydrydrydrydrydrydrydry"
DRY_DOMAIN = "dry.example"
ACTIVE_DID = "did:plc:activeactiveactiveactive"
ACTIVE_DOMAIN = "active.example"
EXPOSED = {"member", "replay", "housekeeping", "labeler"}
NEVER_EXPOSED = ("sign", "auth", "submit", "inbound-rcpt", "classify-inbound")


@pytest.fixture(scope="module")
def relay(tmp_path_factory) -> Relay:
    """One running relay for the module (config.json carries the invoke credentials)."""
    relay = Relay(tmp_path_factory.mktemp("invoke-api") / "relay").start()
    yield relay
    relay.stop()


def lambda_client(relay: Relay, key: str = ACCESS_KEY, secret: str = SECRET, region: str = "us-east-1"):
    """boto3's lambda client as the README shows it: a signed nonce per call, so identical calls differ."""
    client = boto3.client("lambda", endpoint_url=relay.http_url, region_name=region,
                          aws_access_key_id=key, aws_secret_access_key=secret,
                          config=botocore.config.Config(retries={"max_attempts": 0}))
    client.meta.events.register("before-sign.lambda", add_nonce)
    return client


def add_nonce(request, **kwargs) -> None:
    request.headers["X-Request-Nonce"] = uuid.uuid4().hex


def invoke_json(client, name: str, payload: Any, **kwargs) -> tuple[dict, Any]:
    """Invoke and decode the payload as an operator's script would."""
    response = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **kwargs)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


def member_status(relay: Relay, did: str) -> str:
    return relay.cli_json("member", "show", did)["status"]


def wait_for_status(relay: Relay, did: str, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while member_status(relay, did) != status:
        assert time.monotonic() < deadline, f"{did} never became {status}"
        time.sleep(0.2)


def signed(relay: Relay, method: str, path: str, body: bytes = b"", headers: dict | None = None,
           secret: str = SECRET) -> urllib.request.Request:
    """A request signed by botocore's own SigV4 signer, sent by urllib exactly as written.

    It signs a nonce as lambda_client does, so two requests made in one second differ.
    """
    url = relay.http_url + path
    headers = {"X-Request-Nonce": uuid.uuid4().hex, **(headers or {})}
    aws = AWSRequest(method=method, url=url, data=body, headers=headers)
    botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, secret), "lambda", "us-east-1").add_auth(aws)
    return urllib.request.Request(url, data=body or None, method=method, headers=dict(aws.headers.items()))


def send(request: urllib.request.Request) -> tuple[int, Any, bytes]:
    """(status, headers (case-insensitive), body) whatever the status."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


# --- listing and describing -------------------------------------------------------------------

def test_list_functions_shows_what_serverless_yml_exposes(relay):
    client = lambda_client(relay)
    listed = client.list_functions()["Functions"]
    names = [f["FunctionName"] for f in listed]
    cli = {f["name"] for f in json.loads(relay.cli("functions", "--json").stdout) if f["invokeApi"]}
    declared = {name for name, spec in yaml.safe_load((ROOT / "serverless.yml").read_text())["functions"].items()
                if (spec.get("invoke") or {}).get("api")}
    assert set(names) == cli == declared == EXPOSED and len(names) == len(cli)
    assert names == sorted(names)

    member = next(f for f in listed if f["FunctionName"] == "member")
    assert member["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:member"
    assert member["Handler"] == "functions.member.handler"
    assert member["Timeout"] == 30 and member["Version"] == "$LATEST" and member["State"] == "Active"
    assert "enroll, approve, suspend" in member["Description"]


def test_list_functions_pages_with_marker_as_the_paginator_expects(relay):
    client = lambda_client(relay)
    everything = [f["FunctionName"] for f in client.list_functions()["Functions"]]
    first = client.list_functions(MaxItems=3)
    assert [f["FunctionName"] for f in first["Functions"]] == everything[:3]
    assert first["NextMarker"]
    pages = list(client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3}))
    assert len(pages) == -(-len(everything) // 3) > 1
    assert [f["FunctionName"] for page in pages for f in page["Functions"]] == everything
    assert "NextMarker" not in pages[-1]
    with pytest.raises(ClientError) as bad:
        client.list_functions(Marker="not-a-marker")
    assert bad.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_get_function_describes_one_function_by_name_or_arn(relay):
    client = lambda_client(relay)
    by_name = client.get_function(FunctionName="housekeeping")["Configuration"]
    assert by_name["FunctionName"] == "housekeeping" and by_name["Handler"] == "functions.housekeeping.handler"
    assert by_name["Timeout"] == 120
    by_arn = client.get_function(FunctionName=by_name["FunctionArn"])["Configuration"]
    assert by_arn == by_name
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="no-such-function")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="housekeeping", Qualifier="prod")


# --- invoking ---------------------------------------------------------------------------------

def test_request_response_runs_the_member_function_and_returns_its_result(relay):
    client = lambda_client(relay)
    relay.enroll(PENDING_DID, PENDING_DOMAIN, approve=False)

    response, shown = invoke_json(client, "member", {"action": "show", "did": PENDING_DID})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert shown["did"] == PENDING_DID and shown["status"] == "pending"
    assert [d["domain"] for d in shown["domains"]] == [PENDING_DOMAIN]

    _, listed = invoke_json(client, "member", {"action": "list", "status": "pending"})
    assert PENDING_DID in [m["did"] for m in listed]

    _, approved = invoke_json(client, "member", {"action": "approve", "did": PENDING_DID, "actor": "boto3"})
    assert approved["status"] == "active"
    assert member_status(relay, PENDING_DID) == "active"      # the shell sees what the API did
    relay.wait_for("invoke_api.invoke", function="member", invocation="RequestResponse")


def test_sign_auth_and_the_smtp_hooks_are_neither_listed_nor_invocable(relay):
    client = lambda_client(relay)
    member = relay.enroll(ACTIVE_DID, ACTIVE_DOMAIN, prove=False)  # AUTH only: no mail, so no domain to prove
    listed = {f["FunctionName"] for f in client.list_functions()["Functions"]}
    message = base64.b64encode(f"From: a@{ACTIVE_DOMAIN}\r\n\r\nhi\r\n".encode()).decode()
    payloads = {"sign": {"did": ACTIVE_DID, "domain": ACTIVE_DOMAIN, "message": message},
                "auth": {"username": ACTIVE_DOMAIN, "password": member["apiKey"]}}
    for name in (*NEVER_EXPOSED, "deliver", "admin-members", "admin-authorizer"):
        assert name not in listed
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_function(FunctionName=name)
        with pytest.raises(client.exceptions.ResourceNotFoundException) as refused:
            client.invoke(FunctionName=name, Payload=json.dumps(payloads.get(name, {})).encode())
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        relay.wait_for("invoke_api.denied", function=name, code="ResourceNotFoundException")
    # Each refusal above was answered after its log line; nothing ran.
    assert not [r for r in relay.logs("invoke_api.invoke") if r["function"] in payloads]
    assert not relay.logs("function.error", function="sign") and not relay.logs("function.error", function="auth")


def test_a_failing_handler_is_an_unhandled_function_error(relay):
    client = lambda_client(relay)
    response, error = invoke_json(client, "member", {"action": "promote", "did": ACTIVE_DID})
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "MemberError" and "unknown member action 'promote'" in error["errorMessage"]

    # A genuine crash (the handler expects an object) carries the Python exception and its traceback.
    response, error = invoke_json(client, "member", ["show"])
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "AttributeError" and "'list' object has no attribute 'get'" in error["errorMessage"]
    assert error["stackTrace"] and any("member.py" in line for line in error["stackTrace"])
    relay.wait_for("function.error", function="member", invocation="RequestResponse",
                   predicate=lambda r: "AttributeError" in r.get("error", ""))


def test_a_payload_that_is_not_json_is_refused_before_anything_runs(relay):
    client = lambda_client(relay)
    with pytest.raises(client.exceptions.InvalidRequestContentException) as bad:
        client.invoke(FunctionName="member", Payload=b"{not json")
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_event_invocation_is_accepted_at_once_and_runs_in_the_background(relay):
    client = lambda_client(relay)
    relay.enroll(EVENT_DID, EVENT_DOMAIN, approve=False)
    response = client.invoke(FunctionName="member", InvocationType="Event",
                             Payload=json.dumps({"action": "approve", "did": EVENT_DID}).encode())
    assert response["StatusCode"] == 202 and response["Payload"].read() == b""
    wait_for_status(relay, EVENT_DID, "active")
    relay.wait_for("invoke_api.invoke", function="member", invocation="Event")

    # Nobody waits for an Event's result, so its failure goes to the log.
    failed = client.invoke(FunctionName="member", InvocationType="Event", Payload=b'{"action": "promote"}')
    assert failed["StatusCode"] == 202 and "FunctionError" not in failed
    relay.wait_for("function.error", function="member", invocation="Event",
                   predicate=lambda r: "promote" in r.get("error", ""))


def test_dry_run_checks_access_and_runs_nothing(relay):
    client = lambda_client(relay)
    relay.enroll(DRY_DID, DRY_DOMAIN, approve=False)
    response = client.invoke(FunctionName="member", InvocationType="DryRun",
                             Payload=json.dumps({"action": "approve", "did": DRY_DID}).encode())
    assert response["StatusCode"] == 204 and response["Payload"].read() == b""
    # The API answers a DryRun itself, after logging it; it hands nothing to the function runtime.
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    relay.wait_for("invoke_api.invoke", requestId=request_id, invocation="DryRun")
    assert member_status(relay, DRY_DID) == "pending"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", InvocationType="DryRun")


def test_functions_are_found_by_arn_and_qualifier_like_lambda(relay):
    client = lambda_client(relay)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:member"
    for name, extra in ((arn, {}), (f"{arn}:$LATEST", {}), ("member", {"Qualifier": "$LATEST"}),
                        ("000000000000:function:member", {})):
        response, listed = invoke_json(client, name, {"action": "list"}, **extra)
        assert response["StatusCode"] == 200 and isinstance(listed, list), name


def test_an_unknown_function_is_resource_not_found(relay):
    client = lambda_client(relay)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
    error = missing.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Error"]["Message"] == \
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:no-such-function"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="member", Qualifier="prod", Payload=b'{"action": "list"}')


# --- authentication ---------------------------------------------------------------------------

def test_a_wrong_secret_is_refused_and_nothing_runs(relay):
    did, domain = "did:plc:wrongwrongwrongwrongwron", "wrong.example"
    relay.enroll(did, domain, approve=False)
    client = lambda_client(relay, secret="not-the-secret")
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="member", Payload=json.dumps({"action": "approve", "did": did}).encode())
    error = refused.value.response
    assert error["Error"]["Code"] == "InvalidSignatureException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature we calculated does not match" in error["Error"]["Message"]
    with pytest.raises(ClientError) as listing:
        client.list_functions()
    assert listing.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert member_status(relay, did) == "pending"
    relay.wait_for("invoke_api.denied", code="InvalidSignatureException")


def test_an_unknown_access_key_is_an_unrecognized_client(relay):
    client = lambda_client(relay, key="AKIDSOMEONEELSE")
    with pytest.raises(ClientError) as refused:
        client.list_functions()
    error = refused.value.response
    assert error["Error"]["Code"] == "UnrecognizedClientException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    relay.wait_for("invoke_api.denied", code="UnrecognizedClientException")


def test_an_unsigned_request_is_refused(relay):
    plain = urllib.request.Request(relay.http_url + "/2015-03-31/functions/member/invocations",
                                   data=b'{"action": "list"}', method="POST")
    status, headers, body = send(plain)
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["message"] == "Missing Authentication Token"
    status, _, _ = send(urllib.request.Request(relay.http_url + "/2015-03-31/functions/"))
    assert status == 403


def test_a_clock_more_than_15_minutes_off_is_refused(relay, monkeypatch):
    real = botocore.auth.get_current_datetime
    client = lambda_client(relay)
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda remove_tzinfo=True: real(remove_tzinfo) - datetime.timedelta(minutes=10))
    assert client.list_functions()["Functions"]                  # 10 minutes slow: still fine
    for skew, why in ((-20, "Signature expired"), (20, "Signature not yet current")):
        monkeypatch.setattr(botocore.auth, "get_current_datetime",
                            lambda remove_tzinfo=True, skew=skew: real(remove_tzinfo) + datetime.timedelta(minutes=skew))
        with pytest.raises(ClientError) as refused:
            client.list_functions()
        assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert refused.value.response["Error"]["Message"].startswith(why)


def test_a_body_changed_after_signing_is_refused(relay):
    request = signed(relay, "POST", "/2015-03-31/functions/member/invocations", b'{"action": "list"}')
    status, _, body = send(request)
    assert status == 200 and isinstance(json.loads(body), list)

    tampered = signed(relay, "POST", "/2015-03-31/functions/member/invocations", b'{"action": "list"}')
    tampered.data = b'{"action": "suspend"}'
    status, headers, _ = send(tampered)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")

    unsigned_payload = signed(relay, "POST", "/2015-03-31/functions/member/invocations", b'{"action": "list"}',
                              headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    status, headers, _ = send(unsigned_payload)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")


def test_signatures_cover_the_path_and_query_as_sent(relay):
    # A full ARN travels percent-encoded (%3A) and botocore signs it encoded twice.
    arn_path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Amember/invocations"
    status, _, body = send(signed(relay, "POST", arn_path, b'{"action": "list"}'))
    assert status == 200 and isinstance(json.loads(body), list)
    # Query parameters in any order, encoded or not, as long as the signature covers them.
    status, _, body = send(signed(relay, "GET", "/2015-03-31/functions/?MaxItems=2&Marker=2"))
    assert status == 200 and len(json.loads(body)["Functions"]) == 2
    status, _, _ = send(signed(relay, "GET", "/2015-03-31/functions/member?Qualifier=$LATEST"))
    assert status == 200
    # A query added after signing is not covered.
    request = signed(relay, "GET", "/2015-03-31/functions/?MaxItems=2")
    request.full_url = request.full_url + "&Marker=4"
    status, headers, _ = send(request)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")


def test_the_signature_scope_must_be_lambda_but_any_region_will_do(relay):
    eu = lambda_client(relay, region="eu-west-1")
    assert eu.list_functions()["Functions"]
    request = urllib.request.Request(relay.http_url + "/2015-03-31/functions/")
    aws = AWSRequest(method="GET", url=request.full_url)
    botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1").add_auth(aws)
    status, headers, body = send(urllib.request.Request(request.full_url, headers=dict(aws.headers.items())))
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert "scoped to correct service: 'lambda'" in json.loads(body)["message"]


def test_the_invoke_api_is_off_without_credentials(start_relay):
    relay = start_relay({"invoke": {"accessKeyId": "", "secretAccessKey": ""}}, name="no-invoke")
    with pytest.raises(ClientError) as refused:
        lambda_client(relay).list_functions()
    error = refused.value.response
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert "invoke.accessKeyId" in error["Error"]["Message"]


# --- replay -----------------------------------------------------------------------------------

def test_a_signed_request_is_accepted_once(relay):
    did, domain = "did:plc:replayreplayreplayreplay", "replay.example"
    relay.enroll(did, domain, prove=False)  # suspended and reactivated only: no mail, so no domain to prove
    suspend = json.dumps({"action": "suspend", "did": did, "reason": "replayed"}).encode()
    captured = signed(relay, "POST", "/2015-03-31/functions/member/invocations", suspend)
    status, _, body = send(captured)
    assert status == 200 and json.loads(body)["status"] == "suspended"
    relay.cli_json("member", "reactivate", did)

    again = urllib.request.Request(captured.full_url, data=captured.data, method="POST",
                                   headers=dict(captured.header_items()))
    status, headers, body = send(again)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert "already used" in json.loads(body)["message"]
    relay.wait_for("invoke_api.denied", predicate=lambda r: "already used" in r["reason"])
    assert member_status(relay, did) == "active"

    # boto3 without a nonce signs two identical calls within one second identically: the second is a replay.
    bare = boto3.client("lambda", endpoint_url=relay.http_url, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                        config=botocore.config.Config(retries={"max_attempts": 0}))
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(bare.list_functions(MaxItems=7)["Functions"] and "ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes in (["ok", "InvalidSignatureException"], ["ok", "ok"])  # "ok" twice if a second ticked over


def test_the_replay_guard_forgets_only_expired_signatures_and_refuses_when_full():
    seen = SeenSignatures(capacity=2, window=900)
    assert seen.first_use("a", signed_at=1000, now=1000)
    assert not seen.first_use("a", signed_at=1000, now=1899)
    assert seen.first_use("b", signed_at=1500, now=1899)
    with pytest.raises(GuardFull):
        seen.first_use("c", signed_at=1899, now=1899)
    assert seen.first_use("c", signed_at=1901, now=1901)  # "a" expired at 1900 and made room
    assert not seen.first_use("b", signed_at=1500, now=1901) and len(seen) == 2


# --- what serverless.yml may say ---------------------------------------------------------------

def test_sign_auth_and_the_smtp_hooks_stay_internal_in_serverless_yml():
    manifest = load_manifest(ROOT / "serverless.yml")
    assert {n for n, spec in manifest.functions.items() if spec.invokeApi} == EXPOSED
    assert not any(manifest.functions[name].invokeApi for name in NEVER_EXPOSED)


def test_an_smtp_hook_cannot_be_exposed_to_the_invoke_api(tmp_path):
    path = tmp_path / "serverless.yml"
    path.write_text(yaml.safe_dump({"service": "x", "functions": {"auth": {
        "handler": "functions/auth.handler", "invoke": {"api": True},
        "events": [{"smtp": {"listeners": ["submission"], "hook": "auth"}}]}}}))
    with pytest.raises(ManifestError, match="smtp hook cannot be exposed"):
        load_manifest(path)


# --- several keys, each with its functions -------------------------------------------------------

OPS_KEY, OPS_SECRET = "AKIDREPLAYONLY", "replay-only-secret"


@pytest.fixture
def keyed_relay(start_relay, tmp_path) -> Relay:
    """A relay with a second key (`invoke.keys`) that serverless.yml lists for replay, not for member."""
    manifest = yaml.safe_load((ROOT / "serverless.yml").read_text())
    manifest["functions"]["member"]["invoke"] = {"api": True, "accessKeys": [ACCESS_KEY]}
    manifest["functions"]["replay"]["invoke"] = {"api": True, "accessKeys": [ACCESS_KEY, OPS_KEY]}
    path = tmp_path / "serverless.yml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return start_relay({"manifest": str(path), "invoke": {
        "keys": [{"accessKeyId": OPS_KEY, "secretAccessKey": OPS_SECRET}]}}, name="keyed")


def test_a_key_listed_only_for_replay_invokes_replay_and_is_refused_member(keyed_relay):
    ops = lambda_client(keyed_relay, key=OPS_KEY, secret=OPS_SECRET)
    assert ops.invoke(FunctionName="replay", InvocationType="DryRun")["StatusCode"] == 204
    did = "did:plc:opsopsopsopsopsopsopsops"
    keyed_relay.enroll(did, "ops.example", approve=False)
    with pytest.raises(ClientError) as refused:
        ops.invoke(FunctionName="member", Payload=json.dumps({"action": "approve", "did": did}).encode())
    error = refused.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (403, "AccessDeniedException")
    assert f"{OPS_KEY} may not call function member" in error["Error"]["Message"]
    keyed_relay.wait_for("invoke_api.denied", code="AccessDeniedException", accessKeyId=OPS_KEY, function="member")
    with pytest.raises(ClientError) as described:
        ops.get_function(FunctionName="member")
    assert described.value.response["Error"]["Code"] == "AccessDeniedException"
    assert member_status(keyed_relay, did) == "pending"


def test_the_default_key_still_calls_what_it_is_listed_for_and_what_is_unrestricted(keyed_relay):
    default = lambda_client(keyed_relay)
    for name in ("member", "replay", "housekeeping", "labeler"):
        assert default.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204, name
    ops = lambda_client(keyed_relay, key=OPS_KEY, secret=OPS_SECRET)
    assert ops.invoke(FunctionName="housekeeping", InvocationType="DryRun")["StatusCode"] == 204


def test_list_functions_shows_each_key_only_what_it_may_call(keyed_relay):
    def listed(client) -> set[str]:
        return {f["FunctionName"] for f in client.list_functions()["Functions"]}

    assert listed(lambda_client(keyed_relay)) == EXPOSED
    assert listed(lambda_client(keyed_relay, key=OPS_KEY, secret=OPS_SECRET)) == EXPOSED - {"member"}


@pytest.mark.parametrize("keys, named", [
    ([{"accessKeyId": OPS_KEY, "secretAccessKey": ""}], "invoke.keys.[0].secretAccessKey"),
    ([{"accessKeyId": "", "secretAccessKey": "s"}], "invoke.keys.[0].accessKeyId"),
    ([{"accessKeyId": OPS_KEY, "secretAccessKey": "a"}, {"accessKeyId": OPS_KEY, "secretAccessKey": "b"}],
     f"invoke.keys: access key id '{OPS_KEY}' is configured twice"),
    ([{"accessKeyId": ACCESS_KEY, "secretAccessKey": "other"}],
     f"invoke.keys: access key id '{ACCESS_KEY}' is configured twice"),
])
def test_a_bad_invoke_keys_entry_stops_start_up_with_the_key_named(tmp_path, keys, named):
    relay = Relay(tmp_path / "bad-keys", config={"invoke": {"keys": keys}})
    result = relay.cli("serve", check=False)
    assert result.returncode == 2 and named in result.stderr, result.stderr


def test_access_keys_without_api_true_is_a_manifest_error(tmp_path):
    path = tmp_path / "serverless.yml"
    path.write_text(yaml.safe_dump({"service": "x", "functions": {"replay": {
        "handler": "functions/replay.handler", "invoke": {"accessKeys": [OPS_KEY]}}}}))
    with pytest.raises(ManifestError, match="invoke.accessKeys needs invoke: {api: true}"):
        load_manifest(path)
