"""A member's PDS hands mail to the relay on 587 (STARTTLS) and 465 (implicit TLS).

Every reply code of docs/contract.md's SMTP section is asserted from a real session,
on both listeners, with smtplib and with swaks.
"""
from __future__ import annotations

import base64
import json
import smtplib
import socket
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.submit import distinct_recipients
from harness.smtp import insecure, message, session, smtps, submission
from harness.swaks import swaks

DID = "did:plc:abcdefghijklmnopqrstuvwx"
DOMAIN = "member.example"
LISTENERS = ["submission", "smtps"]


@pytest.fixture
def member(relay):
    return relay.enroll(DID, DOMAIN)


def test_587_offers_auth_plain_only_after_starttls(relay):
    s = smtplib.SMTP("127.0.0.1", relay.ports["submission"], local_hostname="client.test", timeout=30)
    code, banner = s.ehlo()
    assert code == 250
    features = banner.decode().upper().splitlines()
    for extension in ("SIZE", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"):
        assert any(line.startswith(extension) for line in features), extension
    assert not any(line.startswith("AUTH") for line in features)
    s.starttls(context=insecure())
    _, banner = s.ehlo()
    features = banner.decode().upper().splitlines()
    assert "AUTH PLAIN" in features
    assert not any(line.startswith("STARTTLS") for line in features)
    s.quit()


def test_465_offers_auth_plain_from_the_first_ehlo(relay):
    s = smtps(relay)
    features = s.ehlo_resp.decode().upper().splitlines()
    assert "AUTH PLAIN" in features
    assert not any(line.startswith("STARTTLS") for line in features)
    assert any(line.startswith("ENHANCEDSTATUSCODES") for line in features)
    s.quit()


@pytest.mark.parametrize("listener", LISTENERS)
def test_mail_before_auth_is_530(relay, listener):
    s = session(relay, listener)
    assert s.docmd("MAIL", f"FROM:<a@{DOMAIN}>") == (530, b"5.7.0 Authentication required")
    s.quit()


def test_auth_on_plaintext_587_is_refused(relay):
    s = submission(relay, starttls=False)
    code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())
    assert (code, text) == (538, b"5.7.11 Encryption required for requested authentication mechanism")
    s.quit()
    relay.wait_for("smtp.auth", result="encryption_required", listener="submission")


@pytest.mark.parametrize("listener", LISTENERS)
def test_bad_credentials_are_535(relay, member, listener):
    s = session(relay, listener)
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login(DOMAIN, "atmos_wrong-key")
    assert err.value.smtp_code == 535
    assert err.value.smtp_error == b"5.7.8 Authentication credentials invalid"
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login("unknown.example", member["apiKey"])
    assert err.value.smtp_error == b"5.7.8 Authentication credentials invalid"


@pytest.mark.parametrize("listener", LISTENERS)
def test_pending_member_is_told_so(relay, listener):
    pending = relay.enroll("did:plc:pendingpendingpendingpen", "pending.example", approve=False)
    s = session(relay, listener)
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login("pending.example", pending["apiKey"])
    assert (err.value.smtp_code, err.value.smtp_error) == (535, b"5.7.8 pending operator approval")


@pytest.mark.parametrize("listener", LISTENERS)
def test_suspended_member_is_told_so(relay, member, listener):
    relay.cli_json("member", "suspend", DID, "--reason", "complaints")
    s = session(relay, listener)
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login(DID, member["apiKey"])
    assert (err.value.smtp_code, err.value.smtp_error) == (535, b"5.7.8 account suspended")
    relay.wait_for("smtp.auth", result="suspended", did=DID)


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("username", [DID, DOMAIN])
def test_member_sends_with_did_or_domain_as_username(relay, member, listener, username):
    s = session(relay, listener)
    assert s.login(username, member["apiKey"]) == (235, b"2.7.0 Authentication successful")
    s.mail(f"app@{DOMAIN}")
    s.rcpt("someone@recipient.test")
    code, text = s.data(message(f"PDS <app@{DOMAIN}>", "someone@recipient.test"))
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    s.quit()
    queued = text.decode().rsplit(" ", 1)[1]
    segment, position, length = sqlite3.connect(relay.state / "relay.sqlite").execute(
        "SELECT segment, position, length FROM spool_messages WHERE queue_id = ?", (queued,)).fetchone()
    with open(relay.state / "queue" / "segments" / f"{segment}.seg", "rb") as f:
        f.seek(position)
        record = f.read(length)
    assert json.loads(record.split(b"\n", 1)[0])["queue_id"] == queued


