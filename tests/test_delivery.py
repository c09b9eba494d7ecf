"""Mail goes out: signed four times, spooled, delivered to the recipient's MX, retried, never lost."""
from __future__ import annotations

import email
import json
import re
import sqlite3
import time

import pytest

from harness.relay import enroll_published
from harness.smtp import message, session
from harness.swaks import swaks
from harness.verifiers import by_key, mail_dkim, mailauth

DID = "did:plc:deliverdeliverdeliverdel"
DOMAIN = "member.example"


def submit(relay, member, to="friend@recipient.test", listener="submission", subject="hello", extra="",
           frm=None) -> str:
    s = session(relay, listener)
    s.login(DOMAIN, member["apiKey"])
    recipients = [to] if isinstance(to, str) else to
    s.mail(f"noreply@{DOMAIN}")
    for rcpt in recipients:
        assert s.rcpt(rcpt)[0] == 250
    code, text = s.data(message(frm or f"PDS <noreply@{DOMAIN}>", ", ".join(recipients), subject=subject,
                                extra=extra))
    s.quit()
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[1]


def test_message_arrives_signed_four_times_and_verifies_independently(mail_relay, dns_server, sink_mx):
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    result = swaks("--server", f"127.0.0.1:{relay.ports['submission']}", "--tls", "--auth", "PLAIN",
                   "--auth-user", DOMAIN, "--auth-password", member["apiKey"],
                   "--from", f"noreply@{DOMAIN}", "--to", "friend@recipient.test",
                   "--header", "Subject: Confirm your email", "--body", "Your code is 123456")
    assert result.returncode == 0, result.output
    (meta, raw), = sink_mx.wait_for(1)

    msg = email.message_from_bytes(raw)
    assert msg["X-Atmos-Member-Did"] == DID
    assert msg["Feedback-ID"] == f"transactional:{DID}:{DOMAIN}:atmosphere-mail"
    signatures = msg.get_all("DKIM-Signature")
    assert len(signatures) == 4
    for sig in signatures:
        signed = re.search(r"h=([^;]+);", sig.replace("\r\n", "").replace("\n", "")).group(1)
        names = {h.strip().lower() for h in signed.split(":")}
        assert {"from", "to", "subject", "date", "message-id", "x-atmos-member-did", "feedback-id"} <= names

    selector = member["selector"]
    op = relay.logs("operator_dkim.first_boot")[0]["records"]
    op_selectors = [r["name"].split("._domainkey.")[0] for r in op]
    expected_rsa = {(DOMAIN, selector + "r"), ("atmos.test", op_selectors[0])}
    expected_all = expected_rsa | {(DOMAIN, selector + "e"), ("atmos.test", op_selectors[1])}

    perl = by_key(mail_dkim(raw, dns_server.port))
    assert {k: perl[k] for k in expected_rsa} == {k: "pass" for k in expected_rsa}, perl
    node = by_key(mailauth(raw, dns_server.port))
    assert {k: node.get(k) for k in expected_all} == {k: "pass" for k in expected_all}, node

    assert meta["helo"] == "relay.atmos.test"
    assert meta["tls"] is True
    assert re.fullmatch(r"bounces\+[0-9A-F]{19}\.0-[0-9a-f]{10}@atmos\.test", meta["mail_from"])
    assert meta["rcpt_tos"] == ["friend@recipient.test"]
    line = relay.wait_for("delivery.result", status="delivered")[0]
    assert line["recipient"] == "friend@recipient.test" and line["mx"] == "mx.recipient.test"
    assert line["code"] == 250 and line["attempt"] == 1 and line["message_id"] == msg["Message-ID"]


def test_tampering_breaks_every_signature(mail_relay, dns_server, sink_mx):
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member, subject="original subject")
    (_, raw), = sink_mx.wait_for(1)
    forged = raw.replace(b"original subject", b"forged subject")
    assert set(by_key(mailauth(forged, dns_server.port)).values()) == {"fail"}
    rsa = by_key(mail_dkim(forged, dns_server.port))
    assert all(v == "fail" for (d, s), v in rsa.items() if s.endswith("r"))
    body_changed = raw.replace(b"Hi there.", b"Hi there, click here.")
    assert "pass" not in set(by_key(mailauth(body_changed, dns_server.port)).values())


