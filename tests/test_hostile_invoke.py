"""Issue 13 for the invoke API and the stores that grow: bounded payloads, keys that exist, dead letters that go.

The operator's own tools (boto3's lambda client, `atmos-relay serve`) drive
the running relay; the relay's clock is moved by the test where time matters.
"""
from __future__ import annotations

import json
import socket
import sqlite3
import uuid

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from harness.actions import action
from harness.clock import ClockFile
from harness.relay import ROOT, Relay
from harness.slow_clients import read_reply

ACCESS_KEY, SECRET = "AKIDTESTRELAY", "test-secret-key"
DID = "did:plc:deadletterdeadletterdead"


def lambda_client(relay: Relay):
    client = boto3.client("lambda", endpoint_url=relay.http_url, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET)
    client.meta.events.register("before-sign.lambda", lambda request, **_: request.headers.__setitem__(
        "X-Request-Nonce", uuid.uuid4().hex))
    return client


def test_a_deeply_nested_payload_gets_400_with_the_reason_and_runs_nothing(start_relay):
    relay = start_relay()
    lam = lambda_client(relay)
    with pytest.raises(ClientError) as refused:
        lam.invoke(FunctionName="member", Payload=b'{"action": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "InvalidRequestContentException"
    assert "nests deeper than 64 levels" in error["Error"]["Message"]
    relay.wait_for("invoke_api.bad_payload", function="member")
    assert not relay.logs("invoke_api.invoke") and not relay.logs("function.error")
    with pytest.raises(ClientError) as invalid:
        lam.invoke(FunctionName="member", Payload=b'{"action": ')
    assert "the payload is not valid JSON" in invalid.value.response["Error"]["Message"]
    shallow = lam.invoke(FunctionName="member", Payload=json.dumps({"action": "list", "x": [[[[1]]]]}).encode())
    assert shallow["StatusCode"] == 200


def test_an_oversized_invocation_gets_413_before_its_body_is_sent(start_relay):
    relay = start_relay()
    sock = socket.create_connection(("127.0.0.1", relay.ports["http"]), timeout=30)
    sock.sendall(b"POST /2015-03-31/functions/member/invocations HTTP/1.1\r\nHost: relay\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    relay.wait_for("http.body_refused")
    assert not relay.logs("invoke_api.invoke")


def test_access_keys_naming_a_key_that_is_not_configured_stop_start_up(tmp_path):
    manifest = yaml.safe_load((ROOT / "serverless.yml").read_text())
    manifest["functions"]["replay"]["invoke"] = {"api": True, "accessKeys": [ACCESS_KEY, "AKIDTYPO"]}
    path = tmp_path / "serverless.yml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    relay = Relay(tmp_path / "relay", config={"manifest": str(path)})
    result = relay.cli("serve", check=False)
    assert result.returncode == 2, result.stderr
    assert ("function replay: invoke.accessKeys names AKIDTYPO, not configured in config.json "
            f"(invoke.accessKeyId or invoke.keys; configured: {ACCESS_KEY})") in result.stderr


def _dead_letter_count(relay: Relay) -> int:
    return relay.cli_json("events", "rejected", "--limit", "1000")["count"]


def test_housekeeping_drops_dead_letters_older_than_their_retention(start_relay, tmp_path):
    clock = ClockFile(tmp_path / "clock")
    relay = start_relay({"rejectedActionsRetention": "30d"}, env=clock.env)
    lam = lambda_client(relay)

    def produce_malformed() -> None:
        """A third-party producer's action with a field of the wrong type, straight onto the embedded topic."""
        bad = action("relay_attempt", DID, clock.now(), recipients=7, message_id="<bad@producer>")
        db = sqlite3.connect(relay.state / "relay.sqlite", timeout=30)
        with db:
            db.execute("INSERT INTO outbox (topic, key, value, created_at) VALUES (?, ?, ?, ?)",
                       ("osprey.actions_input", DID, json.dumps(bad), clock.now()))
        db.close()
        relay.wait_for("stream.rejected", action_id=bad["data"]["action_id"], timeout=30)

    produce_malformed()
    relay.wait_for("rejected_actions.kept", count=1, timeout=30)
    clock.advance(20 * 86400)
    produce_malformed()
    relay.wait_for("rejected_actions.kept", count=2, timeout=30)
    assert _dead_letter_count(relay) == 2
    clock.advance(11 * 86400)
    removed = json.loads(lam.invoke(FunctionName="housekeeping")["Payload"].read())
    assert removed["rejected_actions"] == 1, removed
    relay.wait_for("housekeeping.done", rejected_actions=1)
    assert _dead_letter_count(relay) == 1, "the younger letter is kept"
