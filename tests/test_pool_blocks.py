"""A provider refusing the pool's mail is an operator alert, never a suppression; a mailbox that stays full
or suspended is suppressed after a few bounces. Runbook: "Mail is not being delivered"."""
from __future__ import annotations

import re
import smtplib

import pytest

from harness.relay import enroll_published, events_of
from harness.smtp import message, session

DID = "did:plc:poolblockspoolblockspool"
DOMAIN = "poolblocks.example"
SPAMHAUS = "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"


@pytest.fixture
def world(mail_relay, dns_server, sink_mx, no_warmup):
    def start(config: dict | None = None):
        relay = mail_relay({**no_warmup, **(config or {})})
        return relay, enroll_published(relay, dns_server, DID, DOMAIN)
    return start


def _submit(relay, member, to: str) -> None:
    s = session(relay, "submission")
    s.login(DOMAIN, member["apiKey"])
    s.sendmail(f"noreply@{DOMAIN}", [to], message(f"PDS <noreply@{DOMAIN}>", to, subject="Confirm your email"))
    s.quit()


def _rcpt(relay, member, to: str) -> tuple[int, bytes]:
    s = session(relay, "submission")
    s.login(DOMAIN, member["apiKey"])
    s.mail(f"noreply@{DOMAIN}")
    reply = s.rcpt(to)
    s.quit()
    return reply


def _blocks(relay) -> list[dict]:
    listed = relay.cli_json("pool", "blocks")
    assert listed == relay.http_json("/admin/pool")
    return listed["blocks"]


def test_a_block_at_delivery_is_an_alert_until_the_provider_takes_mail_again(world, sink_mx):
    sink_mx.behave(rcpt={"*": SPAMHAUS})
    relay, member = world()
    _submit(relay, member, "ann@recipient.test")
    alert = relay.wait_for("pool.blocked", provider="recipient.test")[0]
    assert alert["reason"] == "blocked" and alert["first"] and "spamhaus" in alert["reply"]
    _submit(relay, member, "bob@recipient.test")
    relay.wait_for("delivery.result", status="failed", count=2)
    assert len(relay.logs("pool.blocked")) == 1  # once per provider per alertInterval
    [block] = _blocks(relay)
    assert (block["provider"], block["reason"], block["replies"], block["source"]) == (
        "recipient.test", "blocked", 2, "smtp")
    assert block["since"] == alert["since"] and block["lastRecipient"] == "bob@recipient.test"
    assert block["lastMember"] == DID and "zen.spamhaus.org" in block["lastReply"]
    status, page, _ = relay.http("GET", "/admin/pool", headers={"Accept": "text/html"})
    assert status == 200 and 'data-provider="recipient.test"' in page and "zen.spamhaus.org" in page
    [event] = events_of(relay, "pool_blocked")
    assert (event["sender_did"], event["provider"], event["reason"]) == (DID, "recipient.test", "blocked")
    # About the pool, not the address: ann may still be written to, and is.
    assert _rcpt(relay, member, "ann@recipient.test")[0] == 250
    sink_mx.behave()
    _submit(relay, member, "ann@recipient.test")
    relay.wait_for("delivery.result", status="delivered")
    cleared = relay.wait_for("pool.unblocked", provider="recipient.test")[0]
    assert cleared["reason"] == "blocked" and cleared["since"] == alert["since"]
    assert _blocks(relay) == []
    assert [e["provider"] for e in events_of(relay, "pool_unblocked")] == ["recipient.test"]


