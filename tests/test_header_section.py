"""The strict reading of a submitted header section and its From: (pure code, no relay)."""
from __future__ import annotations

import pytest

from functions.outbound import from_field, header_section, message_headers
from functions.outbound.from_field import UnreadableFrom
from functions.outbound.header_section import MalformedHeaderSection, NulInMessage

MEMBER = b"From: PDS <noreply@member.example>\r\n"


def refused(message: bytes) -> str:
    with pytest.raises(MalformedHeaderSection) as err:
        header_section.read(message)
    assert err.value.reply.code == 550 and err.value.reply.status == "5.6.0"
    return err.value.detail


def from_domains(message: bytes) -> list[str]:
    return [m.domain for m in from_field.mailboxes(header_section.read(message))]


def test_fields_unfold_and_keep_their_bytes():
    section = header_section.read(MEMBER + b"Subject: a\r\n\tlong one\r\nTo: x@recipient.test\r\n\r\nbody\r\n")
    assert [f.name for f in section.fields] == ["From", "Subject", "To"]
    assert section.first("subject").value == "a\tlong one"
    assert section.fields[1].raw == b"Subject: a\r\n\tlong one\r\n"
    assert section.body == b"body\r\n"


def test_a_message_without_body_or_final_line_end_is_read():
    assert header_section.read(MEMBER + b"Subject: x").first("Subject").value == "x"
    assert header_section.read(MEMBER).body == b""


@pytest.mark.parametrize("message, detail", [
    (MEMBER + b"X-Hide: a\rFrom: evil@other.test\r\n\r\n", "line 2 holds a bare CR"),
    (b"From: evil@other.test\nX: y\n\nbody\n", "line 1 holds a bare LF"),
    (MEMBER + b"junk line\r\nFrom: evil@other.test\r\n\r\n", "line 2 is neither a header field nor a continuation"),
    (MEMBER + b"From : evil@other.test\r\n\r\n", "line 2: white space before the colon of 'From'"),
    (MEMBER + b"Subject: a\x00b\r\n\r\n", "line 2 holds a NUL byte"),
    (b" folded: first\r\n" + MEMBER + b"\r\n", "line 1 continues no field"),
    (MEMBER + b"Subject: a\r\n  \r\n\r\n", "line 3 holds only white space"),
    (MEMBER + b"Subject: \xff\r\n\r\n", "line 2 is not UTF-8"),
    (MEMBER + "Subject: a\u2028From: evil@other.test\r\n\r\n".encode(), "line 2 holds a Unicode line break"),
    (MEMBER + b"Subject: a\x0bb\r\n\r\n", "line 2 holds a control character"),
    (MEMBER + b"from: evil@other.test\r\n\r\n", "2 From: fields (RFC 5322 allows one)"),
    (MEMBER + b"Sender: a@member.example\r\nSender: b@other.test\r\n\r\n", "2 Sender: fields (RFC 5322 allows one)"),
    (MEMBER + b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nDate: x\r\n\r\n", "2 Date: fields (RFC 5322 allows one)"),
])
def test_ambiguous_header_sections_are_refused(message, detail):
    assert refused(message) == detail


def test_a_bare_cr_or_lf_in_the_body_is_not_the_header_sections_business():
    section = header_section.read(MEMBER + b"\r\nline\rnext\nlast\r.\r\n")
    assert header_section.crlf_body(section.body) == b"line\r\nnext\r\nlast\r\n.\r\n"
    assert header_section.crlf_body(b"clean\r\n") == b"clean\r\n"


@pytest.mark.parametrize("value, domains", [
    (b"noreply@member.example", ["member.example"]),
    (b"PDS <noreply@Member.Example>", ["member.example"]),
    (b'"evil@other.test via PDS" <noreply@member.example>', ["member.example"]),
    (b"=?utf-8?q?P=C3=A9?= <a@member.example>, b@second.example", ["member.example", "second.example"]),
    (b"Dr. Who\r\n <noreply@member.example>", ["member.example"]),
])
def test_plain_from_fields_give_their_domains(value, domains):
    assert from_domains(b"From: " + value + b"\r\n\r\n") == domains


@pytest.mark.parametrize("value", [
    b"", b"undisclosed-recipients:;", b"noreply@member.example (evil@other.test)",
    b"noreply@member.example <evil@other.test>", b"<noreply@member.example> evil@other.test",
    b"evil@other.test@member.example", b"noreply@member.example\tevil@other.test",
    b"Group: noreply@member.example;", b"<@route.test:noreply@member.example>", b"noreply@[127.0.0.1]",
    b"noreply@member.example,", b'"unterminated <noreply@member.example>', b"noreply@member.example.",
])
def test_from_fields_receivers_could_read_differently_are_refused(value):
    with pytest.raises(UnreadableFrom) as err:
        from_domains(b"From: " + value + b"\r\n\r\n")
    assert err.value.reply.code == 550


def test_no_from_is_the_missing_from_reply():
    with pytest.raises(UnreadableFrom) as err:
        from_domains(b"Subject: x\r\n\r\n")
    assert str(err.value.reply) == "550 5.6.0 Message has no usable From: header"


def test_prepare_signs_what_was_read_and_refuses_nul():
    message = MEMBER + b"Bcc: hidden@x.test\r\nFeedback-ID: forged\r\n\r\nline\rnext\n"
    prepared = message_headers.prepare(message, "did:plc:x", "member.example", 0.0)
    head, body = prepared.message.split(b"\r\n\r\n", 1)
    assert body == b"line\r\nnext\r\n"
    assert b"Bcc" not in head and b"forged" not in head and MEMBER in head + b"\r\n"
    with pytest.raises(NulInMessage):
        message_headers.prepare(MEMBER + b"\r\nnul\x00here\r\n", "did:plc:x", "member.example", 0.0)


def test_trace_text_never_carries_a_line_break():
    assert header_section.trace_text("host\r\nX-Injected: yes\x00") == "hostX-Injected: yes"
    assert len(header_section.trace_text("a" * 500)) == 100


def test_the_signer_reads_prepares_fields_as_it_would_read_the_message():
    """The header section is read once: the fields prepare hands the signer are what dkimpy reads in its bytes."""
    from functions.dkim.signer import MessageSigner

    message = (b"Return-Path: <x@y.test>\r\n" + MEMBER + b"To:  A  <a@recipient.test>,\r\n\t b@recipient.test \r\n"
               b"Subject: \tfolded\r\n  twice \r\nX-Atmos-Member-Did: forged\r\nMessage-ID: <m@member.example>\r\n"
               b"\r\nbody  with\t space \r\nbare lf\nend\r\n\r\n\r\n")
    trace = b"Received: from helo ([192.0.2.1])\r\n\tby relay.test with ESMTPSA id Q1;\r\n\tMon, 30 Nov 2026\r\n"
    prepared = message_headers.prepare(message, "did:plc:x", "member.example", 0.0, trace=trace)
    assert prepared.message.startswith(trace)
    read, given = MessageSigner(prepared.message), MessageSigner.of_parts(*prepared.parts)
    assert [tuple(h) for h in given.headers] == [tuple(h) for h in read.headers]
    assert (given.include, given.signed_fields, given.body_hash) == (read.include, read.signed_fields, read.body_hash)
    with pytest.raises(MalformedHeaderSection):
        message_headers.prepare(message, "did:plc:x", "member.example", 0.0, trace=b"Received: x\r\n\r\nX: y\r\n")
