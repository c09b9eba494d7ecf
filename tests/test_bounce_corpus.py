"""Reading bounces as well as Sisimai: its public corpus scored per measure, each reader on its MTA's format,
hostile and localized reports read in bounded time, and the MX and `atmos-relay classify` never stopped by one."""
from __future__ import annotations

import json
import re
import smtplib
import sqlite3
import time

import pytest

from functions.inbound import bounces
from functions.inbound.bounce_reasons import classify as classify_reply
from functions.inbound.bounces import reasons
from functions.inbound.bounces.suppression_policy import suppresses
from harness import bounce_corpus
from harness.relay import enroll_published
from harness.smtp import message, session

DID = "did:plc:bouncesbouncesbouncesbou"
DOMAIN = "bounces.example"

def _read(raw: bytes) -> tuple[str, list[dict]]:
    reading = bounces.read(bounces.parse(raw))
    return reading.kind, [r.as_dict() for r in reading.recipients]


@pytest.fixture(scope="module")
def sisimai_score() -> bounce_corpus.Score:
    return bounce_corpus.score(_read)


@pytest.mark.parametrize("measure", sorted(bounce_corpus.GOALS))
def test_sisimai_corpus_is_read_as_sisimai_reads_it(sisimai_score, measure):
    """The goals of issue 15: recognised, recipients found, hard/soft and reason agreement with Sisimai."""
    assert sisimai_score.ratio(measure) >= bounce_corpus.GOALS[measure], (sisimai_score.as_dict(),
                                                                         sisimai_score.misses)


def test_every_feedback_report_in_the_corpus_is_a_complaint(sisimai_score):
    assert sisimai_score.arf_complaints == sisimai_score.arf_files == 8


def test_no_corpus_file_raises_or_takes_long():
    for sample in bounce_corpus.sisimai_samples():
        started = time.monotonic()
        reading = bounces.read(bounces.parse(sample.path.read_bytes()))
        assert reading.reader != "error", (sample.path.name, reading.problem)
        assert time.monotonic() - started < 2.5, sample.path.name


# One message per MTA family, written the way that MTA writes its bounces.

def _mail(headers: str, body: str) -> bytes:
    return (headers.strip() + "\n\n" + body.lstrip("\n")).replace("\n", "\r\n").encode("utf-8")


def _dsn(text: str, fields: str, headers: str = "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail "
         "Returned to Sender") -> bytes:
    return _mail(headers + "\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
                 'boundary="b"', f"--b\nContent-Type: text/plain\n\n{text}\n--b\nContent-Type: "
                 f"message/delivery-status\n\n{fields}\n--b\nContent-Type: text/rfc822-headers\n\nFrom: "
                 "member@pds.example\nTo: someone@example.org\nSubject: hi\n\n--b--\n")


