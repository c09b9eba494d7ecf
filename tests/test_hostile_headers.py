"""A member's message is read one way only: what the From: check reads is what is signed and delivered.

Each trick from the security probe (issue 12, sections 3 and 4) goes through a
real SMTP client to the running relay; the judge of what went out is Node's
mailauth reading the message the recipient's MX received.
"""
from __future__ import annotations

import base64
import socket

import pytest

from harness.relay import enroll_published
from harness.smtp import insecure, session
from harness.swaks import swaks
from harness.verifiers import by_key, mailauth, mailauth_from

DID = "did:plc:hostilehostilehostilehos"
DOMAIN = "member.example"
TO = "friend@recipient.test"
MEMBER_FROM = f"From: PDS <noreply@{DOMAIN}>\r\n".encode()
TAIL = f"To: {TO}\r\nSubject: hello\r\n\r\nHi there.\r\n".encode()

TRICKS = {
    "bare CR hides the member's From": (
        b"X-Note: x\rFrom: PDS <noreply@member.example>\r\njunk\r\nFrom: evil@other.test\r\n" + TAIL,
        "550 5.6.0 Malformed header section: line 1 holds a bare CR"),
    "junk line, then a foreign From": (
        MEMBER_FROM + b"this line has no colon\r\nFrom: evil@other.test\r\n" + TAIL,
        "550 5.6.0 Malformed header section: line 2 is neither a header field nor a continuation"),
    "space before the colon": (
        MEMBER_FROM + b"From : evil@other.test\r\n" + TAIL,
        "550 5.6.0 Malformed header section: line 2: white space before the colon of 'From'"),
    "LF-only line ends": (
        b"From: PDS <noreply@member.example>\nFrom : evil@other.test\nTo: friend@recipient.test\n\nHi\n",
        "550 5.6.0 Malformed header section: line 1 holds a bare LF"),
    "two From fields": (
        MEMBER_FROM + b"From: evil@other.test\r\n" + TAIL,
        "550 5.6.0 Malformed header section: 2 From: fields (RFC 5322 allows one)"),
    "two Sender fields": (
        MEMBER_FROM + b"Sender: a@member.example\r\nSender: evil@other.test\r\n" + TAIL,
        "550 5.6.0 Malformed header section: 2 Sender: fields (RFC 5322 allows one)"),
    "two Date fields": (
        MEMBER_FROM + b"Date: Mon, 30 Nov 2026 04:00:00 +0000\r\nDate: Mon, 30 Nov 2026 05:00:00 +0000\r\n" + TAIL,
        "550 5.6.0 Malformed header section: 2 Date: fields (RFC 5322 allows one)"),
    "From with no address": (
        b"From: undisclosed:;\r\n" + TAIL, "550 5.6.0 From: field is not a plain address list near 'undisclosed:;'"),
    "display name over a foreign address": (
        b"From: noreply@member.example <evil@other.test>\r\n" + TAIL,
        "550 5.6.0 From: field is not a plain address list near ' <evil@other.test>'"),
    "two at-signs": (
        b"From: evil@other.test@member.example\r\n" + TAIL,
        "550 5.6.0 From: field is not a plain address list near '@member.example'"),
    "NUL in the body": (MEMBER_FROM + TAIL + b"after\x00nul\r\n", "550 5.6.0 Message contains NUL bytes"),
}


@pytest.fixture
def world(mail_relay, dns_server):
    relay = mail_relay()
    return relay, enroll_published(relay, dns_server, DID, DOMAIN)


def send(relay, member, content: bytes, listener: str = "submission") -> tuple[int, str]:
    s = session(relay, listener)
    s.login(DOMAIN, member["apiKey"])
    s.mail(f"noreply@{DOMAIN}")
    assert s.rcpt(TO)[0] == 250
    code, text = s.data(content)
    s.quit()
    return code, f"{code} {text.decode()}"


def test_every_from_trick_of_the_probe_is_refused_with_a_5xx(world, sink_mx):
    relay, member = world
    for name, (content, reply) in TRICKS.items():
        assert send(relay, member, content)[1] == reply, name
    assert relay.cli_json("queue")["spool"]["messages"] == 0
    code, _ = send(relay, member, MEMBER_FROM + TAIL)
    assert code == 250
    (_, raw), = sink_mx.wait_for(1)
    assert b"evil@other.test" not in raw


def test_swaks_with_a_second_from_behind_a_junk_line_is_refused(world):
    relay, member = world
    result = swaks("--server", f"127.0.0.1:{relay.ports['submission']}", "--tls", "--auth", "PLAIN",
                   "--auth-user", DOMAIN, "--auth-password", member["apiKey"],
                   "--from", f"noreply@{DOMAIN}", "--to", TO,
                   "--data", f"From: noreply@{DOMAIN}\nnot a header\nFrom: evil@other.test\nSubject: x\n\nbody\n")
    assert result.saw("550 5.6.0 Malformed header section: line 2 is neither a header field nor a continuation")
    assert relay.cli_json("queue")["spool"]["messages"] == 0


