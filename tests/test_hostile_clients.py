"""The relay keeps serving under hostile clients (issue 13, the SMTP side).

A client that opens connection after connection is held to its cap on every
listener while another address still gets its 220 and its mail delivered;
a client that sends an over-long AUTH line gets a reply we wrote, never a
Python exception's text; when descriptors do run out, the log says so once
per interval instead of once per attempt. Client addresses are distinct
loopback addresses (127.0.0.2, 127.0.0.3, ...), bound as the socket's source.
"""
from __future__ import annotations

import io
import json
import os
import resource
import signal
import smtplib
import socket

import pytest

from harness.relay import Relay, enroll_published
from harness.smtp import insecure, message
from runtime import client_connection_table as table
from runtime.connection_limits import ConnectionLimits
from runtime.jsonlog import JsonLog
from runtime.repeated_events import RepeatedEvent

DID = "did:plc:hostileclientshostilecli"
DOMAIN = "member.example"
TO = "friend@recipient.test"
PER_CLIENT, TOTAL = 4, 10
CAPS = {"smtp": {"maxConnectionsPerClient": PER_CLIENT, "maxConnections": TOTAL}}
PER_CLIENT_REPLY = b"421 4.7.0 Too many connections from your address, try again later\r\n"
FULL_REPLY = b"421 4.7.0 Too many connections, try again later\r\n"


class Client:
    """One raw connection from `source`, holding its socket and reader so closing it really closes it."""

    def __init__(self, relay: Relay, listener: str, source: str) -> None:
        sock = socket.create_connection(("127.0.0.1", relay.ports[listener]), timeout=30,
                                        source_address=(source, 0))
        if listener == "smtps":
            sock = insecure().wrap_socket(sock)
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.greeting = self.reader.readline()

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        reply = self.reader.readline()
        while reply[3:4] == b"-":
            reply = self.reader.readline()
        return reply

    def still_served(self) -> bool:
        try:
            return self.command(b"NOOP").startswith(b"250")
        except OSError:
            return False

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def smtp_from(relay: Relay, listener: str, source: str) -> smtplib.SMTP:
    port = relay.ports[listener]
    if listener == "smtps":
        s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.test", timeout=30, context=insecure(),
                             source_address=(source, 0))
    else:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30, source_address=(source, 0))
    s.ehlo()
    if listener == "submission":
        s.starttls(context=insecure())
        s.ehlo()
    return s


@pytest.fixture
def world(mail_relay, dns_server, no_warmup):
    relay = mail_relay({**no_warmup, **CAPS})
    return relay, enroll_published(relay, dns_server, DID, DOMAIN)


@pytest.mark.parametrize("listener", ["submission", "smtps", "mx"])
def test_idle_connections_past_the_cap_get_421_while_another_address_sends_mail(world, sink_mx, listener):
    relay, member = world
    flood = [Client(relay, listener, "127.0.0.2") for _ in range(PER_CLIENT)]
    assert all(c.greeting.startswith(b"220 ") for c in flood)
    refused = Client(relay, listener, "127.0.0.2")
    assert refused.greeting == PER_CLIENT_REPLY
    refused.close()
    relay.wait_for("smtp.connection_refused", listener=listener, peer="127.0.0.2", reason="per_client")

    if listener == "mx":
        other = smtp_from(relay, listener, "127.0.0.3")
        assert other.noop()[0] == 250
        other.quit()
    else:
        other = smtp_from(relay, listener, "127.0.0.3")
        other.login(DOMAIN, member["apiKey"])
        other.sendmail(f"noreply@{DOMAIN}", [TO], message(f"noreply@{DOMAIN}", TO, subject=f"via {listener}"))
        other.quit()
        (_, raw), = sink_mx.wait_for(1)
        assert f"Subject: via {listener}".encode() in raw

    for c in flood:
        c.close()
    relay.wait_for("smtp.disconnected", listener=listener, peer="127.0.0.2", count=PER_CLIENT)
    again = Client(relay, listener, "127.0.0.2")
    assert again.greeting.startswith(b"220 "), "a client's closed connections no longer count"
    again.close()


def test_the_listener_keeps_its_total_cap_across_addresses(world):
    relay, _ = world
    held = []
    for n in range(TOTAL):
        held.append(Client(relay, "mx", f"127.0.1.{2 + n // PER_CLIENT}"))
    assert all(c.greeting.startswith(b"220 ") for c in held)
    late = Client(relay, "mx", "127.0.1.200")
    assert late.greeting == FULL_REPLY
    late.close()
    (line,) = relay.wait_for("smtp.connection_refused", listener="mx", reason="total")
    assert line["open_connections"] == TOTAL
    for c in held:
        c.close()