READERS = {
    "postfix": (_dsn(
        "This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you that your message could"
        " not\nbe delivered to one or more recipients.\n\n                   The mail system\n\n<gone@example.org>: "
        "host mx.example.org[192.0.2.1] said: 550 User unknown (in\n    reply to RCPT TO command)\n",
        "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; gone@example.org\nAction: failed\n"
        "Status: 5.0.0\nDiagnostic-Code: smtp; 550 User unknown"), "postfix",
        [("gone@example.org", "userunknown", "hard")]),
    "sendmail": (_mail(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mail.example.net>\nSubject: Returned mail: see transcript",
        "The original message was received at Mon, 1 Jan 2024 00:00:00 +0900\n\n   ----- The following addresses "
        "had permanent fatal errors -----\n<full@example.org>\n\n   ----- Transcript of session follows -----\n"
        "... while talking to mx.example.org.:\n>>> RCPT To:<full@example.org>\n<<< 552 5.2.2 Mailbox full\n"
        "552 5.2.2 <full@example.org>... Mailbox full\n\n   ----- Original message follows -----\n"), "sendmail",
        [("full@example.org", "mailboxfull", "soft")]),
    "exim": (_mail(
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nSubject: Mail delivery failed: returning "
        "message to sender\nX-Failed-Recipients: nobody@example.org",
        "This message was created automatically by mail delivery software.\n\nA message that you sent could not "
        "be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) "
        "failed:\n\n  nobody@example.org\n    host mx.example.org [192.0.2.2]\n    SMTP error from remote mail "
        "server after RCPT TO:<nobody@example.org>:\n    550 5.1.1 No such user here\n\n------ This is a copy of "
        "the message, including all the headers. ------\n"), "exim", [("nobody@example.org", "userunknown", "hard")]),
    "qmail": (_mail(
        "From: MAILER-DAEMON@mx.example.net\nSubject: failure notice",
        "Hi. This is the qmail-send program at mx.example.net.\nI'm afraid I wasn't able to deliver your message "
        "to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<blocked@example.org>:\n192.0.2.3 does not like recipient.\nRemote host said: 554 5.7.1 Service "
        "unavailable; Client host [198.51.100.1] blocked using zen.spamhaus.org\nGiving up on 192.0.2.3.\n\n"
        "--- Below this line is a copy of the message.\n"), "qmail", [("blocked@example.org", "blocked", "soft")]),
    "gmail": (_mail(
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nSubject: Delivery Status Notification "
        "(Failure)", "Delivery to the following recipient failed permanently:\n\n     nobody@example.org\n\n"
        "Technical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the "
        "server for the recipient domain example.org by mx.example.org. [192.0.2.4].\n\nThe error that the other "
        "server returned was:\n550 5.1.1 <nobody@example.org>: User unknown\n\n----- Original message -----\n"),
        "gmail", [("nobody@example.org", "userunknown", "hard")]),
    "yahoo": (_mail(
        "From: MAILER-DAEMON@yahoo.com\nSubject: Failure Notice",
        "Sorry, we were unable to deliver your message to the following address.\n\n<nobody@example.org>:\n"
        "550: <nobody@example.org>: User unknown\n\n--- Below this line is a copy of the message.\n"), "yahoo",
        [("nobody@example.org", "userunknown", "hard")]),
    "office365": (_mail(
        "From: Microsoft Outlook <postmaster@outlook.com>\nSubject: Undeliverable: hi\n"
        "X-MS-Exchange-Message-Is-Ndr:", "Delivery has failed to these recipients or groups:\n\n"
        "full@example.org<mailto:full@example.org>\nThe recipient's mailbox is full.\n\nDiagnostic information "
        "for administrators:\n\nGenerating server: AM0PR01MB0001.eurprd01.prod.outlook.com\n\n"
        "full@example.org\nRemote Server returned '552 5.2.2 Mailbox full'\n"), "office365",
        [("full@example.org", "mailboxfull", "soft")]),
    "exchange2003": (_mail(
        "From: System Administrator <postmaster@example.org>\nSubject: Undeliverable: hi",
        "Your message\n\n  To:      someone@example.org\n  Subject: hi\n\ndid not reach the following "
        "recipient(s):\n\nsomeone@example.org on Mon, 1 Jan 2024 00:00:00 -0000\n    The recipient name is not "
        "recognized\n    MSEXCH:IMS:EXAMPLE:SITE:HOST 0 (000C05A6) Unknown Recipient\n"), "exchange2003",
        [("someone@example.org", "userunknown", "hard")]),
    "googlegroups": (_mail(
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nSubject: Delivery Status Notification "
        "(Failure)\nX-Failed-Recipients: team@googlegroups.com",
        "Hello member@pds.example,\n\nWe're writing to let you know that the group you tried to contact (team) may"
        " not exist, or you may not have permission to post messages to the group.\n\nGoogle Groups\n"),
        "googlegroups", [("team@googlegroups.com", "rejected", "soft")]),
    "imailserver": (_mail(
        "From: Postmaster <postmaster@example.org>\nSubject: Undeliverable Mail\nX-Mailer: <SMTP32 v8.22>",
        "Unknown user: someone@example.org\n\nOriginal message follows.\n\nFrom: member@pds.example\n"),
        "imailserver", [("someone@example.org", "userunknown", "hard")]),
    "notes": (_mail(
        "From: POSTMASTER@gw.example.org\nSubject: Undeliverable message",
        "------- Failure Reasons  --------\n\nUser not listed in public Name & Address Book\nsomeone@example.org\n"
        "\n------- Returned Message --------\nFrom: member@pds.example\n"), "notes",
        [("someone@example.org", "userunknown", "hard")]),
    "mcafee": (_dsn(
        "Delivery failed.", "Reporting-MTA: dns; gw.example.org\n\nFinal-Recipient: rfc822; someone@example.org\n"
        "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 Unknown user someone@example.org",
        "From: MAILER-DAEMON@gw.example.org\nSubject: Delivery Status\nX-NAI-Header: Modified by McAfee Email "
        "Gateway"), "mcafee", [("someone@example.org", "userunknown", "hard")]),
    "verizon": (_mail(
        "From: MMSC NDR Administrator <sysadmin@m01.vzwpix.com>\nSubject: Undeliverable Message",
        "Message could not be delivered to mobile.\nError: No valid recipients for this MM\nOriginal Message:\n"
        "From: member@pds.example\nTo: 5550100@vzwpix.com\nSubject: hi\n"), "verizon",
        [("5550100@vzwpix.com", "userunknown", "hard")]),
    "rfc3464": (_dsn(
        "Delivery has failed to these recipients.", "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: "
        "rfc822; moved@example.org\nAction: failed\nStatus: 5.1.6\nDiagnostic-Code: smtp; 550 5.1.6 Recipient "
        "address has moved", "From: postmaster@example.net\nSubject: Delivery failure"), "rfc3464",
        [("moved@example.org", "hasmoved", "hard")]),
}


