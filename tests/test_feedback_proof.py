"""Nobody outside can hurt a member's standing: a complaint or bounce counts only when it is provably about our mail.

Through the real MX port of a running relay: forged reports naming a
member are recorded and shown to the operator but count for nothing; a
genuine DSN (built from what the recipient MX really received) counts once
however often it is replayed; a report counts only for the recipients the
message went to; a report quoting the relay's signature or Message-ID mark
counts. Then the pure parts (which recipients count, the mark, the header
signature check) on their own.
"""
from __future__ import annotations

import json
import re
import smtplib
import sqlite3

import dkim
import pytest

from harness.relay import enroll_published, events_of
from harness.reports import strip_header
from harness.smtp import message, session

DID = "did:plc:proofproofproofproofproo"
DOMAIN = "proof.example"
REPORTER = "arf.mail.yahoo.test"


def mx_send(relay, sender: str, recipients: list[str], raw: bytes) -> dict:
    raw = re.sub(rb"\r?\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", relay.ports["mx"], local_hostname="mx.provider.test", timeout=30) as s:
        return s.sendmail(sender, recipients, raw)


def rows(relay) -> list[sqlite3.Row]:
    """SELECT id, classification, member_did, counted, not_counted_reason, proof, report_dkim, details ..."""
    db = sqlite3.connect(relay.state / "relay.sqlite")
    db.row_factory = sqlite3.Row
    found = db.execute("SELECT * FROM inbound_messages ORDER BY id").fetchall()
    db.close()
    return found


def suppressed(relay) -> list[str]:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    found = [r for (r,) in db.execute("SELECT recipient FROM suppressions WHERE did = ? ORDER BY recipient", (DID,))]
    db.close()
    return found


def report(kind: str, returned: bytes, fields: list[str], *, headers_only: bool = False,
           reporter: str = f"feedback@{REPORTER}") -> bytes:
    """An ARF report (kind "feedback-report") or a DSN ("delivery-status") quoting `returned`."""
    boundary = "=_report_boundary"
    status = "message/feedback-report" if kind == "feedback-report" else "message/delivery-status"
    if headers_only:
        quoted = "Content-Type: text/rfc822-headers\r\n\r\n" + returned.split(b"\r\n\r\n", 1)[0].decode() + "\r\n"
    else:
        quoted = "Content-Type: message/rfc822\r\n\r\n" + returned.decode()
    return (f"From: {reporter}\r\nTo: fbl@atmos.test\r\nSubject: report\r\n"
            f"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <report.{abs(hash(returned))}@{REPORTER}>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type={kind};"
            f" boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nA report about a message you sent.\r\n"
            f"--{boundary}\r\nContent-Type: {status}\r\n\r\n" + "\r\n".join(fields) + "\r\n"
            f"--{boundary}\r\n{quoted}\r\n--{boundary}--\r\n").encode()


def arf_fields(rcpt_tos: list[str], mail_from: str = "") -> list[str]:
    lines = ["Feedback-Type: abuse", "User-Agent: Yahoo!-Mail-Feedback/2.0", "Version: 1"]
    lines += [f"Original-Mail-From: <{mail_from}>"] if mail_from else []
    return lines + [f"Original-Rcpt-To: <{r}>" for r in rcpt_tos]


