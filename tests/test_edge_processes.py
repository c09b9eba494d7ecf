"""Submission and SMTPS in edge processes (`smtp.processes`): mail flows, edges restart, nothing is lost."""
from __future__ import annotations

import os
import signal
import smtplib
import socket
import sqlite3
import time

from test_delivery import DID, DOMAIN, submit

from harness.relay import enroll_published
from harness.smtp import session


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _edge_pids(relay) -> list[int]:
    return [line["pid"] for line in relay.logs("edge.started")]


def test_sessions_are_served_by_edge_processes_and_their_mail_is_delivered(mail_relay, dns_server, sink_mx,
                                                                           no_warmup):
    relay = mail_relay({**no_warmup, "smtp": {"processes": 2}})
    relay.wait_for("edge.started", count=2)
    main_pid = relay.proc.pid
    edges = set(_edge_pids(relay))
    assert len(edges) == 2 and main_pid not in edges
    listening = {(line["listener"], line["pid"]) for line in relay.logs("smtp.listening")}
    assert ("mx", main_pid) in listening
    assert {pid for name, pid in listening if name in ("submission", "smtps")} == edges

    member = enroll_published(relay, dns_server, DID, DOMAIN)
    for i in range(6):
        submit(relay, member, to=f"r{i}@recipient.test", subject=f"n{i}",
               listener="smtps" if i % 2 else "submission")
    assert len(sink_mx.wait_for(6, timeout=30)) == 6
    assert relay.cli_json("queue")["summary"] == {"delivered": 6}
    assert {line["pid"] for line in relay.logs("smtp.auth", result="ok")} <= edges
    # The edges' relay_attempt events went through the rules in the main process and were recorded.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with sqlite3.connect(relay.state / "relay.sqlite") as db:
            attempts = db.execute("SELECT COUNT(*) FROM relay_events WHERE sender_did = ?"
                                  " AND action_name = 'relay_attempt'", (DID,)).fetchone()[0]
        if attempts == 6:
            break
        time.sleep(0.1)
    assert attempts == 6


def test_a_killed_edge_is_restarted_and_connections_wait_for_it(mail_relay, dns_server, sink_mx, no_warmup):
    relay = mail_relay({**no_warmup, "smtp": {"processes": 1}})
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    edge, = _edge_pids(relay)
    os.kill(edge, signal.SIGKILL)
    # The socket stays bound by the main process: a client that connects now waits in the backlog.
    with socket.create_connection(("127.0.0.1", relay.ports["submission"]), timeout=30) as sock:
        sock.settimeout(30)
        assert sock.recv(512).startswith(b"220 ")
    exited, = relay.wait_for("edge.exited", pid=edge)
    assert exited["returncode"] == -signal.SIGKILL
    restarted, = relay.wait_for("edge.restarted")
    assert restarted["pid"] != edge
    submit(relay, member, subject="after the restart")
    assert len(sink_mx.wait_for(1, timeout=30)) == 1


def test_kill_9_of_the_relay_takes_its_edges_down_and_the_next_start_delivers(mail_relay, dns_server, sink_mx,
                                                                               no_warmup):
    sink_mx.stop()
    relay = mail_relay({**no_warmup, "smtp": {"processes": 2}})
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    for i in range(4):
        submit(relay, member, to=f"r{i}@recipient.test", subject=f"n{i}")
    edges = _edge_pids(relay)
    relay.kill()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in edges) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in edges), "an edge outlived the relay it served"
    sink_mx.start()
    relay.restart()
    assert len(sink_mx.wait_for(4, timeout=60)) == 4
    assert relay.cli_json("queue")["summary"] == {"delivered": 4}


def test_a_deploy_reaches_the_edges_before_it_is_reported_done(mail_relay, dns_server, no_warmup):
    relay = mail_relay({**no_warmup, "smtp": {"processes": 2}})
    relay.wait_for("edge.started", count=2)
    assert relay.cli_json("deploy")["deployed"] is True
    # The CLI returned only after every edge had reloaded.
    assert {line["pid"] for line in relay.logs("edge.deployed")} == set(_edge_pids(relay))
    s = session(relay, "submission")
    assert s.ehlo()[0] == 250
    s.quit()


def test_failed_logins_are_counted_across_edges(start_relay):
    relay = start_relay({"smtp": {"processes": 2, "authFailureLimit": 2, "authFailureDelay": 0.2}})
    relay.wait_for("edge.started", count=2)
    relay.enroll(DID, DOMAIN)
    for _ in range(5):  # a new connection each time: the kernel hands them to either edge
        s = session(relay, "submission")
        try:
            s.login(DOMAIN, "atmos_guess")
        except smtplib.SMTPAuthenticationError as err:
            assert err.smtp_code == 535
        s.close()
    refused = relay.wait_for("smtp.auth", result="invalid", count=5)
    assert [line["failures"] for line in refused] == [1, 2, 3, 4, 5]
    assert {line["pid"] for line in refused} <= set(_edge_pids(relay))
    assert relay.wait_for("smtp.auth_throttled", peer="127.0.0.1")


def _process(pid: int) -> tuple[str, int]:
    """(comm, parent pid) as /proc shows them."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    return comm, int(stat.rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _process(int(entry))[1] == pid:
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def test_edges_are_forks_of_the_fork_server_which_is_a_child_of_the_relay(start_relay):
    relay = start_relay({"smtp": {"processes": 2}})
    relay.wait_for("edge.started", count=2)
    server, = [pid for pid in _children(relay.proc.pid) if _process(pid)[0] == "atmos-forksrv"]
    for edge in _edge_pids(relay):
        assert _process(edge) == ("atmos-edge", server)
    s = session(relay, "submission")
    assert s.ehlo()[0] == 250
    s.quit()


def test_a_killed_fork_server_takes_its_edges_down_and_new_edges_take_over(mail_relay, dns_server, sink_mx,
                                                                             no_warmup):
    relay = mail_relay({**no_warmup, "smtp": {"processes": 1}})
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    edge, = _edge_pids(relay)
    server = _process(edge)[1]
    os.kill(server, signal.SIGKILL)
    relay.wait_for("edge.forkserver_lost", pid=server)
    exited, = relay.wait_for("edge.exited", pid=edge)
    assert exited["returncode"] == -signal.SIGKILL
    restarted, = relay.wait_for("edge.restarted")
    relay.wait_for("edge.started", pid=restarted["pid"])
    assert _process(restarted["pid"])[1] == relay.proc.pid  # a new interpreter, started by the relay itself
    submit(relay, member, subject="after the fork server died")
    assert len(sink_mx.wait_for(1, timeout=30)) == 1