# The MTA families with a reader of their own, and the corpus files that are theirs.
FAMILY_FILES = {"exim": "lhost-exim-", "qmail": "lhost-qmail-", "gmail": "lhost-gmail-", "yahoo": "lhost-yahoo-",
                "office365": "lhost-office365-"}


@pytest.mark.parametrize("reader", sorted(FAMILY_FILES))
def test_each_reader_reads_its_familys_corpus_files(reader):
    """Every corpus bounce written in the family's words is read by its reader, each recipient as Sisimai names it."""
    samples = [s for s in bounce_corpus.sisimai_samples() if s.path.name.startswith(FAMILY_FILES[reader])]
    assert samples
    for sample in samples:
        reading = bounces.read(bounces.parse(sample.path.read_bytes()))
        found = {r.recipient.lower() for r in reading.recipients}
        if reading.reader != reader:  # not in the family's own words (a DSN, a local name with no domain)
            continue
        assert {w["recipient"].lower() for w in sample.bounced} <= found, sample.path.name
    assert sum(bounces.read(bounces.parse(s.path.read_bytes())).reader == reader for s in samples) >= \
        0.8 * len(samples)


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_mta_family_is_read_its_own_way(name):
    raw, reader, expected = READERS[name]
    reading = bounces.read(bounces.parse(raw))
    assert reading.kind == "bounce" and reading.reader == reader
    assert [(r.recipient, r.reason, r.kind) for r in reading.recipients] == expected


def test_a_feedback_report_and_an_auto_reply():
    arf = _mail("From: fbl@provider.example\nSubject: complaint\nMIME-Version: 1.0\nContent-Type: multipart/report;"
                ' report-type=feedback-report; boundary="b"',
                "--b\nContent-Type: text/plain\n\nA complaint.\n--b\nContent-Type: message/feedback-report\n\n"
                "Feedback-Type: abuse\nUser-Agent: Provider-FBL/1.0\nVersion: 1\nOriginal-Rcpt-To: <angry@example.org>"
                "\n--b\nContent-Type: text/rfc822-headers\n\nFrom: member@pds.example\n\n--b--\n")
    reading = bounces.read(bounces.parse(arf))
    assert reading.kind == "complaint" and reading.feedback.feedback_type == "abuse"
    assert [(r.recipient, r.kind) for r in reading.recipients] == [("angry@example.org", "complaint")]
    away = _mail("From: someone@example.org\nSubject: Out of office\nAuto-Submitted: auto-replied", "Back Monday.")
    reading = bounces.read(bounces.parse(away))
    assert reading.kind == "auto-reply" and reading.signals


