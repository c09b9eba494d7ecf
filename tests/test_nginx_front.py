"""The documented production front: nginx with infra/nginx/atmos-relay.conf before the relay's HTTP port.

The relay trusts 127.0.0.1 (`http.trustedProxies`, as infra/config.production.json
does); clients reach nginx over HTTPS from their own loopback addresses, so the
relay sees each client only through the X-Forwarded-For nginx writes.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest

from harness.nginx import SERVER_NAME, Nginx, installed
from harness.slow_clients import Slowloris, connect

pytestmark = pytest.mark.skipif(not installed(), reason="nginx is not installed (tests/setup/install-deps.sh)")


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def https(port: int, method: str, path: str, source: str, body: bytes | None = None,
          headers: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, source_address=(source, 0), context=insecure())
    try:
        conn.request(method, path, body=body, headers={"Host": SERVER_NAME, "Accept": "application/json",
                                                       **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.fixture
def fronted(start_relay, tmp_path):
    relay = start_relay({"http": {"trustedProxies": ["127.0.0.1", "::1"], "headerTimeout": "2s"}})
    nginx = Nginx(tmp_path / "nginx", relay.ports["http"], relay.ports["labeler"]).start()
    yield relay, nginx
    nginx.stop()


def _enroll(nginx: Nginx, source: str, n: int, forwarded_for: str) -> tuple[int, str]:
    return https(nginx.https_port, "POST", "/enroll", source, body=f"did=did:plc:bad{n}&domain=pds.example".encode(),
                 headers={"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": forwarded_for})


def test_the_enroll_limit_keys_on_the_client_nginx_forwards_not_on_nginx_nor_on_what_the_client_claims(fronted):
    relay, nginx = fronted
    # Each attempt claims another address; nginx replaces the header, so all 20 count against 127.0.5.2.
    for n in range(20):
        status, body = _enroll(nginx, "127.0.5.2", n, f"203.0.113.{n + 1}")
        assert status == 400, body  # counted, then refused for the bad DID
    status, body = _enroll(nginx, "127.0.5.2", 20, "203.0.113.99")
    assert status == 429 and "too many enrollments from 127.0.5.2" in json.loads(body)["error"], body
    status, body = _enroll(nginx, "127.0.5.3", 21, "127.0.5.2")
    assert status == 400, "another client behind the same proxy has its own budget"
    (line,) = relay.wait_for("enroll.refused", reason="throttled")
    assert line["client"] == "127.0.5.2"


class TlsSlowloris(Slowloris):
    """Slowloris after a finished TLS handshake: header lines one by one, never the end of them."""

    def _open(self, slot: int) -> None:
        try:
            sock = insecure().wrap_socket(connect(self.port, self.slots[slot], timeout=5), server_hostname=SERVER_NAME)
            sock.sendall(f"GET /enroll HTTP/1.1\r\nHost: {SERVER_NAME}\r\n".encode())
        except OSError:
            return
        self.socks[slot] = sock


def test_slowloris_at_nginx_does_not_reach_the_relay(fronted):
    relay, nginx = fronted
    sources = [f"127.0.6.{n}" for n in range(2, 12)]
    with TlsSlowloris(nginx.https_port, sources, per_source=20) as attacker:
        while sum(s is not None for s in attacker.socks) < 150:
            attacker.stopping.wait(0.2)
        for _ in range(3):
            status, body = https(nginx.https_port, "GET", "/enroll", "127.0.5.9")
            assert status == 200 and "enroll" in json.loads(body)
        status, _ = https(nginx.https_port, "GET", "/admin/members", "127.0.5.9",
                          headers={"Authorization": f"Bearer {relay.admin_token}"})
        assert status == 200
        held = sum(s is not None for s in attacker.socks)
        assert held >= 150, "the slow connections were open at nginx while the others were served"
        # nginx gives up on them at its client_header_timeout (10 s); had it passed any on half-read, the
        # relay would have timed it out at its own 2 s long before.
        nginx.wait_for_log("client timed out (110: Connection timed out) while reading client request headers")
    assert not relay.logs("http.request_timed_out") and not relay.logs("http.connection_refused")


def test_nginx_passes_the_labeler_websocket_on(fronted):
    relay, nginx = fronted
    sock = insecure().wrap_socket(socket.create_connection(("127.0.0.1", nginx.https_port), timeout=30),
                                  server_hostname=SERVER_NAME)
    sock.sendall(f"GET /xrpc/com.atproto.label.subscribeLabels HTTP/1.1\r\nHost: {SERVER_NAME}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    sock.close()
    relay.wait_for("websocket.connected")
