"""Issue 13, the HTTP side: the HTTP port keeps serving whatever its clients send.

Each test starts the relay, plays hostile clients from their own loopback
addresses and a legitimate one beside them, and reads the replies and log lines.
"""
from __future__ import annotations

import io
import json
import os
import resource
import select
import socket

import pytest

from functions.web.http_api import form, json_depth
from harness.relay import Relay
from harness.slow_clients import Slowloris, connect, read_reply, request
from runtime.errors import BadRequest
from runtime.http_guard import ConnectionGuard
from runtime.jsonlog import JsonLog
from runtime.settings import HttpSettings

GUARDED = {"http": {"maxConnections": 40, "maxConnectionsPerClient": 8, "headerTimeout": "2s"}}
PROXY = "127.0.0.9"


def test_a_client_over_its_share_of_connections_gets_503_and_others_are_served(start_relay):
    relay = start_relay(GUARDED)
    port = relay.ports["http"]
    with Slowloris(port, ["127.0.0.2"], per_source=20) as attacker:
        relay.wait_for("http.connection_refused")
        status, body, _ = request(port, "GET", "/enroll")
        assert status == 200 and "enroll" in json.loads(body)
        assert attacker.answered.wait(30)
    assert any(answer.startswith(b"HTTP/1.1 503") and b"Too many connections" in answer
               for answer in attacker.answers)
    refused = relay.logs("http.connection_refused")
    assert refused[0]["counts"] == {"per_client_limit": 1} and refused[0]["last_client"] == "127.0.0.2"


def test_slowloris_from_many_addresses_does_not_starve_a_legitimate_request(start_relay):
    relay = start_relay(GUARDED)
    port = relay.ports["http"]
    sources = [f"127.0.0.{n}" for n in range(10, 29)]  # 19 addresses x 8 = 152 connections, the limit is 40
    with Slowloris(port, sources, per_source=8):
        relay.wait_for("http.request_timed_out", timeout=30)
        status, body, _ = request(port, "GET", "/enroll")
        assert status == 200 and "enroll" in json.loads(body)
        status, _, _ = request(port, "GET", "/admin/members", headers={"Authorization": f"Bearer {relay.admin_token}"})
        assert status == 200
    assert relay.logs("http.request_timed_out")[0]["counts"] == {"header": 1}


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_body_timeout(start_relay):
    relay = start_relay({"http": {"bodyTimeout": "2s"}})
    sock = connect(relay.ports["http"], "127.0.0.7")
    sock.sendall(b"POST /enroll HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: 1000\r\n\r\ndid=")
    for _ in range(240):  # a byte every half second, until the relay hangs up
        if select.select([sock], [], [], 0.5)[0]:
            break
        sock.send(b"x")
    assert read_reply(sock) == b""  # closed without an answer: the request never arrived whole
    sock.close()
    assert relay.wait_for("http.request_timed_out")[0]["counts"] == {"body": 1}
    assert not relay.logs("enroll.refused") and not relay.logs("member.enrolled")


def _enroll_via(port: int, source: str, forwarded_for: str, n: int) -> tuple[int, str]:
    status, body, _ = request(port, "POST", "/enroll", source=source,
                              body=f"did=did:plc:bad{n}&domain=pds.example".encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded",
                                       "X-Forwarded-For": forwarded_for})
    return status, body


def test_the_enroll_limit_keys_on_the_address_a_trusted_proxy_forwards(start_relay):
    relay = start_relay({"http": {"trustedProxies": [PROXY]}})
    port = relay.ports["http"]
    for n in range(20):
        assert _enroll_via(port, PROXY, "198.51.100.7", n)[0] == 400  # counted, then refused for the bad DID
    status, body = _enroll_via(port, PROXY, "198.51.100.7", 20)
    assert status == 429 and "198.51.100.7" in json.loads(body)["error"]
    assert relay.logs("enroll.refused", reason="throttled", client="198.51.100.7")
    assert _enroll_via(port, PROXY, "198.51.100.8", 21)[0] == 400  # another client behind the proxy
    assert _enroll_via(port, PROXY, "203.0.113.1, 198.51.100.8", 22)[0] == 400  # the nearest hop counts


def test_a_forwarded_address_from_an_untrusted_client_keys_nothing(start_relay):
    relay = start_relay({"http": {"trustedProxies": [PROXY]}})
    port = relay.ports["http"]
    for n in range(20):  # one client pretending to be twenty
        assert _enroll_via(port, "127.0.0.5", f"198.51.100.{n}", n)[0] == 400
    status, body = _enroll_via(port, "127.0.0.5", "198.51.100.99", 20)
    assert status == 429 and "127.0.0.5" in json.loads(body)["error"]
    assert relay.logs("enroll.refused", reason="throttled", client="127.0.0.5")


def test_an_oversized_form_gets_413_before_its_body_is_read(start_relay):
    relay = start_relay()
    sock = connect(relay.ports["http"])
    sock.sendall(b"POST /enroll HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: 20000000\r\n\r\n" + b"a=1&" * 1000)  # 4 KB of the 20 MB announced
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"may have at most 65536 bytes" in reply
    assert relay.wait_for("http.body_refused")[0]["counts"] == {"/enroll": 1}
    assert not relay.logs("enroll.refused")
    sock = connect(relay.ports["http"])  # a client that waits for "100 Continue" is told at once, and nothing else
    sock.sendall(b"POST /enroll HTTP/1.1\r\nHost: relay\r\nExpect: 100-continue\r\nContent-Length: 20000000\r\n\r\n")
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413") and b"100 Continue" not in reply


