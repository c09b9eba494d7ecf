"""The atproto network sees the labels: identity, signed labels, queryLabels and subscribeLabels.

What we publish is read by Bluesky's own libraries (tests/verifier/atproto_labels.js):
@atproto/api's lexicons validate records, responses and stream messages, @atproto/common
re-encodes each label as DAG-CBOR and @atproto/crypto verifies its signature against the
did:key `atmos-relay labeler identity` prints; @atproto/xrpc-server's Subscription reads the
stream. The pure parts (signatures, parameters, cursors) have fast tests at the end.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import libipld
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from functions.labeling import label_records, label_stream, signing_key, xrpc
from runtime.manifest import WebSocketTrigger, load_manifest

VERIFIER = Path(__file__).resolve().parent / "verifier"
DID = "did:plc:labelerlabelerlabelerlab"
DOMAIN = "pds.labeled.example"
VERIFIED = "verified-mail-operator"


def atproto_libs(*args: str) -> dict:
    proc = subprocess.run([shutil.which("node") or "node", "atproto_labels.js", *args], cwd=VERIFIER,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


class Subscriber:
    """@atproto/xrpc-server's Subscription on subscribeLabels, as a process; its messages as they come."""

    def __init__(self, relay, cursor: str, messages: int, did_key: str) -> None:
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [shutil.which("node") or "node", "atproto_labels.js", "subscribe",
             f"ws://127.0.0.1:{relay.ports['labeler']}", cursor, str(messages), did_key],
            cwd=VERIFIER, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.messages.append(json.loads(line) if line.startswith("{") else {"raw": line})
                self._cond.notify_all()

    def wait(self, count: int, timeout: float = 30) -> list[dict]:
        """The first `count` stream messages (the subscriber's own 'subscribed' line left out)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                assert time.monotonic() < deadline, f"stream messages so far: {self.messages}"
                self._cond.wait(0.2)
            return self.received[:count]

    @property
    def received(self) -> list[dict]:
        return [m for m in self.messages if "subscribed" not in m]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


def query(relay, params: str, did_key: str) -> dict:
    return atproto_libs("query", f"{relay.http_url}/xrpc/com.atproto.label.queryLabels?{params}", did_key)


def http_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def policy_file(tmp_path) -> Path:
    """A cooperative that publishes highly_trusted as trusted-mail-operator; burst_warming stays internal."""
    path = tmp_path / "policy.yml"
    path.write_text(
        "labels:\n  public:\n"
        "    - {label: highly_trusted, value: trusted-mail-operator, name: Trusted mail operator,\n"
        "       description: A month of clean mail through the cooperative, severity: inform}\n")
    return path


def test_the_labeler_identity_is_made_once_and_is_what_atproto_expects(start_relay, policy_file):
    relay = start_relay({"labeler": {"publicUrl": "https://labeler.atmos.test", "keyType": "p256"},
                         "rulesFile": str(policy_file)})
    first_boot = relay.wait_for("labeler.first_boot")[0]
    key_file = relay.state / "labeler-key.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    identity = relay.cli_json("labeler", "identity")
    assert identity["did"] == first_boot["did"] == "did:web:relay.atmos.test"
    assert identity["didKey"] == first_boot["didKey"] and identity["didKey"].startswith("did:key:zDn")
    assert identity["verificationMethod"] == {
        "id": "did:web:relay.atmos.test#atproto_label", "type": "Multikey",
        "controller": "did:web:relay.atmos.test", "publicKeyMultibase": identity["didKey"][len("did:key:"):]}
    assert identity["service"] == {"id": "#atproto_labeler", "type": "AtprotoLabeler",
                                   "serviceEndpoint": "https://labeler.atmos.test"}
    record = identity["labelerRecord"]
    assert (record["collection"], record["rkey"]) == ("app.bsky.labeler.service", "self")
    assert record["record"]["policies"]["labelValues"] == ["trusted-mail-operator", VERIFIED]
    (relay.workdir / "identity.json").write_text(json.dumps(identity))
    assert atproto_libs("record", str(relay.workdir / "identity.json")) == {"valid": True}
    assert http_get(relay.http_url + "/.well-known/did.json") == (200, identity["didDocument"])
    assert atproto_libs("diddoc", relay.http_url + "/.well-known/did.json") == {
        "valid": True, "type": "Multikey", "jwtAlg": "ES256", "didKey": identity["didKey"],
        "endpoint": "https://labeler.atmos.test"}

    relay.enroll(DID, DOMAIN, prove=False)  # a proven domain would get verified-mail-operator on the labeler's minute
    relay.cli("member", "label", DID, "--add", "highly_trusted")
    labels = query(relay, f"uriPatterns={DID}", identity["didKey"])["labels"]
    assert [(x["val"], x["sigValid"]) for x in labels] == [("trusted-mail-operator", True)]

    relay.restart()
    assert relay.logs("labeler.first_boot") == [] and relay.logs("labeler.reconciled") == []
    assert relay.cli_json("labeler", "identity")["didKey"] == first_boot["didKey"]


def test_a_verified_member_is_labelled_signed_on_query_and_stream_and_unlabelled_by_negation(
        mail_relay, dns_server, atproto):
    relay = mail_relay(atproto.config)
    did_key = relay.cli_json("labeler", "identity")["didKey"]
    assert did_key.startswith("did:key:zQ3s")  # secp256k1, the default
    live = Subscriber(relay, "-", 2, did_key)
    relay.wait_for("websocket.connected")
    try:
        enrolled = relay.enroll(DID, DOMAIN)
        dns_server.publish(enrolled["dnsRecords"])
        atproto.register(DID)
        atproto.put_record(DID, "email.atmos.attestation", DOMAIN,
                           {"$type": "email.atmos.attestation", "domain": DOMAIN,
                            "dkimSelectors": enrolled["selectors"], "relay": "atmos.test"})
        # The labeler's own minute, not a hand invocation: the label follows within a minute.
        published = relay.wait_for("labeler.published", timeout=75, uri=DID, val=VERIFIED)[0]
        assert published["neg"] is False and published["src"] == "did:web:relay.atmos.test"

        answer = query(relay, f"uriPatterns={DID}", did_key)
        assert [(x["uri"], x["val"], x["src"], x["ver"], x["sigValid"], x["sigBytes"]) for x in answer["labels"]] == [
            (DID, VERIFIED, "did:web:relay.atmos.test", 1, True, 64)]
        assert "neg" not in answer["labels"][0]
        added = live.wait(1)[0]
        assert added["type"] == "labels" and added["seq"] == published["seq"]
        assert [(x["uri"], x["val"], x["sigValid"]) for x in added["labels"]] == [(DID, VERIFIED, True)]

        dns_server.delete(f"{enrolled['selectors'][0]}._domainkey.{DOMAIN}")
        assert relay.cli_json("invoke", "labeler", "--payload", "{}")["removed"] == [DID]
        negation = live.wait(2)[1]
        assert negation["seq"] > added["seq"]
        assert [(x["uri"], x["val"], x.get("neg"), x["sigValid"]) for x in negation["labels"]] == [
            (DID, VERIFIED, True, True)]
        assert query(relay, "uriPatterns=did:plc:*", did_key)["labels"] == []
    finally:
        live.close()

    replay = Subscriber(relay, "0", 2, did_key)
    try:
        assert [(m["seq"], m["labels"][0].get("neg", False), m["labels"][0]["sigValid"]) for m in replay.wait(2)] == [
            (added["seq"], False, True), (negation["seq"], True, True)]
    finally:
        replay.close()


def test_operator_labels_are_published_when_the_policy_makes_them_public(start_relay, policy_file):
    # verified-mail-operator is the labeler's to give (it withdraws a hand-set one from a domain without DNS).
    relay = start_relay()
    # Unproven domains (no DKIM records published): only the operator's labels can be in play here.
    relay.enroll(DID, DOMAIN, prove=False)
    other = "did:plc:otherotherotherotherothe"
    relay.enroll(other, "pds.other.example", prove=False)
    relay.cli("member", "label", DID, "--add", "burst_warming")
    relay.cli("member", "label", DID, "--add", "highly_trusted")
    assert relay.cli_json("member", "show", DID)["labels"] == ["burst_warming", "highly_trusted"]
    url = relay.http_url + "/xrpc/com.atproto.label.queryLabels?"
    assert http_get(url + "uriPatterns=*") == (200, {"labels": []})
    assert relay.logs("labeler.published") == []

    relay.write_config(rulesFile=str(policy_file))
    relay.restart()
    assert relay.wait_for("labeler.reconciled")[0]["published"] == 1
    relay.cli("member", "label", other, "--add", "highly_trusted")
    identity = relay.cli_json("labeler", "identity")
    did_key = identity["didKey"]
    assert identity["labelerRecord"]["record"]["policies"]["labelValues"] == ["trusted-mail-operator", VERIFIED]
    (relay.workdir / "identity.json").write_text(json.dumps(identity))
    assert atproto_libs("record", str(relay.workdir / "identity.json")) == {"valid": True}
    labels = query(relay, "uriPatterns=did:plc:*", did_key)["labels"]
    assert [(x["uri"], x["val"], x["sigValid"]) for x in labels] == [
        (DID, "trusted-mail-operator", True), (other, "trusted-mail-operator", True)]

    uris = lambda params: [x["uri"] for x in http_get(url + params)[1]["labels"]]  # noqa: E731
    status, page = http_get(url + "uriPatterns=did:plc:*&limit=1")
    assert status == 200 and [x["uri"] for x in page["labels"]] == [DID]
    rest = http_get(url + f"uriPatterns=did:plc:*&limit=1&cursor={page['cursor']}")[1]
    assert [x["uri"] for x in rest["labels"]] == [other]
    assert http_get(url + f"uriPatterns=did:plc:*&cursor={rest['cursor']}")[1] == {"labels": []}
    assert uris(f"uriPatterns={other}&uriPatterns=did:web:*") == [other]
    assert uris("uriPatterns=did:plc:*&sources=did:web:elsewhere.example") == []
    assert uris("uriPatterns=*&sources=did:web:relay.atmos.test") == [DID, other]

    relay.cli("member", "label", DID, "--remove", "highly_trusted")
    assert uris("uriPatterns=did:plc:*") == [other]
    assert http_get(url + "uriPatterns=did:*&limit=251")[0] == 400
    assert http_get(url)[1]["error"] == "InvalidRequest"
    assert http_get(url + "uriPatterns=did:*:x")[1]["error"] == "InvalidRequest"


def test_a_cursor_ahead_of_the_stream_is_a_future_cursor_error(start_relay):
    relay = start_relay()
    relay.enroll(DID, DOMAIN)
    relay.cli("member", "label", DID, "--add", VERIFIED)
    did_key = relay.cli_json("labeler", "identity")["didKey"]
    ahead = Subscriber(relay, "7", 1, did_key)
    try:
        assert ahead.wait(1)[0]["error"] == "FutureCursor"
    finally:
        ahead.close()
    relay.wait_for("websocket.closed", reason="closed by function")
    request = urllib.request.Request(f"http://127.0.0.1:{relay.ports['labeler']}/xrpc/other")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404


def test_subscribers_past_max_connections_are_refused_until_one_leaves(start_relay, tmp_path):
    manifest = tmp_path / "serverless.yml"
    shipped = (Path(__file__).resolve().parents[1] / "serverless.yml").read_text()
    manifest.write_text(shipped.replace("maxConnections: 100", "maxConnections: 1"))
    relay = start_relay({"manifest": str(manifest)})
    stream = f"ws://127.0.0.1:{relay.ports['labeler']}/xrpc/com.atproto.label.subscribeLabels"
    with connect(stream):
        relay.wait_for("websocket.connected")
        with pytest.raises(InvalidStatus) as refused:
            with connect(stream):
                pass
        assert refused.value.response.status_code == 503
        relay.wait_for("websocket.refused", reason="maxConnections")
    relay.wait_for("websocket.closed", reason="client closed")
    with connect(stream):
        relay.wait_for("websocket.connected", count=2)


# Pure parts: signatures, the wire forms, parameters and cursors.

def _verify(key: signing_key.LabelerKey, data: bytes, sig: bytes) -> None:
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    key.private.public_key().verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("key_type", ["secp256k1", "p256"])
def test_signatures_are_low_s_64_bytes_and_verify(tmp_path, key_type):
    key, created = signing_key.ensure(str(tmp_path), key_type, 1.0)
    assert created and signing_key.ensure(str(tmp_path), key_type, 2.0)[1] is False
    order = signing_key._CURVES[key_type][2]
    prefix = {"secp256k1": b"\xe7\x01", "p256": b"\x80\x24"}[key_type]
    assert libipld.decode_multibase(key.multikey)[1][:2] == prefix
    for n in range(40):
        data = f"label {n}".encode()
        sig = key.sign(data)
        assert len(sig) == 64 and int.from_bytes(sig[32:], "big") <= order // 2
        _verify(key, data, sig)
    with pytest.raises(InvalidSignature):
        _verify(key, b"label 0", key.sign(b"label 1"))


def test_a_label_is_signed_over_its_dag_cbor_without_sig_and_neg_only_when_negating(tmp_path):
    key, _ = signing_key.ensure(str(tmp_path), "secp256k1", 1.0)
    plain = label_records.unsigned("did:web:r.test", DID, VERIFIED, False, "2026-01-01T00:00:00.000Z")
    negation = label_records.unsigned("did:web:r.test", DID, VERIFIED, True, "2026-01-01T00:00:00.000Z")
    assert "neg" not in plain and negation["neg"] is True
    signed = label_records.signed(negation, key.sign)
    _verify(key, libipld.encode_dag_cbor(negation), signed["sig"])
    as_json = label_records.as_json(signed)["sig"]["$bytes"]
    assert "=" not in as_json and len(as_json) == 86
    header, body = libipld.decode_dag_cbor_multi(label_records.labels_frame(3, [signed]))
    assert header == {"op": 1, "t": "#labels"} and body["seq"] == 3 and body["labels"][0]["sig"] == signed["sig"]
    assert libipld.decode_dag_cbor_multi(label_records.error_frame("FutureCursor", "x"))[0] == {"op": -1}


def test_query_parameters_are_read_as_atproto_defines_them():
    q = xrpc.label_query("uriPatterns=did:plc:a&uriPatterns=did:web:*&sources=did:web:x.test&limit=7&cursor=4")
    assert (q.exact, q.prefixes, q.sources, q.limit, q.cursor) == (["did:plc:a"], ["did:web:"], ["did:web:x.test"],
                                                                   7, 4)
    assert xrpc.label_query("uriPatterns=*").limit == 50
    for bad in ("", "uriPatterns=a*b", "uriPatterns=x&limit=0", "uriPatterns=x&limit=251", "uriPatterns=x&cursor=-1",
                "uriPatterns=x&cursor=1e3", "uriPatterns=x&sources=nope", "&".join(["uriPatterns=x"] * 51)):
        with pytest.raises(xrpc.XrpcError):
            xrpc.label_query(bad)
    assert xrpc.stream_cursor("") is None and xrpc.stream_cursor("cursor=12") == 12


def _stream_db(seqs: list[int]) -> sqlite3.Connection:
    """A labels schema holding labels with these seqs (as if older ones were no longer kept)."""
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.execute("ATTACH ':memory:' AS labels")
    conn.execute("CREATE TABLE labels.signed_labels (seq INTEGER PRIMARY KEY, src, uri, val, neg, cts, exp, sig)")
    for seq in seqs:
        conn.execute("INSERT INTO labels.signed_labels VALUES (?, 'did:web:r.test', ?, ?, 0, 'c', NULL, ?)",
                     (seq, DID, VERIFIED, b"s" * 64))
    return conn


def _decoded(result: dict) -> list[tuple]:
    import base64
    return [tuple(libipld.decode_dag_cbor_multi(base64.b64decode(f))) for f in result["frames"]]


def test_stream_cursors_outdated_future_live_and_backfill():
    conn = _stream_db([5, 6, 7])
    outdated = label_stream.opening(conn, "cursor=2")
    frames = _decoded(outdated)
    assert frames[0][0] == {"op": 1, "t": "#info"} and frames[0][1]["name"] == "OutdatedCursor"
    assert [body["seq"] for _, body in frames[1:]] == [5, 6, 7] and outdated["state"] == {"cursor": 7}
    assert [b["seq"] for _, b in _decoded(label_stream.opening(conn, "cursor=5"))] == [6, 7]
    future = label_stream.opening(conn, "cursor=8")
    assert future["close"] and _decoded(future)[0][1]["error"] == "FutureCursor"
    assert label_stream.opening(conn, "") == {"frames": [], "state": {"cursor": 7}}
    bad = label_stream.opening(conn, "cursor=x")
    assert bad["close"] and _decoded(bad)[0][1]["error"] == "InvalidRequest"
    assert label_stream.following(conn, 7) == {"frames": [], "state": {"cursor": 7}, "more": False}
    assert label_stream.opening(_stream_db([]), "cursor=0") == {"frames": [], "state": {"cursor": 0}, "more": False}


def test_serverless_yml_binds_the_stream_to_the_labeler_listener():
    manifest = load_manifest(Path(__file__).resolve().parents[1] / "serverless.yml")
    (trigger,) = manifest.functions["subscribe-labels"].triggers(WebSocketTrigger)
    assert (trigger.listener, trigger.path) == ("labeler", "/xrpc/com.atproto.label.subscribeLabels")
    assert trigger.pollInterval <= 1 and trigger.maxConnections >= 1
