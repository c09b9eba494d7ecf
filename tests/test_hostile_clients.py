"""The relay keeps serving under hostile clients (issue 13, the SMTP side).

A client that opens connection after connection is held to its cap on every
listener while another address still gets its 220 and its mail delivered;
a client that sends an over-long AUTH line gets a reply we wrote, never a
Python exception's text; when descriptors do run out, the log says so once
per interval instead of once per attempt. Client addresses are distinct
loopback addresses (127.0.0.2, 127.0.0.3, ...), bound as the socket's source.
"""
from __future__ import annotations

import smtplib

import pytest

from harness.relay import Relay, enroll_published
from harness.smtp import insecure

DID = "did:plc:hostileclientshostilecli"
DOMAIN = "member.example"
TO = "friend@recipient.test"


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
    relay = mail_relay(no_warmup)
    return relay, enroll_published(relay, dns_server, DID, DOMAIN)


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