def test_a_well_formed_message_reaches_the_receiver_with_the_members_from_and_passing_signatures(
        world, dns_server, sink_mx):
    relay, member = world
    folded = (f'From: "evil@other.test via PDS"\r\n <noreply@{DOMAIN}>\r\nTo: {TO}\r\n'
              f"Subject: a folded\r\n subject\r\n\r\nHi there.\r\n").encode()
    code, _ = send(relay, member, folded, listener="smtps")
    assert code == 250
    (_, raw), = sink_mx.wait_for(1)
    assert mailauth_from(raw, dns_server.port) == [f"noreply@{DOMAIN}"]
    results = by_key(mailauth(raw, dns_server.port))
    assert len(results) == 4 and set(results.values()) == {"pass"}, results


def test_bare_cr_dot_and_bare_line_ends_neither_cut_nor_split_the_delivered_mail(world, dns_server, sink_mx):
    relay, member = world
    smuggled = (b"first line\r.\r\nMAIL FROM:<evil@other.test>\r\nRCPT TO:<victim@recipient.test>\r\nDATA\r\n"
                b"From: evil@other.test\r\n\r\nsmuggled\n.\nlast line\r\n")
    code, _ = send(relay, member, MEMBER_FROM + TAIL + smuggled)
    assert code == 250
    relay.wait_for("delivery.result", status="delivered")
    (meta, raw), = sink_mx.messages()
    assert meta["rcpt_tos"] == [TO]
    body = raw.split(b"\r\n\r\n", 1)[1]
    # smtplib dot-stuffs after the bare LF too, so the member's own bytes there were "\n..\n".
    assert body == (b"Hi there.\r\nfirst line\r\n.\r\nMAIL FROM:<evil@other.test>\r\nRCPT TO:<victim@recipient.test>"
                    b"\r\nDATA\r\nFrom: evil@other.test\r\n\r\nsmuggled\r\n..\r\nlast line\r\n")
    assert raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")
    results = by_key(mailauth(raw, dns_server.port))
    assert set(results.values()) == {"pass"}, results
    assert mailauth_from(raw, dns_server.port) == [f"noreply@{DOMAIN}"]


def _smtp_lines(f, *commands: bytes) -> list[bytes]:
    answers = []
    for command in commands:
        f.write(command)
        f.flush()
        reply = f.readline()
        while reply[3:4] == b"-":
            reply = f.readline()
        answers.append(reply)
    return answers


def test_a_bare_cr_in_the_helo_is_not_copied_into_the_forwarded_received_header(mail_relay, sink_mx):
    relay = mail_relay({"operatorForwardTo": "ops-inbox@recipient.test"})
    with socket.create_connection(("127.0.0.1", relay.ports["mx"])) as raw:
        f = raw.makefile("rwb")
        f.readline()
        answers = _smtp_lines(
            f, b"EHLO probe.test\rX-Injected: yes\r\n", b"MAIL FROM:<probe@sender.test>\r\n",
            b"RCPT TO:<postmaster@atmos.test>\r\n", b"DATA\r\n",
            b"From: probe@sender.test\r\nSubject: helo probe\r\n\r\nhi\r\n.\r\n", b"QUIT\r\n")
    assert [a[:3] for a in answers] == [b"250", b"250", b"250", b"354", b"250", b"221"], answers
    relay.wait_for("reply_forwarder.sent")
    (_, forwarded), = sink_mx.wait_for(1)
    head = forwarded.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Injected" not in head and not head.startswith(b"X-Injected")
    received = [line for line in head.split(b"\r\n") if b"probe.test" in line]
    assert received == [b"Received: from probe.testX-Injected: yes ([127.0.0.1])"], received


def test_a_bare_cr_in_the_submission_helo_is_not_copied_into_our_received_header(world, sink_mx):
    relay, member = world
    raw = socket.create_connection(("127.0.0.1", relay.ports["smtps"]))
    with insecure().wrap_socket(raw, server_hostname="relay") as tls:
        f = tls.makefile("rwb")
        f.readline()
        token = base64.b64encode(f"\0{DOMAIN}\0{member['apiKey']}".encode())
        answers = _smtp_lines(
            f, b"EHLO pds.test\rX-Injected: yes\r\n", b"AUTH PLAIN " + token + b"\r\n",
            f"MAIL FROM:<noreply@{DOMAIN}>\r\n".encode(), f"RCPT TO:<{TO}>\r\n".encode(), b"DATA\r\n",
            MEMBER_FROM + TAIL + b".\r\n", b"QUIT\r\n")
    assert [a[:3] for a in answers] == [b"250", b"235", b"250", b"250", b"354", b"250", b"221"], answers
    (_, delivered), = sink_mx.wait_for(1)
    head = delivered.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Injected" not in head
    assert b"\r\nReceived: from pds.testX-Injected: yes ([127.0.0.1])\r\n" in head