@pytest.mark.parametrize("listener", LISTENERS)
def test_from_domain_must_be_the_members(relay, member, listener):
    s = session(relay, listener)
    s.login(DOMAIN, member["apiKey"])
    s.mail(f"app@{DOMAIN}")
    s.rcpt("someone@recipient.test")
    code, text = s.data(message("CEO <ceo@bank.example>", "someone@recipient.test"))
    assert (code, text) == (550, b"5.7.1 From: domain bank.example is not enrolled for this member")
    assert relay.cli_json("queue")["spool"]["messages"] == 0


def test_auth_login_is_refused_at_once(relay, member):
    s = submission(relay)
    code, text = s.docmd("AUTH", "LOGIN")  # refused outright: no 334 challenge first
    assert code == 504 and b"use AUTH PLAIN" in text
    s.quit()
    relay.wait_for("smtp.auth", result="unsupported_mechanism", mechanism="LOGIN")


def test_swaks_quickstart_works_verbatim(relay, member):
    result = swaks("--server", f"127.0.0.1:{relay.ports['submission']}", "--tls", "--auth", "PLAIN",
                   "--auth-user", DOMAIN, "--auth-password", member["apiKey"],
                   "--from", f"noreply@{DOMAIN}", "--to", "someone@recipient.test",
                   "--header", "Subject: swaks quickstart", "--body", "hello from swaks")
    assert result.returncode == 0, result.output
    assert result.saw("235 2.7.0 Authentication successful")
    assert any(r.startswith("250 2.0.0 Ok: queued as") for r in result.replies())


def test_swaks_without_plain_gets_a_clear_answer(relay, member):
    result = swaks("--server", f"127.0.0.1:{relay.ports['smtps']}", "--tls-on-connect", "--auth", "LOGIN",
                   "--auth-user", DOMAIN, "--auth-password", member["apiKey"],
                   "--from", f"noreply@{DOMAIN}", "--to", "someone@recipient.test")
    assert result.returncode != 0
    assert "requested type not available" in result.output.lower() or "504" in result.output


def test_every_auth_attempt_is_logged_without_the_key(relay, member):
    s = submission(relay)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(DOMAIN, "atmos_not-the-key")
    s.quit()
    s = smtps(relay)
    s.login(DID, member["apiKey"])
    s.quit()
    relay.wait_for("smtp.auth", result="invalid", username=DOMAIN, listener="submission")
    ok = relay.wait_for("smtp.auth", result="ok", did=DID, listener="smtps")[0]
    assert ok["peer"] == "127.0.0.1"
    s = smtps(relay)
    assert s.docmd("AUTH", "PLAIN not-base64!")[0] == 501
    assert s.docmd("AUTH", "PLAIN")[0] == 334
    assert s.docmd("*")[0] == 501
    s.quit()
    relay.wait_for("smtp.auth", result="malformed", listener="smtps")
    relay.wait_for("smtp.auth", result="aborted", listener="smtps")
    joined = "\n".join(relay.raw)
    assert member["apiKey"] not in joined and "atmos_not-the-key" not in joined


def test_repeated_auth_failures_are_slowed_down(start_relay):
    relay = start_relay({"smtp": {"authFailureLimit": 2, "authFailureDelay": 0.5}})
    relay.enroll(DID, DOMAIN)
    s = submission(relay)
    for _ in range(4):
        try:
            s.login(DOMAIN, "atmos_guess")
        except smtplib.SMTPAuthenticationError as err:
            assert err.smtp_code == 535
        except smtplib.SMTPServerDisconnected:
            s = submission(relay)
    throttled = relay.wait_for("smtp.auth_throttled", peer="127.0.0.1")
    assert throttled[0]["delay"] >= 0.5


@pytest.mark.parametrize("listener", LISTENERS)
def test_oversized_message_is_552_and_nothing_is_kept(start_relay, listener):
    relay = start_relay({"smtp": {"maxMessageSize": 20000}})
    member = relay.enroll(DID, DOMAIN)
    s = session(relay, listener)
    s.login(DOMAIN, member["apiKey"])
    code, text = s.docmd("MAIL", f"FROM:<app@{DOMAIN}> SIZE=50000")
    assert (code, text) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
    s.mail(f"app@{DOMAIN}")
    s.rcpt("someone@recipient.test")
    code, text = s.data(message(f"app@{DOMAIN}", "someone@recipient.test", body="x" * 900 + "\r\n") * 30)
    assert (code, text) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
    assert s.noop()[0] == 250
    s.quit()
    assert relay.cli_json("queue")["spool"]["messages"] == 0