def test_a_chunked_form_gets_413_once_its_chunks_pass_the_limit(start_relay):
    relay = start_relay()
    sock = connect(relay.ports["http"])
    chunk = b"a=1&" * 4096
    sock.sendall(b"POST /enroll HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                 + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 5)
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413")


def test_deeply_nested_json_gets_400_with_a_reason(start_relay):
    relay = start_relay()
    port = relay.ports["http"]
    did = "did:plc:abcdefghijklmnopqrstuvwx"
    relay.enroll(did, "pds.example", approve=False, prove=False)
    admin = {"Authorization": f"Bearer {relay.admin_token}", "Content-Type": "application/json"}
    for body in (b"[" * 50000, b'{"did": ' + b"[" * 40 + b"]" * 40 + b"}", b'{"a": "[[[[' + b"[" * 60 + b'"'):
        status, text, _ = request(port, "POST", "/enroll", body=body, headers={"Content-Type": "application/json"})
        assert status == 400, (body[:60], status, text)
        status, text, _ = request(port, "POST", f"/admin/member/{did}/suppressions", body=body, headers=admin)
        assert status == 400, (body[:60], status, text)
        assert json.loads(text)["message"]
    status, text, _ = request(port, "POST", "/enroll", body=b'{"did": "x", "domain": "' + b"[" * 60 + b'\\"]]"}',
                              headers={"Content-Type": "application/json"})
    assert status == 400 and "did" in text.lower()  # brackets inside strings are text: read, then refused as a DID
    assert not relay.logs("function.error")


def _post(body: bytes, ctype: str) -> dict:
    return {"body": body.decode(), "headers": {"content-type": ctype}}


def test_json_depth_counts_brackets_outside_strings_only():
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[{{{{", "b": "\\\\"}') == 1
    assert json_depth(b'{"a": "\\"[[[["}') == 1
    assert json_depth(b"[" * 100000) == 100000
    assert json_depth(b'"\\"' * 20000) == 0  # escaped quotes: linear, no regex backtracking


def test_form_reads_flat_bodies_and_refuses_the_rest_with_a_reason():
    assert form(_post(b'{"did": "did:plc:x", "n": [1]}', "application/json")) == {"did": "did:plc:x", "n": "[1]"}
    assert form(_post(b"did=a&did=b&domain=", "application/x-www-form-urlencoded")) == {"did": "b", "domain": ""}
    for body, ctype, reason in ((b"[" * 40 + b"]" * 40, "application/json", "nested deeper"),
                                (b"{", "application/json", "not valid JSON"),
                                (b"[1, 2]", "application/json", "must be an object"),
                                (b"&".join(b"f%d=1" % n for n in range(300)), "application/x-www-form-urlencoded",
                                 "more than 256 fields")):
        with pytest.raises(BadRequest, match=reason) as refused:
            form(_post(body, ctype))
        assert refused.value.status == 400


def test_the_guard_counts_connections_per_client_and_lets_a_trusted_proxy_hold_many():
    lines = io.StringIO()
    guard = ConnectionGuard(HttpSettings(trustedProxies=("10.0.0.1",), maxConnectionsPerClient=2),
                            lambda path: 1024, JsonLog(lines))
    held = [guard.admit("192.0.2.1"), guard.admit("192.0.2.1")]
    assert guard.admit("192.0.2.1") is None and guard.admit("192.0.2.2") is not None
    assert guard.admit("2001:db8::1") and guard.admit("2001:db8::2") and guard.admit("2001:db8::3") is None  # a /64
    assert all(guard.admit("10.0.0.1") for _ in range(10))
    guard.release(held[0])
    assert guard.admit("192.0.2.1") is not None
    refused = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [r["event"] for r in refused] == ["http.connection_refused"]  # the second refusal waits for the summary


def _cpu_seconds(pid: int) -> float:
    """User and system CPU the process (all its threads) has used, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_http_listener_waits_instead_of_spinning_and_serves_once_they_are_freed(
        tmp_path, proofs):
    relay = Relay(tmp_path / "relay", proofs=proofs, config={
        "smtp": {"processes": 0}, "http": {"headerTimeout": "300s", "maxConnections": 1024}})
    relay.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
    flood: list[socket.socket] = []
    try:
        relay.start()
        port = relay.ports["http"]
        # Idle connections from 20 addresses (under the per-client cap) until the relay has no descriptor left;
        # the rest wait in the listen backlog while accept() fails.
        for n in range(220):
            flood.append(connect(port, f"127.0.4.{1 + n % 20}"))
        first, second = relay.wait_for("http.resource_exhausted", count=2, timeout=60)[:2]
        assert first["error"] == "Too many open files" and first["open_files_limit"] == 160
        busy_from = _cpu_seconds(relay.proc.pid)
        third = relay.wait_for("http.resource_exhausted", count=3, timeout=60)[2]
        used = _cpu_seconds(relay.proc.pid) - busy_from
        print(f"CPU over one 10 s interval out of descriptors: {used:.2f} s ({third['suppressed']} failed accepts)")
        assert third["suppressed"] >= 1, "the listener kept trying"
        assert used < 1.0, f"the relay used {used:.2f} CPU seconds while it could not accept"
        for sock in flood:
            sock.close()
        flood.clear()
        status, body, _ = request(port, "GET", "/enroll")
        assert status == 200 and "enroll" in json.loads(body)
    finally:
        for sock in flood:
            sock.close()
        relay.stop()