def localized_dsn(to: str = "", recipient: str = "utilisateur@exemple.fr") -> bytes:
    """A French provider's DSN with raw 8-bit text in the per-recipient fields and the returned Message-ID."""
    return (f"From: MAILER-DAEMON@mx.exemple.fr\r\nTo: {to or 'member@pds.example'}\r\n"
            "Subject: =?utf-8?q?Non_remis_=3A_message?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; "
            'report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
            "Votre message n'a pas pu être remis.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.exemple.fr\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: échec (failed)\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: adresse inconnue, utilisateur non trouvé\r\n"
            "\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: member@pds.example\r\n"
            "Message-ID: <é-1@pds.example>\r\nSubject: hi\r\n\r\n--b--\r\n").encode("utf-8")


def test_a_localized_dsn_is_read():
    reading = bounces.read(bounces.parse(localized_dsn()))
    assert reading.kind == "bounce"
    assert [(r.recipient, r.reason, r.kind) for r in reading.recipients] == [
        ("utilisateur@exemple.fr", "userunknown", "hard")]


def mime_bomb(parts: int = 50_000) -> bytes:
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(parts))
    return (b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + b"--b--\r\n")


def nesting_bomb(levels: int = 1000) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i) for i in range(levels))
    return b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n" + head + b"\r\nx\r\n"


@pytest.mark.parametrize("raw", [mime_bomb(), nesting_bomb(), mime_bomb(600)], ids=["wide", "deep", "parsed-then-bounded"])
def test_mime_explosions_are_unreadable_fast(raw):
    started = time.monotonic()
    reading = bounces.read(bounces.parse(raw))
    assert reading.kind == "unreadable" and re.search(r"MIME (parts|nesting)", reading.problem)
    assert time.monotonic() - started < 1.0


def test_only_reasons_about_the_address_suppress():
    for reason in ("userunknown", "hostunknown", "hasmoved", "notaccept"):
        assert suppresses(reason, "5.1.1")
    for reason in ("blocked", "spamdetected", "policyviolation", "securityerror", "rejected", "expired"):
        assert not suppresses(reason, "5.7.1", repeats=10)
    assert not suppresses("suspend", "5.2.1") and suppresses("suspend", "5.2.1", repeats=3)
    assert not suppresses("userunknown", "4.1.1")