def test_a_mailbox_that_stays_full_is_suppressed_after_the_configured_repeats(world, sink_mx):
    sink_mx.behave(rcpt={"full@": "552 5.2.2 <full@recipient.test>: Mailbox full"})
    relay, member = world({"suppression": {"softRepeats": 3, "softWindowDays": 7}})
    for attempt in (1, 2):
        _submit(relay, member, "full@recipient.test")
        relay.wait_for("delivery.result", status="failed", count=attempt)
        assert _rcpt(relay, member, "full@recipient.test")[0] == 250, attempt
    _submit(relay, member, "full@recipient.test")
    relay.wait_for("delivery.result", status="failed", count=3)
    code, text = _rcpt(relay, member, "full@recipient.test")
    assert code == 550 and b"suppression" in text
    [entry] = relay.http_json(f"/admin/member/{DID}/suppressions")["suppressions"]
    assert entry["recipient"] == "full@recipient.test" and entry["source"] == "bounce:smtp"
    assert entry["reason"].startswith("repeated soft bounce: mailboxfull (5.2.2) 3 times within 7 days")
    assert [b["reason"] for b in events_of(relay, "bounce_received")] == ["mailboxfull"] * 3
    assert _blocks(relay) == []


def _relayed(relay, member, sink, to: str) -> dict:
    before = len(sink.messages())
    _submit(relay, member, to)
    return sink.wait_for(before + 1, timeout=90)[-1][0]


def _dsn(verp: str, recipient: str, status: str, diagnostic: str, remote_mta: str) -> bytes:
    """A DSN as a provider's outbound MTA writes it after its MX refused the message."""
    return (f"From: MAILER-DAEMON@out.recipient.test\r\nTo: {verp}\r\nSubject: Undelivered Mail Returned to "
            "Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
            'boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n'
            "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; out.recipient.test\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
            f"Remote-MTA: dns; {remote_mta}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n"
            "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"From: noreply@{DOMAIN}\r\nTo: {recipient}\r\nSubject: Confirm your email\r\n\r\n--b--\r\n").encode()


def _mx_send(relay, verp: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", relay.ports["mx"], local_hostname="out.recipient.test", timeout=60) as s:
        assert s.sendmail("", [verp], raw) == {}


def test_a_dsn_reporting_a_block_is_the_recipients_bounce_not_a_block_of_the_pool(world, sink_mx):
    """The DSN is proven (it came back to the VERP address), but its Remote-MTA is a hop after the MX the relay
    delivered to, and whoever received the message can write one: no provider alert comes of it."""
    relay, member = world()
    meta = _relayed(relay, member, sink_mx, "cat@recipient.test")
    _mx_send(relay, meta["mail_from"], _dsn(
        meta["mail_from"], "cat@recipient.test", "5.7.1", "554 5.7.1 Message rejected: our IP reputation says "
        "the sending IP is on a block list", "mx-in.l.bigmail.example.net"))
    relay.wait_for("inbound.received", classification="bounce")  # logged once its transaction committed
    assert [(b["recipient"], b["reason"], b["source"]) for b in events_of(relay, "bounce_received")] == [
        ("cat@recipient.test", "blocked", "dsn")]
    assert _blocks(relay) == [] and events_of(relay, "pool_blocked") == [] and relay.logs("pool.blocked") == []
    assert _rcpt(relay, member, "cat@recipient.test")[0] == 250


def test_a_mailbox_suspended_again_and_again_is_suppressed_from_its_dsns(world, sink_mx):
    relay, member = world({"suppression": {"softRepeats": 2}})
    suspended = "552 5.2.1 <dog@recipient.test>: mailbox is suspended"
    first = _relayed(relay, member, sink_mx, "dog@recipient.test")
    _mx_send(relay, first["mail_from"], _dsn(first["mail_from"], "dog@recipient.test", "5.2.1", suspended,
                                             "mx.recipient.test"))
    relay.wait_for("inbound.received", classification="bounce")
    assert _rcpt(relay, member, "dog@recipient.test")[0] == 250
    second = _relayed(relay, member, sink_mx, "dog@recipient.test")
    _mx_send(relay, second["mail_from"], _dsn(second["mail_from"], "dog@recipient.test", "5.2.1", suspended,
                                              "mx.recipient.test"))
    relay.wait_for("inbound.received", classification="bounce", count=2)
    code, _ = _rcpt(relay, member, "dog@recipient.test")
    assert code == 550
    [entry] = relay.http_json(f"/admin/member/{DID}/suppressions")["suppressions"]
    assert re.match(r"repeated soft bounce: suspend \(5\.2\.1\) 2 times within 7 days", entry["reason"])
    assert entry["source"] == "bounce:dsn"