def test_a_long_auth_continuation_gets_a_deliberate_reply_and_counts_as_a_failed_auth(world):
    relay, _ = world
    s = smtp_from(relay, "submission", "127.0.0.4")
    assert s.docmd("AUTH", "PLAIN")[0] == 334
    s.send(b"A" * 10_240 + b"\r\n")
    assert s.getreply() == (500, b"5.5.6 Authentication line too long")
    assert s.noop()[0] == 250, "the rest of the long line was not read as commands"
    s.quit()
    (line,) = relay.wait_for("smtp.auth", peer="127.0.0.4", result="too_long")
    assert line["failures"] == 1
    assert not relay.logs("smtp.session_error")
    assert not [raw for raw in relay.raw if "Separator is found" in raw]


def test_running_out_of_descriptors_is_logged_once_per_interval_and_the_relay_recovers(tmp_path, proofs):
    relay = Relay(tmp_path / "relay", config={"smtp": {"processes": 0, "maxConnectionsPerClient": 1000,
                                                       "maxConnections": 2000}}, proofs=proofs)
    relay.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
    flood: list[socket.socket] = []
    try:
        relay.start()
        # Connections past the descriptor limit wait in the listen backlog while accept() keeps failing.
        for n in range(200):
            flood.append(socket.create_connection(("127.0.0.1", relay.ports["mx"]), timeout=30,
                                                  source_address=(f"127.0.2.{1 + n % 200}", 0)))
        first, second = relay.wait_for("smtp.resource_exhausted", listener="mx", count=2, timeout=30)[:2]
        assert first["error"] == "Too many open files" and first["open_files_limit"] == 160
        assert second["suppressed"] >= 1, "failed accepts between two lines are counted, not logged"
        assert len(relay.logs("smtp.resource_exhausted")) <= 3
        sent = list(flood)
        for sock in flood:
            sock.close()
        flood.clear()
        relay.wait_for("smtp.disconnected", listener="mx", count=len(sent), timeout=60)
        s = smtplib.SMTP("127.0.0.1", relay.ports["mx"], local_hostname="client.test", timeout=30)
        assert s.noop()[0] == 250
        s.quit()
    finally:
        for sock in flood:
            sock.close()
        relay.stop()


def test_an_implicit_tls_client_that_never_finishes_its_handshake_holds_its_place(world):
    relay, _ = world
    stalled = [socket.create_connection(("127.0.0.1", relay.ports["smtps"]), source_address=("127.0.0.5", 0))
               for _ in range(PER_CLIENT)]
    try:
        refused = Client(relay, "smtps", "127.0.0.5")
        assert refused.greeting == PER_CLIENT_REPLY
        refused.close()
    finally:
        for sock in stalled:
            sock.close()


def _edges_holding(relay: Relay, listener: str, clients: list[Client]) -> dict[int, int]:
    """Which edge process holds each client's connection (by socket inode, from /proc), as pid -> count."""
    ports = {c.sock.getsockname()[1] for c in clients}
    inodes = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local_port == relay.ports[listener] and remote_port in ports:
            inodes.add(f"socket:[{fields[9]}]")
    held = {}
    for pid in {line["pid"] for line in relay.logs("edge.started")}:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except FileNotFoundError:
            continue  # an edge that has since died
        held[pid] = sum(link in inodes for link in links)
    return held


def test_one_address_gets_its_cap_once_across_all_edge_processes(mail_relay):
    relay = mail_relay({"smtp": {"processes": 2, "maxConnectionsPerClient": PER_CLIENT, "maxConnections": TOTAL}})
    relay.wait_for("edge.started", count=2)
    spread = False
    for attempt in range(10):  # until the kernel has handed the address's connections to both edges
        clients = [Client(relay, "submission", "127.0.0.6") for _ in range(2 * PER_CLIENT)]
        admitted = [c for c in clients if c.greeting.startswith(b"220 ")]
        assert len(admitted) == PER_CLIENT, [c.greeting for c in clients]
        assert all(c.greeting == PER_CLIENT_REPLY for c in clients if c not in admitted)
        held = _edges_holding(relay, "submission", admitted)
        assert sum(held.values()) == PER_CLIENT
        spread = all(held.values()) and len(held) == 2
        for c in clients:
            c.close()
        relay.wait_for("smtp.disconnected", peer="127.0.0.6", count=PER_CLIENT * (attempt + 1))
        if spread:
            break
    assert spread, "the kernel gave every connection to one edge ten times over"
    refusing = {line["pid"] for line in relay.logs("smtp.connection_refused", peer="127.0.0.6")}
    assert refusing and all(line["held"] == PER_CLIENT for line in relay.logs("smtp.connection_refused",
                                                                             peer="127.0.0.6"))