@pytest.mark.parametrize("reply, reason, kind", [
    ((550, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"), "blocked", "soft"),
    ((550, "5.1.1", "The email account that you tried to reach does not exist."), "userunknown", "hard"),
    ((552, "5.2.2", "The email account that you tried to reach is over quota."), "mailboxfull", "soft"),
    ((550, "5.7.26", "Unauthenticated email from pds.example is not accepted due to domain's DMARC policy"),
     "blocked", "soft"),
    ((554, "", "Message rejected as spam by Content Filtering"), "spamdetected", "soft"),
])
def test_delivery_time_replies_are_read_with_the_same_table(reply, reason, kind):
    code, status, text = reply
    result = classify_reply(status, text, code)
    assert (result.reason, result.kind) == (reason, kind)
    assert suppresses(result.reason, result.status) == (kind == "hard")


def test_reason_names_are_sisimais():
    names = {name.lstrip("_") for name, _ in reasons.TEXT} | set(reasons.STATUS.values())
    assert names <= {"userunknown", "hostunknown", "mailboxfull", "exceedlimit", "filtered", "blocked",
                     "spamdetected", "policyviolation", "rejected", "expired", "suspend", "hasmoved", "mesgtoobig",
                     "notaccept", "networkerror", "securityerror", "systemerror", "toomanyconn", "speeding",
                     "virusdetected", "norelaying", "contenterror", "systemfull", "syntaxerror", "mailererror", "onhold"}


# Through the running relay.

def _mx_send(relay, sender: str, recipients: list[str], raw: bytes) -> dict:
    raw = re.sub(rb"\r?\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", relay.ports["mx"], local_hostname="mx.provider.test", timeout=60) as s:
        return s.sendmail(sender, recipients, raw)


def _relay_one(relay, member, sink, to: str) -> dict:
    s = session(relay, "submission")
    s.login(DOMAIN, member["apiKey"])
    s.sendmail(f"noreply@{DOMAIN}", [to], message(f"PDS <noreply@{DOMAIN}>", to, subject="Confirm your email"))
    s.quit()
    return sink.wait_for(len(sink.messages()) + 1)[-1][0]


def _inbound(relay) -> list[tuple]:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    try:
        return db.execute("SELECT classification, member_did, details FROM inbound_messages ORDER BY id DESC"
                          ).fetchall()
    finally:
        db.close()


@pytest.fixture
def world(mail_relay, dns_server, sink_mx):
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    return relay, member, sink_mx


def test_a_localized_dsn_on_the_mx_gets_250_and_is_recorded(world):
    relay, member, sink = world
    meta = _relay_one(relay, member, sink, "utilisateur@recipient.test")
    assert _mx_send(relay, "", [meta["mail_from"]], localized_dsn(meta["mail_from"], "utilisateur@recipient.test")
                    ) == {}
    line = relay.wait_for("inbound.received", classification="bounce")[0]
    assert line["member_did"] == DID and line["bounced"] == ["utilisateur@recipient.test"]
    classification, did, details = _inbound(relay)[0]
    assert (classification, did) == ("bounce", DID)
    assert json.loads(details)["recipients"][0]["reason"] == "userunknown"


def test_a_mime_explosion_on_the_mx_is_recorded_as_unreadable(world):
    relay, member, sink = world
    meta = _relay_one(relay, member, sink, "someone@recipient.test")
    started = time.monotonic()
    assert _mx_send(relay, "", [meta["mail_from"]], mime_bomb()) == {}
    assert time.monotonic() - started < 30
    relay.wait_for("inbound.received", classification="unknown")
    classification, _, details = _inbound(relay)[0]
    assert classification == "unknown" and "MIME parts" in json.loads(details)["unreadable"]


def test_classify_prints_a_line_for_every_file_whatever_happens(relay, tmp_path):
    kddi = bounce_corpus.SISIMAI / "lhost-kddi-01.eml"
    missing = tmp_path / "missing.eml"
    bomb = tmp_path / "bomb.eml"
    bomb.write_bytes(nesting_bomb())
    postfix = bounce_corpus.SISIMAI / "lhost-postfix-01.eml"
    result = relay.cli("classify", str(kddi), str(missing), str(bomb), str(postfix), check=False)
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["file"] for o in out] == [str(kddi), str(missing), str(bomb), str(postfix)]
    assert out[0]["classification"] == "bounce" and out[0]["recipients"][0]["reason"] == "mailboxfull"
    assert out[1]["classification"] is None and "FileNotFoundError" in out[1]["error"]
    assert out[2]["classification"] == "unknown"
    assert out[3]["classification"] == "bounce"
    assert result.returncode == 1


def test_a_dsn_naming_thousands_of_recipients_is_read_up_to_the_cap():
    fields = "".join(f"Final-Recipient: rfc822; u{i}@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
                     for i in range(6000))
    raw = _dsn("Delivery failed.", "Reporting-MTA: dns; mx.example.net\r\n\r\n" + fields)
    started = time.monotonic()
    reading = bounces.read(bounces.parse(raw))
    assert reading.kind == "bounce" and len(reading.recipients) == 500
    assert time.monotonic() - started < 2.5


def test_every_original_rcpt_to_of_a_feedback_report_is_read():
    """A report naming several recipients names each of them, not the first one several times."""
    fields = "Feedback-Type: abuse\r\nVersion: 1\r\n" + "".join(
        f"Original-Rcpt-To: <{a}>\r\n" for a in ("ann@x.test", "BOB@x.test", "carol@x.test"))
    raw = ("From: fbl@isp.test\r\nTo: fbl@atmos.test\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nabuse\r\n"
           f"--b\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n"
           "--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: a@member.test\r\nSubject: x\r\n\r\n--b--\r\n")
    reading = bounces.read(bounces.parse(raw.encode()))
    assert [r.recipient for r in reading.recipients] == ["ann@x.test", "BOB@x.test", "carol@x.test"]
