"""Issue 13, the relay's own requests: a member cannot aim the relay's attestation fetches at the operator's network.

The member's DID document names its PDS; the relay fetches from there every
minute. With `atproto.allowPrivateAddresses` off (production) a PDS on
loopback, a private or link-local network is refused with the reason, and
any answer is bounded in time and size. The tests' fake PDS runs on
loopback, so the other tests turn the setting on (tests/harness/atproto.py).
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from functions.members import pds_fetch

DID = "did:plc:ssrfssrfssrfssrfssrfssrf"
DOMAIN = "ssrf.example"


def test_a_pds_on_loopback_is_refused_with_the_reason_and_the_domain_stays_unproven(start_relay, proofs):
    relay = start_relay({"atproto": {"allowPrivateAddresses": False}})
    enrolled = relay.enroll(DID, DOMAIN, approve=False, prove=False)
    proofs.prove(enrolled)  # DNS records and attestation as a member publishes them; its PDS is on 127.0.0.1
    status, shown, _ = relay.http("POST", f"/admin/member/{DID}/verify")
    assert status == 200, shown
    (line,) = relay.wait_for("attestation.fetch_refused", did=DID, domain=DOMAIN)
    assert "127.0.0.1 is a loopback address (atproto.allowPrivateAddresses is off)" in line["reason"]
    claim = next(d for d in relay.cli_json("member", "show", DID)["domains"] if d["domain"] == DOMAIN)
    assert claim["verification"] == "pending"
    assert "loopback address" in claim["lastFailure"]


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("172.16.5.4", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "not a public"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("::1", "loopback"), ("fe80::1", "link-local"), ("fc00::1", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("2002:7f00:1::1", "loopback"), ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 carrying 127.0.0.1, 169.254.x
])
def test_addresses_of_the_operators_network_are_refused(address, why):
    assert why in pds_fetch.address_refusal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_fetched_from(address):
    assert pds_fetch.address_refusal(address) == ""


def test_a_name_resolving_to_loopback_and_plain_http_to_a_member_are_refused_before_connecting():
    with pytest.raises(pds_fetch.FetchRefused, match="localhost resolves only to addresses"):
        pds_fetch.get_json("https://localhost:9/xrpc", 2, allow_private=False)
    with pytest.raises(pds_fetch.FetchRefused, match="over https only"):
        pds_fetch.get_json("http://93.184.216.34:9/xrpc", 2, allow_private=False)


class Server:
    """A PDS that answers with `reply(conn)` on loopback, one connection at a time."""

    def __init__(self, reply) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                self.reply(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_pds_that_dribbles_its_answer_is_cut_off_at_the_timeout():
    def dribble(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(600):
            conn.sendall(b"X-Slow: a\r\n")
            time.sleep(0.1)

    server = Server(dribble)
    try:
        with pytest.raises(pds_fetch.FetchFailed, match="no whole answer within 1s"):
            pds_fetch.get_json(f"http://127.0.0.1:{server.port}/xrpc", 1, allow_private=True)
    finally:
        server.close()


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_larger_than_a_mebibyte_is_not_read(declared):
    def flood(conn: socket.socket) -> None:
        length = b"Content-Length: 8388608\r\n" if declared else b""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + length + b"\r\n")
        for _ in range(128):
            conn.sendall(b" " * 65536)

    server = Server(flood)
    try:
        with pytest.raises(pds_fetch.FetchFailed, match="more than 1048576"):
            pds_fetch.get_json(f"http://127.0.0.1:{server.port}/xrpc", 10, allow_private=True)
    finally:
        server.close()


def test_a_small_answer_from_an_allowed_pds_is_read():
    def answer(conn: socket.socket) -> None:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true')
        conn.sendall(b"}")

    server = Server(answer)
    try:
        assert pds_fetch.get_json(f"http://127.0.0.1:{server.port}/x", 5, allow_private=True) == (200, {"ok": True})
    finally:
        server.close()