def dsn_fields(recipients: list[str]) -> list[str]:
    lines = ["Reporting-MTA: dns; mx.recipient.test", ""]
    for r in recipients:
        lines += [f"Final-Recipient: rfc822; {r}", "Action: failed", "Status: 5.1.1",
                  f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown", ""]
    return lines


def forged_message(to: str) -> bytes:
    """What an attacker writes: our header naming the victim, a plausible Message-ID, no signature of ours."""
    return (f"From: PDS <noreply@{DOMAIN}>\r\nTo: {to}\r\nSubject: Confirm your email\r\n"
            f"X-Atmos-Member-Did: {DID}\r\nFeedback-ID: transactional:{DID}:{DOMAIN}:atmosphere-mail\r\n"
            f"Message-ID: <atmos.0190ABCDEF012345678.0123456789abcdef@{DOMAIN}>\r\n\r\nHi\r\n").encode()


@pytest.fixture
def world(mail_relay, dns_server, sink_mx):
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    return relay, member, sink_mx, dns_server


def relay_to(relay, member, sink, recipients: list[str], extra: str = "") -> list[tuple[dict, bytes]]:
    """Submit one message as the member; what the recipient MX received, one delivery per recipient."""
    before = len(sink.messages())
    s = session(relay, "submission")
    s.login(DOMAIN, member["apiKey"])
    s.sendmail(f"noreply@{DOMAIN}", recipients,
               message(f"PDS <noreply@{DOMAIN}>", ", ".join(recipients), subject="Confirm your email", extra=extra))
    s.quit()
    return sink.wait_for(before + len(recipients))[before:]


def test_a_forged_feedback_report_naming_a_member_is_recorded_and_counts_for_nothing(world):
    relay, _, _, _ = world
    victims = [f"user{i}@recipient.test" for i in range(1000)]
    for _ in range(2):
        mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"],
                report("feedback-report", forged_message(victims[0]), arf_fields(victims)))
    lines = relay.wait_for("inbound.received", classification="complaint", count=2)
    assert all(line["member_did"] is None and line["counted"] == [] for line in lines)
    assert all(line["claimed_member_did"] == DID for line in lines)
    for row in rows(relay):
        assert (row["classification"], row["member_did"], row["counted"], row["proof"]) == ("complaint", None, 0, "")
        assert row["not_counted_reason"].startswith("unproven")
        assert json.loads(row["details"])["claimed_member_did"] == DID
    assert not events_of(relay, "complaint_received")
    assert suppressed(relay) == []
    assert relay.cli_json("member", "show", DID)["status"] == "active"
    shown = relay.http_json(f"/admin/inbound?counted=0&did={DID}")["inbound"]
    assert [(m["classification"], m["counted"], m["claimedMemberDid"], m["memberDid"]) for m in shown] == [
        ("complaint", False, DID, None)] * 2
    assert shown[0]["notCountedReason"].startswith("unproven") and len(shown[0]["decisions"]) == 1000
    assert relay.http_json("/admin/inbound?counted=1")["count"] == 0
    status, page, _ = relay.http("GET", "/admin/inbound", headers={"Accept": "text/html"})
    assert status == 200 and f"claims {DID}" in page and "no: unproven" in page


def test_a_forged_report_copying_a_real_messages_headers_without_the_signature_counts_for_nothing(world):
    relay, member, sink, _ = world
    (meta, delivered), = relay_to(relay, member, sink, ["reader@recipient.test"],
                                  extra="Message-ID: <chosen-by-the-pds@proof.example>\r\n")
    copied = strip_header(delivered, "DKIM-Signature")
    mx_send(relay, f"feedback@{REPORTER}", ["abuse@atmos.test"],
            report("feedback-report", copied, arf_fields(["reader@recipient.test"]), headers_only=True))
    line = relay.wait_for("inbound.received", classification="complaint")[0]
    assert line["member_did"] is None and line["counted"] == [] and line["claimed_member_did"] == DID
    assert not events_of(relay, "complaint_received") and suppressed(relay) == []


def test_a_forged_dsn_to_postmaster_suppresses_nothing(world):
    relay, _, _, _ = world
    mx_send(relay, "", ["postmaster@atmos.test"],
            report("delivery-status", forged_message("ceo@recipient.test"), dsn_fields(["ceo@recipient.test"])))
    line = relay.wait_for("inbound.received", classification="bounce")[0]
    assert line["member_did"] is None and line["counted"] == [] and line["not_counted_reason"].startswith("unproven")
    assert not events_of(relay, "bounce_received") and suppressed(relay) == []