def test_missing_message_id_and_date_are_added_and_spoofed_attribution_is_dropped(mail_relay, dns_server,
                                                                                  sink_mx):
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    s = session(relay, "smtps")
    s.login(DID, member["apiKey"])
    raw_msg = (f"From: noreply@{DOMAIN}\r\nTo: friend@recipient.test\r\nSubject: bare\r\n"
               f"X-Atmos-Member-Did: did:plc:someoneelsesomeoneelsesom\r\nFeedback-ID: fake\r\n"
               f"Bcc: secret@recipient.test\r\n\r\nbody\r\n").encode()
    assert s.sendmail(f"noreply@{DOMAIN}", ["friend@recipient.test"], raw_msg) == {}
    s.quit()
    (_, raw), = sink_mx.wait_for(1)
    msg = email.message_from_bytes(raw)
    assert msg.get_all("X-Atmos-Member-Did") == [DID]
    assert len(msg.get_all("Feedback-ID")) == 1 and msg["Feedback-ID"].startswith("transactional:")
    assert msg["Bcc"] is None
    assert re.fullmatch(rf"<\d{{14}}\.[0-9a-f]{{16}}@{re.escape(DOMAIN)}>", msg["Message-ID"])
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == pytest.approx(time.time(), abs=120)
    assert set(by_key(mailauth(raw, dns_server.port)).values()) == {"pass"}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
def test_one_connection_carries_several_messages_each_with_its_own_verp(mail_relay, dns_server, sink_mx,
                                                                         pipelining):
    sink_mx.behave(pipelining=pipelining)
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    queue_id = submit(relay, member, to=["a@recipient.test", "b@recipient.test", "c@recipient.test"])
    received = sink_mx.wait_for(3)
    assert [meta["pipelined"] for meta, _ in received] == [pipelining] * 3
    senders = sorted(meta["mail_from"] for meta, _ in received)
    assert [s.split(".")[1].split("-")[0] for s in senders] == ["0", "1", "2"]
    assert all(s.startswith(f"bounces+{queue_id}.") for s in senders)
    assert sorted(m["rcpt_tos"][0] for m, _ in received) == ["a@recipient.test", "b@recipient.test",
                                                             "c@recipient.test"]
    deliveries = relay.wait_for("delivery.result", status="delivered", count=3)
    assert len({d["request_id"] for d in deliveries}) == 1


def test_deferral_then_delivery_when_the_mx_recovers(mail_relay, dns_server, sink_mx):
    sink_mx.behave(rcpt={"*": "451 4.3.0 Try again later"})
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member)
    deferred = relay.wait_for("delivery.result", status="deferred", count=2, timeout=30)
    assert deferred[0]["code"] == 451 and deferred[1]["attempt"] == 2
    assert deferred[0]["next_attempt_at"] is not None
    sink_mx.behave()
    sink_mx.wait_for(1, timeout=30)
    done = relay.wait_for("delivery.result", status="delivered", timeout=30)[0]
    assert done["attempt"] >= 3
    queue = relay.cli_json("queue", "--state", "delivered")
    assert queue["summary"] == {"delivered": 1}


def test_a_dead_mx_is_deferred_not_bounced(mail_relay, dns_server, sink_mx):
    sink_mx.stop()
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member)
    line = relay.wait_for("delivery.result", status="deferred", timeout=30)[0]
    assert line["code"] == 451 and line["enhanced"] == "4.4.1"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