def test_aborted_data_keeps_nothing(relay, member):
    raw = socket.create_connection(("127.0.0.1", relay.ports["smtps"]))
    tls = insecure().wrap_socket(raw, server_hostname="relay")
    f = tls.makefile("rwb")

    def cmd(line: bytes) -> bytes:
        f.write(line + b"\r\n")
        f.flush()
        reply = f.readline()
        while reply[3:4] == b"-":
            reply = f.readline()
        return reply

    f.readline()
    cmd(b"EHLO client.test")
    token = base64.b64encode(f"\0{DOMAIN}\0{member['apiKey']}".encode())
    assert cmd(b"AUTH PLAIN " + token).startswith(b"235")
    assert cmd(f"MAIL FROM:<app@{DOMAIN}>".encode()).startswith(b"250")
    assert cmd(b"RCPT TO:<someone@recipient.test>").startswith(b"250")
    assert cmd(b"DATA").startswith(b"354")
    f.write(f"From: app@{DOMAIN}\r\nSubject: cut off\r\n\r\npartial body".encode())
    f.flush()
    f.close()  # the socket only really closes once its file is closed too
    tls.close()
    relay.wait_for("smtp.disconnected", listener="smtps", open_transaction=True)
    queue = relay.cli_json("queue")
    assert queue["summary"] == {} and queue["spool"]["messages"] == 0


def test_pipelined_session(relay, member):
    """A PIPELINING client sends MAIL, RCPT, RCPT and DATA in one write."""
    raw = socket.create_connection(("127.0.0.1", relay.ports["smtps"]))
    tls = insecure().wrap_socket(raw, server_hostname="relay")
    f = tls.makefile("rwb")
    f.readline()
    f.write(b"EHLO client.test\r\n")
    f.flush()
    while f.readline()[3:4] == b"-":
        pass
    token = base64.b64encode(f"\0{DOMAIN}\0{member['apiKey']}".encode())
    f.write(b"AUTH PLAIN " + token + b"\r\n")
    f.flush()
    assert f.readline().startswith(b"235")
    f.write(f"MAIL FROM:<app@{DOMAIN}>\r\nRCPT TO:<a@recipient.test>\r\nRCPT TO:<b@recipient.test>\r\nDATA\r\n"
            .encode())
    f.flush()
    replies = [f.readline() for _ in range(4)]
    assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"354"]
    f.write(message(f"app@{DOMAIN}", "a@recipient.test") + b".\r\nQUIT\r\n")
    f.flush()
    assert f.readline().startswith(b"250 2.0.0 Ok: queued as")
    assert f.readline().startswith(b"221")
    tls.close()


def test_sessions_keep_working_under_bad_tls(relay):
    """A client that starts TLS and talks garbage does not hurt the next one."""
    raw = socket.create_connection(("127.0.0.1", relay.ports["smtps"]))
    raw.sendall(b"EHLO not-tls\r\n")
    raw.settimeout(5)
    try:
        raw.recv(100)
    except (OSError, socket.timeout):
        pass
    raw.close()
    s = smtps(relay)
    assert s.noop()[0] == 250
    s.quit()


OTHER_DID, OTHER_DOMAIN = "did:plc:zyxwvutsrqponmlkjihgfedc", "other-member.example"


def _login_from(relay, source: str, username: str, key: str) -> int:
    """One AUTH PLAIN on a new connection from `source` (another loopback address: another client)."""
    s = smtplib.SMTP_SSL("127.0.0.1", relay.ports["smtps"], local_hostname="client.test", timeout=60,
                         context=insecure(), source_address=(source, 0))
    try:
        s.login(username, key)
        return 235
    except smtplib.SMTPAuthenticationError as err:
        return err.smtp_code
    finally:
        s.close()


def test_a_right_key_between_guesses_does_not_reset_the_address(start_relay):
    """The probe's 'two wrong keys and one right one, repeated': every guess is counted and slowed."""
    relay = start_relay({"smtp": {"authFailureLimit": 2, "authFailureDelay": 0.2, "authFailureMaxDelay": 2}})
    relay.enroll(DID, DOMAIN)
    mine = relay.enroll(OTHER_DID, OTHER_DOMAIN)
    for _ in range(3):
        assert _login_from(relay, "127.0.0.1", DOMAIN, "atmos_guess") == 535
        assert _login_from(relay, "127.0.0.1", DOMAIN, "atmos_guess") == 535
        assert _login_from(relay, "127.0.0.1", OTHER_DOMAIN, mine["apiKey"]) == 235
    guesses = relay.wait_for("smtp.auth", result="invalid", count=6)
    assert [line["failures"] for line in guesses] == [1, 2, 3, 4, 5, 6]
    throttled = relay.logs("smtp.auth_throttled")
    delays = [line["delay"] for line in throttled if line["username"] == DOMAIN]
    assert len(delays) == 4 and delays == sorted(delays) and delays[-1] >= 1.6, delays
    assert len([line for line in throttled if line["username"] == OTHER_DOMAIN]) == 3  # the right key waits too