def test_a_genuine_dsn_counts_once_however_often_it_is_replayed(world):
    relay, member, sink, _ = world
    (meta, delivered), = relay_to(relay, member, sink, ["gone@recipient.test"])
    dsn = report("delivery-status", delivered, dsn_fields(["gone@recipient.test"]),
                 reporter="MAILER-DAEMON@mx.recipient.test")
    for _ in range(3):
        mx_send(relay, "", [meta["mail_from"]], dsn)
    lines = relay.wait_for("inbound.received", classification="bounce", count=3)
    assert [line["counted"] for line in lines] == [["gone@recipient.test"], [], []]
    assert all(line["member_did"] == DID and line["attributed_by"] == "verp" for line in lines)
    assert [r["not_counted_reason"] for r in rows(relay)] == ["", "already counted for this message",
                                                              "already counted for this message"]
    bounces = events_of(relay, "bounce_received")
    assert len(bounces) == 1 and bounces[0]["recipient"] == "gone@recipient.test" and bounces[0]["kind"] == "hard"
    assert suppressed(relay) == ["gone@recipient.test"]


def test_a_report_counts_only_for_the_recipients_the_message_went_to(world):
    relay, member, sink, _ = world
    deliveries = relay_to(relay, member, sink, ["ann@recipient.test", "bob@recipient.test"])
    strangers = ["carol@recipient.test", "dave@recipient.test", "eve@recipient.test"]
    named = ["ann@recipient.test", *strangers, "BOB@recipient.test", "ann@recipient.test"]
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"],
            report("feedback-report", deliveries[0][1], arf_fields(named)))
    line = relay.wait_for("inbound.received", classification="complaint")[0]
    assert line["member_did"] == DID and line["attributed_by"] == "dkim"
    assert line["counted"] == ["ann@recipient.test", "bob@recipient.test"]
    decisions = json.loads(rows(relay)[-1]["details"])["decisions"]
    assert [d["address"] for d in decisions if not d["counted"]] == [*strangers, "ann@recipient.test"]
    assert sorted(e["recipient"] for e in events_of(relay, "complaint_received")) == [
        "ann@recipient.test", "bob@recipient.test"]
    assert suppressed(relay) == ["ann@recipient.test", "bob@recipient.test"]
    # Without Original-Rcpt-To only the quoted To: is left, naming both: which of them complained is unknown.
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"], report("feedback-report", deliveries[1][1],
                                                                      arf_fields([])))
    line = relay.wait_for("inbound.received", classification="complaint", count=2)[1]
    assert line["member_did"] == DID and line["counted"] == []
    assert line["not_counted_reason"] == "the report does not say which recipient it is about"
    assert len(events_of(relay, "complaint_received")) == 2


@pytest.mark.parametrize("headers_only", [False, True])
def test_a_report_quoting_the_relays_signature_counts(world, headers_only):
    relay, member, sink, _ = world
    (meta, delivered), = relay_to(relay, member, sink, ["annoyed@recipient.test"],
                                  extra="Message-ID: <chosen-by-the-pds@proof.example>\r\n")
    quoted = delivered.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n[body removed by the provider]\r\n"
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"],
            report("feedback-report", quoted, arf_fields(["annoyed@recipient.test"]), headers_only=headers_only))
    line = relay.wait_for("inbound.received", classification="complaint")[0]
    assert line["member_did"] == DID and line["attributed_by"] == "dkim"
    assert line["counted"] == ["annoyed@recipient.test"]
    complaint, = events_of(relay, "complaint_received")
    assert complaint["message_id"] == "<chosen-by-the-pds@proof.example>"
    assert suppressed(relay) == ["annoyed@recipient.test"]


def test_a_re_encoded_quote_counts_by_the_relays_message_id_mark(world):
    relay, member, sink, _ = world
    (meta, delivered), = relay_to(relay, member, sink, ["private@recipient.test"])
    message_id = re.search(rb"(?im)^Message-ID: *(.+?)\r$", delivered).group(1).decode()
    assert message_id.startswith("<atmos.")
    redacted = re.sub(rb"private@recipient\.test", b"redacted@recipient.test", delivered)
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"],
            report("feedback-report", redacted, arf_fields(["redacted@recipient.test"]), headers_only=True))
    line = relay.wait_for("inbound.received", classification="complaint")[0]
    assert line["member_did"] == DID and line["attributed_by"] == "token"
    assert line["counted"] == ["private@recipient.test"]
    assert events_of(relay, "complaint_received")[0]["message_id"] == message_id
    assert suppressed(relay) == ["private@recipient.test"]