def test_connections_of_an_edge_killed_outright_no_longer_count_once_its_successor_starts(mail_relay):
    relay = mail_relay({"smtp": {"processes": 2, "maxConnectionsPerClient": PER_CLIENT, "maxConnections": TOTAL}})
    relay.wait_for("edge.started", count=2)
    held = [Client(relay, "submission", "127.0.0.8") for _ in range(PER_CLIENT)]
    assert all(c.greeting.startswith(b"220 ") for c in held)
    victim = max(_edges_holding(relay, "submission", held).items(), key=lambda item: item[1])[0]
    os.kill(victim, signal.SIGKILL)
    relay.wait_for("edge.restarted", timeout=30)
    relay.wait_for("edge.started", count=3, timeout=30)
    alive = [c for c in held if c.still_served()]
    assert len(alive) < PER_CLIENT, "the killed edge held some of them"
    fresh = [Client(relay, "submission", "127.0.0.8") for _ in range(PER_CLIENT - len(alive) + 1)]
    assert [c.greeting.startswith(b"220 ") for c in fresh] == [True] * (PER_CLIENT - len(alive)) + [False]
    assert fresh[-1].greeting == PER_CLIENT_REPLY
    for c in held + fresh:
        c.close()


# The pure counting, fast.

def test_an_address_is_capped_ipv6_per_64_and_a_release_counts_once():
    limits = ConnectionLimits(per_client=2, total=3)
    first, _ = limits.admit("2001:db8:1:2::a")
    second, _ = limits.admit("2001:db8:1:2::b")
    assert first and second
    assert limits.admit("2001:db8:1:2:ffff::1") == (None, "per_client")
    third, _ = limits.admit("192.0.2.1")
    assert third and limits.admit("192.0.2.2") == (None, "total")
    first.release()
    first.release()
    assert limits.count == 2 and limits.held_by("2001:db8:1:2::c") == 1
    assert limits.admit("::ffff:192.0.2.1")[0] is not None, "a mapped IPv4 address is that address"
    assert limits.admit("192.0.2.1") == (None, "per_client")
    assert limits.admit("192.0.2.3") == (None, "total")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_event_is_logged_once_per_interval_with_the_count_it_stands_for():
    lines = io.StringIO()
    clock = Clock()
    event = RepeatedEvent(JsonLog(lines), "smtp.resource_exhausted", interval=10.0, clock=clock)
    logged = []
    for _ in range(1000):
        logged.append(event.happened("mx", listener="mx"))
        clock.now += 0.025
    logged.append(event.happened("submission", listener="submission"))
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert sum(logged) == len(records) == 4
    assert [(r["listener"], r["suppressed"]) for r in records] == [
        ("mx", 0), ("mx", 399), ("mx", 399), ("submission", 0)]


def test_the_edges_share_one_count_per_client_and_a_new_edge_forgets_its_dead_predecessors(tmp_path):
    path = tmp_path / table.FILE_NAME
    table.create(path, processes=2, rows=64)
    first, second = table.ClientConnectionTable(path, 0), table.ClientConnectionTable(path, 1)
    assert first.take("submission", "addr:192.0.2.1", 3) and first.take("submission", "addr:192.0.2.1", 3)
    assert second.take("submission", "addr:192.0.2.1", 3)
    assert not second.take("submission", "addr:192.0.2.1", 3) and not first.take("submission", "addr:192.0.2.1", 3)
    assert second.take("smtps", "addr:192.0.2.1", 3), "each listener counts on its own"
    first.give_back("submission", "addr:192.0.2.1")
    assert second.take("submission", "addr:192.0.2.1", 3)
    assert second.held("submission", "addr:192.0.2.1") == 3
    first.close()
    successor = table.ClientConnectionTable(path, 0)  # the first edge died holding one; its successor starts
    assert successor.held("submission", "addr:192.0.2.1") == 2 and successor.held("smtps", "addr:192.0.2.1") == 1


def test_the_shared_table_keeps_every_count_through_inserts_and_deletes():
    """Many addresses hashed into few rows (probe chains and shifted deletes), checked against a plain Counter."""
    import random
    import tempfile
    from collections import Counter
    from pathlib import Path

    rng = random.Random(13)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / table.FILE_NAME
        table.create(path, processes=1, rows=64)
        counts, expected = table.ClientConnectionTable(path, 0), Counter()
        for _ in range(20_000):
            key = f"addr:10.0.0.{rng.randrange(40)}"
            if rng.random() < 0.5 and expected[key]:
                counts.give_back("mx", key)
                expected[key] -= 1
            elif counts.take("mx", key, 5):
                expected[key] += 1
            else:
                assert expected[key] == 5
        assert all(counts.held("mx", f"addr:10.0.0.{n}") == expected[f"addr:10.0.0.{n}"] for n in range(40))