def test_parallel_guesses_from_many_addresses_do_not_all_proceed(start_relay):
    relay = start_relay({"smtp": {"authFailureLimit": 1, "authFailureDelay": 0.5, "authFailureMaxDelay": 2}})
    relay.enroll(DID, DOMAIN)
    mine = relay.enroll(OTHER_DID, OTHER_DOMAIN)
    assert _login_from(relay, "127.0.0.2", DOMAIN, "atmos_guess") == 535
    sources = [f"127.0.0.{n}" for n in range(3, 13)]
    with ThreadPoolExecutor(len(sources)) as pool:
        codes = list(pool.map(lambda source: _login_from(relay, source, DOMAIN, "atmos_guess"), sources))
    assert sorted(codes) == [454] * (len(sources) - 2) + [535, 535], codes
    refused = relay.wait_for("smtp.auth_throttled", count=len(sources) - 2, predicate=lambda line: line["refused"])
    assert {line["username"] for line in refused} == {DOMAIN}
    assert len(relay.wait_for("smtp.auth", result="throttled", count=len(sources) - 2)) == len(sources) - 2
    # Another member on a fresh address is neither slowed nor refused by the victim's count.
    assert _login_from(relay, "127.0.0.20", OTHER_DOMAIN, mine["apiKey"]) == 235
    relay.wait_for("smtp.auth", result="ok", peer="127.0.0.20")
    assert not relay.logs("smtp.auth_throttled", peer="127.0.0.20")


def test_one_mailbox_is_one_recipient():
    assert distinct_recipients(["a@Example.ORG", "b@example.org", "a@example.org", "a@EXAMPLE.org"]) == [
        "a@Example.ORG", "b@example.org"]
    # The local part is the mailbox host's to interpret: A@ and a@ may be two mailboxes.
    assert distinct_recipients(["A@example.org", "a@example.org"]) == ["A@example.org", "a@example.org"]
    assert distinct_recipients(['"x@y"@example.org', '"x@y"@EXAMPLE.org']) == ['"x@y"@example.org']


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_repeated_recipient_is_accepted_and_spooled_once(relay, member, listener):
    """To: and Cc: naming one person make a client send RCPT twice; the second is not a second delivery."""
    s = session(relay, listener)
    s.login(DOMAIN, member["apiKey"])
    s.mail(f"app@{DOMAIN}")
    for rcpt in ("someone@recipient.test", "someone@RECIPIENT.test", "other@recipient.test",
                 "someone@recipient.test"):
        assert s.rcpt(rcpt) == (250, b"2.1.5 Recipient OK")
    code, text = s.data(message(f"app@{DOMAIN}", "someone@recipient.test", extra="Cc: someone@recipient.test\r\n"))
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as "), text
    s.quit()
    queued = text.decode().rsplit(" ", 1)[1]
    rows = sqlite3.connect(relay.state / "relay.sqlite").execute(
        "SELECT recipient FROM spool_recipients WHERE queue_id = ? ORDER BY recipient", (queued,)).fetchall()
    assert rows == [("other@recipient.test",), ("someone@recipient.test",)]
    sent = sqlite3.connect(relay.state / "relay.sqlite").execute(
        "SELECT recipients, recipient_count FROM sent_messages WHERE queue_id = ?", (queued,)).fetchone()
    assert (json.loads(sent[0]), sent[1]) == (["someone@recipient.test", "other@recipient.test"], 2)


def test_sign_is_invoked_with_base64_from_json(relay, member):
    """`atmos-relay invoke` (and the invoke API) carry message bytes as base64 in and out."""
    raw = message(f"app@{DOMAIN}", "someone@recipient.test", subject="invoked")
    payload = {"did": DID, "domain": DOMAIN, "message": base64.b64encode(raw).decode()}
    result = relay.cli_json("invoke", "sign", "--payload", json.dumps(payload))
    signed = base64.b64decode(result["message"], validate=True)
    assert signed.endswith(raw.split(b"\r\n\r\n", 1)[1])
    assert signed.count(b"DKIM-Signature: ") == 4
    assert [s["d"] for s in result["signatures"]] == [DOMAIN, DOMAIN, "atmos.test", "atmos.test"]
    refused = relay.cli("invoke", "sign", "--payload", json.dumps({**payload, "message": 12}), check=False)
    assert refused.returncode != 0 and "bytes expected" in refused.stderr