def test_the_reports_own_dkim_result_is_recorded(world):
    from functions.dkim import key_pairs

    relay, member, sink, dns_server = world
    key = key_pairs.new_rsa()
    dns_server.publish([{"name": f"fbl._domainkey.{REPORTER}", "type": "TXT",
                         "value": f"v=DKIM1; k=rsa; p={key.public_b64}"}])
    (meta, delivered), = relay_to(relay, member, sink, ["someone@recipient.test"])
    raw = report("feedback-report", delivered, arf_fields(["someone@recipient.test"]))
    signed = dkim.sign(raw, b"fbl", REPORTER.encode(), key.private_pem.encode(),
                       include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"content-type"]) + raw
    forged = raw.replace(b"From: feedback@", b"Authentication-Results: x; dkim=pass\r\nFrom: feedback@")
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"], signed)
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"], forged)
    relay.wait_for("inbound.received", classification="complaint", count=2)
    assert [r["report_dkim"] for r in rows(relay)] == [f"pass d={REPORTER}", "none"]


# The pure parts, without a relay.

def _attribution(how: str, sent_to: tuple[str, ...], recipient: str = ""):
    from functions.inbound.attribution import Attribution
    return Attribution(DID, how, "<m@proof.example>", recipient, "0190ABCDEF012345678", sent_to)


def test_decide_counts_only_the_recipients_the_message_went_to():
    from functions.inbound.attribution import UNPROVEN, decide

    assert [(d.address, d.counted) for d in decide(None, ["a@x.test", "b@x.test"])] == [
        ("a@x.test", False), ("b@x.test", False)]
    assert {d.reason for d in decide(None, ["a@x.test"])} == {UNPROVEN}
    proven = _attribution("dkim", ("a@x.test", "b@x.test"))
    decisions = decide(proven, ["A@x.test", "c@x.test", "b@x.test", "a@x.test"])
    assert [(d.address, d.counted) for d in decisions] == [
        ("a@x.test", True), ("c@x.test", False), ("b@x.test", True), ("a@x.test", False)]
    assert decisions[1].reason == "the relay did not send this message to this recipient"
    assert decide(proven, []) == []


def test_decide_takes_the_one_recipient_a_verp_address_or_a_one_recipient_message_names():
    from functions.inbound.attribution import decide

    verp = _attribution("verp", ("a@x.test", "b@x.test"), recipient="b@x.test")
    assert [(d.address, d.counted) for d in decide(verp, ["final@alias.test"])] == [("b@x.test", True)]
    assert [(d.address, d.counted) for d in decide(verp, ["a@x.test", "b@x.test"])] == [
        ("a@x.test", False), ("b@x.test", True)]
    single = _attribution("token", ("a@x.test",))
    assert [(d.address, d.counted) for d in decide(single, ["redacted@x.test"])] == [("a@x.test", True)]
    assert [(d.address, d.counted) for d in decide(single, [])] == [("a@x.test", True)]


def test_the_message_id_mark_is_the_relays_alone():
    from functions.outbound import message_token

    key, other = b"k" * 32, b"o" * 32
    marked = message_token.message_id(key, "0190ABCDEF012345678", "proof.example")
    assert message_token.queue_of(key, f" {marked}\r\n") == "0190ABCDEF012345678"
    assert message_token.queue_of(key, marked.upper().replace("PROOF.EXAMPLE", "proof.example")) is not None
    assert message_token.queue_of(other, marked) is None
    assert message_token.queue_of(key, marked.replace("0190ABCDEF012345678", "0190ABCDEF012345679")) is None
    assert message_token.queue_of(key, f"<x{marked[1:]}") is None
    assert message_token.queue_of(key, "") is None


def _signed(did: str = DID):
    from functions.dkim import key_pairs
    from functions.dkim.signer import MessageSigner

    rsa, ed = key_pairs.new_rsa(), key_pairs.new_ed25519()
    body = (f"X-Atmos-Member-Did: {did}\r\nFrom: PDS <noreply@{DOMAIN}>\r\nTo: a@x.test\r\nSubject: hi\r\n"
            f"Message-ID: <m1@{DOMAIN}>\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\n\r\nHello\r\n").encode()
    signer = MessageSigner(body)
    raw = signer.sign("atmos.test", "opr", rsa.private_pem).header + signer.sign(
        "atmos.test", "ope", ed.private_pem).header + body
    records = {"opr._domainkey.atmos.test": f"v=DKIM1; k=rsa; p={rsa.public_b64}".encode(),
               "ope._domainkey.atmos.test": f"v=DKIM1; k=ed25519; p={ed.public_b64}".encode()}
    return raw, records