def test_5xx_fails_at_once_and_counts_as_a_bounce(mail_relay, dns_server, sink_mx, pipelining):
    sink_mx.behave(rcpt={"nobody@": "550 5.1.1 <nobody@recipient.test>: Recipient address rejected: User unknown"},
                   pipelining=pipelining)
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member, to="nobody@recipient.test")
    failed = relay.wait_for("delivery.result", status="failed", timeout=30)[0]
    assert failed["code"] == 550 and failed["enhanced"] == "5.1.1" and failed["attempt"] == 1
    # Settled before it was logged: nothing is left queued, so no second attempt can come.
    assert relay.cli_json("queue", "--state", "queued")["recipients"] == []
    assert len(relay.logs("delivery.result")) == 1
    db = sqlite3.connect(relay.state / "relay.sqlite")
    events = [json.loads(v) for (v,) in db.execute(
        "SELECT value FROM outbox WHERE topic = 'osprey.actions_input' ORDER BY id")]
    bounce = next(e["data"] for e in events if e["data"]["action_name"] == "bounce_received")
    assert bounce["data"]["kind"] == "hard" and bounce["data"]["status"] == "5.1.1"
    assert bounce["data"]["reason"] == "mailbox unknown"
    assert relay.cli_json("queue")["spool"]["messages"] == 0
    s = session(relay, "submission")
    s.login(DOMAIN, member["apiKey"])
    s.mail(f"app@{DOMAIN}")
    code, text = s.rcpt("nobody@recipient.test")
    assert code == 550 and text.startswith(b"5.7.1 Recipient nobody@recipient.test is on this member's suppression")
    s.quit()


def test_expired_after_max_age(mail_relay, dns_server, sink_mx):
    sink_mx.behave(rcpt={"*": "450 4.2.1 Mailbox busy"})
    relay = mail_relay({"delivery": {"maxAge": "3s", "retryIntervals": ["1s"]}})
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member)
    expired = relay.wait_for("delivery.result", status="expired", timeout=30)[0]
    assert expired["code"] == 450
    assert relay.cli_json("queue")["summary"] == {"expired": 1}
    assert relay.cli_json("queue")["spool"]["messages"] == 0


def test_null_mx_and_unknown_domain_fail_permanently(mail_relay, dns_server, sink_mx):
    dns_server.replace("nomail.test", "MX", "0 .")
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member, to="x@nomail.test")
    submit(relay, member, to="x@nowhere-at-all.test")
    failed = {f["recipient"]: f for f in relay.wait_for("delivery.result", status="failed", count=2)}
    assert failed["x@nomail.test"]["enhanced"] == "5.1.10"
    assert failed["x@nowhere-at-all.test"]["enhanced"] == "5.1.2"


def test_domain_without_mx_is_delivered_to_its_address(mail_relay, dns_server, sink_mx):
    dns_server.replace("plain.test", "A", "127.0.0.1")
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    submit(relay, member, to="x@plain.test")
    (meta, _), = sink_mx.wait_for(1)
    assert meta["rcpt_tos"] == ["x@plain.test"]
    assert relay.wait_for("delivery.result", status="delivered")[0]["mx"] == "plain.test"


def test_dns_failure_defers(mail_relay, dns_server, sink_mx):
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    dns_server.stop()
    submit(relay, member)
    line = relay.wait_for("delivery.result", status="deferred", timeout=30)[0]
    assert line["enhanced"] == "4.4.3"


def test_kill_9_after_250_loses_nothing(mail_relay, dns_server, sink_mx, no_warmup):
    """The MX is down while mail is accepted; the relay is killed; the MX comes back; all is delivered once."""
    sink_mx.stop()
    relay = mail_relay(no_warmup)
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    accepted = [submit(relay, member, to=f"r{i}@recipient.test", subject=f"n{i}") for i in range(12)]
    relay.wait_for("delivery.result", status="deferred")
    relay.kill()
    sink_mx.start()
    relay.restart()
    delivered = relay.wait_for("delivery.result", status="delivered", count=12, timeout=60)
    # Every recipient is settled, so nothing more will be sent: the MX holds all there will ever be.
    assert relay.cli_json("queue", "--state", "queued")["recipients"] == []
    received = sink_mx.messages()
    assert len(received) == 12
    subjects = sorted(email.message_from_bytes(raw)["Subject"] for _, raw in received)
    assert subjects == sorted(f"n{i}" for i in range(12))
    assert relay.cli_json("queue")["summary"] == {"delivered": 12}
    assert sorted(line["queue_id"] for line in delivered) == sorted(accepted)  # the ids the 250s named


