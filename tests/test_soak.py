"""Issue 13's soak: every listener under hostile and legitimate clients at once, for about half a minute.

Hostile: slowloris on HTTP, partial SMTP sessions and garbage lines on
submission, SMTPS and the inbound MX (a handful of connections per address,
so per-client SMTP caps change nothing), oversized HTTP forms and SMTP
messages. Legitimate: a member submitting over submission and SMTPS, an
operator and a visitor on HTTP. Afterwards every legitimate message was
accepted and delivered, every legitimate HTTP call answered, and the relay's
memory and open files are back near where they started.
"""
from __future__ import annotations

import os
import smtplib
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from harness.relay import enroll_published
from harness.slow_clients import Slowloris, connect, read_reply, request
from harness.smtp import insecure, message, session

DID = "did:plc:soaksoaksoaksoaksoaksoak"
DOMAIN = "soak.example"
HOSTILE_SECONDS = 30
MAX_MESSAGE = 200_000


def _tree(pid: int) -> list[int]:
    """The relay and its edge processes."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            pids.extend(int(p) for p in task.read_text().split())
        i += 1
    return pids


def _open_files(pid: int) -> Counter:
    """What the relay's process tree holds open (socket:, pipe:, files by path), read from /proc."""
    held: Counter = Counter()
    for p in _tree(pid):
        for fd in Path(f"/proc/{p}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            held["socket" if target.startswith("socket:") else "pipe" if target.startswith("pipe:") else target] += 1
    return held


def _usage(pid: int) -> tuple[int, int]:
    """(RSS in kB, open files) of the relay's process tree, read from /proc."""
    rss = 0
    for p in _tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return rss, sum(_open_files(pid).values())


class Clients:
    """Threads that each repeat one kind of client until told to stop, recording what went wrong."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.failures: list[str] = []
        self.counts: dict[str, int] = {}

    def run(self, name: str, step, pause: float) -> None:
        def loop() -> None:
            while not self.stopping.is_set():
                try:
                    step()
                    self.counts[name] = self.counts.get(name, 0) + 1
                except Exception as exc:  # a hostile client may fail as it likes; a legitimate one is recorded
                    if name.startswith("legit"):
                        self.failures.append(f"{name}: {exc!r}")
                self.stopping.wait(pause)
        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(90)


def _partial_smtp(port: int, source: str, tls: bool, held: list[socket.socket]) -> None:
    """Open a session, say EHLO and MAIL, and leave it hanging (at most four per address at a time)."""
    while len(held) >= 4:
        held.pop(0).close()
    sock = connect(port, source, timeout=10)
    if tls:
        sock = insecure().wrap_socket(sock)
    sock.recv(1024)
    sock.sendall(b"EHLO partial.test\r\n")
    sock.recv(4096)
    sock.sendall(b"MAIL FROM:<x@partial.test>\r\nRCPT TO:<postmaster@atmos.test>\r\nDATA\r\nSubject: half")
    held.append(sock)


def _garbage_smtp(port: int, source: str, tls: bool) -> None:
    sock = connect(port, source, timeout=10)
    if tls:
        sock = insecure().wrap_socket(sock)
    with sock:
        sock.recv(1024)
        for line in (os.urandom(600), b"\x00\xff" * 5000 + b"\r\n", b"AUTH PLAIN\r\n", b"A" * 10000 + b"\r\n",
                     b"\r\n" * 50, b"QUIT\r\n"):
            sock.sendall(line.replace(b"\n", b"") + b"\r\n" if b"\r\n" not in line else line)
        read_reply(sock, limit=1 << 16)


def _oversized_http(port: int) -> None:
    sock = connect(port, "127.0.0.6", timeout=30)
    with sock:
        sock.sendall(b"POST /enroll HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 20000000\r\n\r\n" + b"x" * 32768)
        assert read_reply(sock).startswith(b"HTTP/1.1 413")


def _oversized_smtp(relay, api_key: str) -> None:
    """A member's message over smtp.maxMessageSize: refused with 552, counted only when it is."""
    big = message(f"big@{DOMAIN}", "someone@recipient.test", body=("y" * 70 + "\r\n") * (MAX_MESSAGE // 60))
    with session(relay, "submission") as s:
        s.login(DOMAIN, api_key)
        try:
            s.sendmail(f"big@{DOMAIN}", ["someone@recipient.test"], big)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as refused:
            assert refused.smtp_code == 552, refused
            return
    raise AssertionError("an oversized message was accepted")


def test_the_relay_keeps_serving_under_a_mixed_hostile_load(mail_relay, dns_server, sink_mx, no_warmup):
    relay = mail_relay({**no_warmup, "smtp": {"maxMessageSize": MAX_MESSAGE, "sessionTimeout": "5s"},
                        "http": {"headerTimeout": "2s", "maxConnectionsPerClient": 8, "maxConnections": 64}})
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    admin = {"Authorization": f"Bearer {relay.admin_token}"}
    sent: list[str] = []
    answered: list[int] = []

    def legit_mail(listener: str) -> None:
        subject = f"soak {listener} {len(sent)}"
        with session(relay, listener) as s:
            s.login(DOMAIN, member["apiKey"])
            assert s.sendmail(f"app@{DOMAIN}", [f"user{len(sent)}@recipient.test"],
                              message(f"app@{DOMAIN}", "user@recipient.test", subject=subject)) == {}
        sent.append(subject)

    def legit_http() -> None:
        for path, headers in (("/enroll", {}), ("/admin/members", admin),
                              ("/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:*", {})):
            status, body, _ = request(relay.ports["http"], "GET", path, headers=headers)
            assert status == 200, (path, status, body[:200])
            answered.append(status)

    legit_mail("submission")  # caches, keys and imports warm before the baseline
    legit_http()
    sink_mx.wait_for(1)
    rss_before, _ = _usage(relay.proc.pid)
    files_before = _open_files(relay.proc.pid)

    clients, held = Clients(), {name: [] for name in ("submission", "smtps", "mx")}
    with Slowloris(relay.ports["http"], ["127.0.0.20", "127.0.0.21", "127.0.0.22"], per_source=10):
        for name in ("submission", "smtps", "mx"):
            port, tls = relay.ports[name], name == "smtps"
            clients.run(f"partial-{name}", lambda p=port, t=tls, h=held[name]: _partial_smtp(p, "127.0.0.3", t, h), 1)
            clients.run(f"garbage-{name}", lambda p=port, t=tls: _garbage_smtp(p, "127.0.0.4", t), 0.5)
        clients.run("oversized-http", lambda: _oversized_http(relay.ports["http"]), 1)
        clients.run("oversized-smtp", lambda: _oversized_smtp(relay, member["apiKey"]), 2)
        clients.run("legit-submission", lambda: legit_mail("submission"), 1)
        clients.run("legit-smtps", lambda: legit_mail("smtps"), 1)
        clients.run("legit-http", legit_http, 0.3)
        clients.stopping.wait(HOSTILE_SECONDS)
        clients.stop()
    for sockets in held.values():
        for sock in sockets:
            sock.close()

    assert clients.failures == []
    assert len(sent) >= 10 and len(answered) >= 30, clients.counts
    delivered = {raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
                 for _, raw in sink_mx.wait_for(len(sent), timeout=120) if b"Subject: soak" in raw}
    assert delivered >= set(sent)
    assert clients.counts.get("oversized-http", 0) >= 5 and clients.counts.get("oversized-smtp", 0) >= 3
    assert relay.logs("http.request_timed_out") and relay.logs("http.connection_refused")

    # The relay closes what the hostile clients left: wait for the sockets to go, then judge. Database files
    # may be open a few more times than at the start (each function thread keeps its own connection, and the
    # load started more threads), never once per hostile client.
    deadline = time.monotonic() + 60
    while _open_files(relay.proc.pid)["socket"] > files_before["socket"] + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    files_after = _open_files(relay.proc.pid)
    grown = files_after - files_before
    assert grown["socket"] <= 2 and grown["pipe"] <= 2, grown
    assert all(count <= 6 for count in grown.values()), grown
    rss_after, _ = _usage(relay.proc.pid)
    assert rss_after <= rss_before * 1.5 + 30_000, (rss_before, rss_after)
    assert relay.proc.poll() is None and not relay.logs("function.error")