def _quote(raw: bytes):
    from email import message_from_bytes

    from functions.inbound.relay_proof import Quote
    head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return Quote(head, message_from_bytes(head + b"\r\n"))


def test_the_operator_signature_is_checked_over_the_headers_against_the_relays_own_keys():
    from functions.inbound.relay_proof import signed_by_relay

    raw, records = _signed()
    signed = signed_by_relay(_quote(raw), "atmos.test", records)
    assert signed is not None and (signed.did, signed.message_id) == (DID, f"<m1@{DOMAIN}>")
    only_ed = {k: v for k, v in records.items() if k.startswith("ope.")}
    assert signed_by_relay(_quote(raw), "atmos.test", only_ed).selector == "ope"
    assert signed_by_relay(_quote(raw), "atmos.test", {}) is None
    assert signed_by_relay(_quote(raw), "other.test", records) is None
    victim = raw.replace(DID.encode(), b"did:plc:victimvictimvictimvictimv")
    assert signed_by_relay(_quote(victim), "atmos.test", records) is None
    added = raw.replace(b"From: PDS", f"X-Atmos-Member-Did: {DID}\r\nFrom: PDS".encode())
    assert signed_by_relay(_quote(added), "atmos.test", records) is None


def test_quoted_headers_are_found_however_the_report_encodes_them():
    import base64
    from email import message_from_bytes

    from functions.inbound.relay_proof import quotes, signed_by_relay

    raw, records = _signed()
    head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    encoded = base64.encodebytes(head).replace(b"\n", b"\r\n")
    report = (b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
              b"--b\r\nContent-Type: text/plain\r\n\r\nUndeliverable\r\n"
              b"--b\r\nContent-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded +
              b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + raw + b"--b--\r\n")
    found = quotes(message_from_bytes(report))
    assert len(found) == 2
    assert all(signed_by_relay(q, "atmos.test", records).did == DID for q in found)
    assert [str(q.headers["Message-ID"]) for q in found] == [f"<m1@{DOMAIN}>"] * 2


def test_the_relays_signature_on_forwarded_mail_vouches_for_no_member(world):
    """A member forwards to itself mail naming a victim; the operator-signed copy must not prove a complaint."""
    relay, member, sink, dns_server = world
    mallory = relay.cli_json("member", "enroll", "--did", "did:plc:mallorymallorymallorymal",
                             "--domain", "mallory.example", "--forward-to", "mallory@recipient.test")
    relay.proofs.prove(mallory)  # replies are forwarded only for a domain its member has proven
    relay.cli_json("member", "approve", "did:plc:mallorymallorymallorymal")
    (meta, delivered), = relay_to(relay, member, sink, ["reader@recipient.test"],
                                  extra="Message-ID: <victim-message@proof.example>\r\n")
    bait = (f"From: Mallory <m@elsewhere.test>\r\nTo: reader@recipient.test\r\nSubject: Confirm your email\r\n"
            f"X-Atmos-Member-Did: {DID}\r\nMessage-ID: <victim-message@proof.example>\r\n"
            f"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\n\r\nHi\r\n").encode()
    mx_send(relay, "m@elsewhere.test", ["noreply@mallory.example"], bait)
    relay.wait_for("reply_forwarder.sent", to="mallory@recipient.test")
    forwarded = next(raw for m, raw in sink.wait_for(2) if m["rcpt_tos"] == ["mallory@recipient.test"])
    assert b"d=atmos.test" in forwarded
    mx_send(relay, f"feedback@{REPORTER}", ["fbl@atmos.test"],
            report("feedback-report", forwarded, arf_fields(["reader@recipient.test"]), headers_only=True))
    line = relay.wait_for("inbound.received", classification="complaint")[0]
    assert line["member_did"] is None and line["counted"] == []
    assert not events_of(relay, "complaint_received") and suppressed(relay) == []