def test_spool_segments_are_reclaimed_once_delivered(mail_relay, dns_server, sink_mx, no_warmup):
    """A segment goes when no writer holds it and no queued message points into it."""
    relay = mail_relay(no_warmup)
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    for i in range(3):
        submit(relay, member, to=f"r{i}@recipient.test")
    relay.wait_for("delivery.result", status="delivered", count=3)
    spool = relay.cli_json("queue")["spool"]
    assert spool["messages"] == 0 and spool["segments"] >= 1
    before = {p.name for p in (relay.state / "queue" / "segments").iterdir()}
    relay.stop()
    relay.restart()
    recovered = relay.wait_for("spool.recovered")[-1]
    assert recovered["segments_reaped"] == len(before) and recovered["bytes_reaped"] > 0
    assert not before & {p.name for p in (relay.state / "queue" / "segments").iterdir()}


def test_mail_spooled_by_the_file_per_message_layout_is_delivered(mail_relay, dns_server, sink_mx, no_warmup):
    """An upgrade from `queue/messages/<id>.msg` files: what was queued there is moved and delivered."""
    relay = mail_relay(no_warmup)
    enroll_published(relay, dns_server, DID, DOMAIN)
    relay.stop()
    queue_id, now = "0190000000001ABCDEF12", time.time()
    legacy = relay.state / "queue" / "messages"
    legacy.mkdir()
    envelope = {"did": DID, "member_domain": DOMAIN, "message_id": "<legacy@x>", "mail_from": f"app@{DOMAIN}",
                "rcpt_tos": ["old@recipient.test"], "received_at": now, "queue_id": queue_id}
    raw = message(f"app@{DOMAIN}", "old@recipient.test", subject="spooled before the upgrade")
    (legacy / f"{queue_id}.msg").write_bytes(json.dumps(envelope).encode() + b"\n" + raw)
    (legacy / "0190000000002ABCDEF12.msg").write_bytes(b"{}\nnever acknowledged")
    with sqlite3.connect(relay.state / "relay.sqlite") as db:
        db.execute("INSERT INTO spool_recipients (queue_id, recipient, route, state, attempts, next_attempt_at,"
                   " created_at, updated_at) VALUES (?, 'old@recipient.test', 'recipient.test', 'queued', 0, ?, ?, ?)",
                   (queue_id, now, now, now))
    relay.restart()
    assert relay.wait_for("spool.recovered")[-1]["legacy_moved"] == 1
    (meta, raw_received), = sink_mx.wait_for(1)
    assert meta["rcpt_tos"] == ["old@recipient.test"]
    assert email.message_from_bytes(raw_received)["Subject"] == "spooled before the upgrade"
    assert not legacy.exists()


def test_big_messages_fill_segments_and_arrive_whole(mail_relay, dns_server, sink_mx, no_warmup):
    """Three 4.5 MB messages: a full segment is retired and a new one begun; every message arrives intact."""
    relay = mail_relay(no_warmup)
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    bodies = {}
    for i in range(3):
        body = "".join(f"{i} line {n:07d} " + "x" * 60 + "\r\n" for n in range(60_000))
        s = session(relay, "submission")
        s.login(DOMAIN, member["apiKey"])
        assert s.sendmail(f"noreply@{DOMAIN}", [f"big{i}@recipient.test"],
                          message(f"PDS <noreply@{DOMAIN}>", f"big{i}@recipient.test", subject=f"big {i}",
                                  body=body)) == {}
        s.quit()
        bodies[f"big {i}"] = body
    received = sink_mx.wait_for(3, timeout=60)
    for _, raw in received:
        assert raw.replace(b"\r\n", b"\n").endswith(bodies[email.message_from_bytes(raw)["Subject"]]
                                                     .replace("\r\n", "\n").encode())
    assert relay.cli_json("queue")["spool"]["segments"] >= 2
    relay.stop()
    relay.restart()
    assert relay.wait_for("spool.recovered")[-1]["segments_reaped"] >= 2
    assert relay.cli_json("queue")["spool"] == {"messages": 0, "segments": 0, "segment_bytes": 0}
