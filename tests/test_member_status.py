"""A member reads where it stands on its own page, with the credentials its PDS uses for SMTP.

The relay runs as a process; the member is enrolled, sends through submission, gets a DSN and an
ARF report back through the inbound MX, and reads /member/status as JSON and in Chromium.
"""
from __future__ import annotations

import base64
import json
import re
import smtplib
import sqlite3
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from selenium.webdriver.common.by import By

from functions.members.standing import next_tier, redact_others
from functions.reputation import caps_reached
from functions.reputation.policy import Policy, Tier, Warming
from functions.web.member_auth import basic_credentials
from harness.browser import chromium, click_and_load
from harness.relay import enroll_published, events_of
from harness.reports import arf
from harness.smtp import message, session

DID = "did:plc:memberviewmemberviewmemb"
DOMAIN = "pds.memberview.example"
OTHER_DID = "did:plc:othermemberothermemberot"
OTHER_DOMAIN = "pds.other.example"
NEW_DID = "did:plc:newmembernewmembernewmem"
NEW_DOMAIN = "pds.new.example"
ROOT = Path(__file__).resolve().parents[1]
GENEROUS = {"smtp": {"authFailureLimit": 50}}


# --- pure decisions -------------------------------------------------------------------------------------------

POLICY = Policy(Warming((Tier("warming", 7, 5, 20), Tier("ramping", 14, 20, 100))), ())


def member_row(approved_at, hourly=None, daily=None) -> dict:
    return {"approved_at": approved_at, "hourly_limit": hourly, "daily_limit": daily}


def test_the_next_tier_is_the_one_caps_for_gives_when_the_current_one_ends():
    day, t = 86400, 1_700_000_000.0
    assert next_tier(member_row(t), set(), POLICY, 200, 2000, t + 2 * day) == {
        "tier": "ramping", "at": t + 7 * day, "hourlyCap": 20, "dailyCap": 100}
    assert next_tier(member_row(t, hourly=10), set(), POLICY, 200, 2000, t + 8 * day) == {
        "tier": "warmed", "at": t + 14 * day, "hourlyCap": 10, "dailyCap": 2000}
    assert next_tier(member_row(t), set(), POLICY, 200, 2000, t + 15 * day) is None
    assert next_tier(member_row(t), {"highly_trusted"}, POLICY, 200, 2000, t + day) is None
    assert next_tier(member_row(None), set(), POLICY, 200, 2000, t) is None  # tiers count from approval


def test_a_cap_event_counts_in_its_window_or_until_the_time_it_names():
    hourly = caps_reached.reading({"window": "hourly", "cap": 5, "used": 5, "tier": "warming",
                                   "outcome": "held", "until": 5000}, 1000.0)
    assert hourly == {"window": "hourly", "cap": 5.0, "used": 5.0, "tier": "warming", "outcome": "held",
                      "until": 5000.0, "at": 1000.0}
    assert caps_reached.in_force(hourly, 4500.0) and caps_reached.in_force(hourly, 4999.0)
    assert not caps_reached.in_force(hourly, 5001.0)
    daily = caps_reached.reading({"window": "daily", "cap": "20", "refused": True}, 1000.0)
    assert daily["cap"] is None and daily["outcome"] == "refused" and daily["until"] is None
    assert caps_reached.in_force(daily, 80000.0) and not caps_reached.in_force(daily, 90000.0)
    stamped = caps_reached.reading({"window": "daily", "held_until": "2026-11-30T00:00:00Z"}, 0.0)
    assert stamped["outcome"] == "held" and stamped["until"] == 1795996800.0
    assert caps_reached.reading({"window": "weekly"}, 0.0) is None
    assert caps_reached.reading(["hourly"], 0.0) is None


def test_another_members_did_in_a_stored_reason_is_not_shown():
    text = f"proven, but {OTHER_DID} holds the domain and its proof still holds; {DID} too"
    assert redact_others(text, DID) == f"proven, but another member holds the domain and its proof still holds; {DID} too"
    assert redact_others(None, DID) is None


def test_basic_credentials_are_read_as_smtp_usernames_are_given():
    def event(value: str) -> dict:
        return {"headers": {"authorization": value}}

    encoded = base64.b64encode(f"{DID}:atmos_Key-_9".encode()).decode()
    assert basic_credentials(event(f"Basic {encoded}")) == (DID, "atmos_Key-_9")
    encoded = base64.b64encode(f"{DOMAIN}:atmos_Key-_9".encode()).decode()
    assert basic_credentials(event(f"basic {encoded}")) == (DOMAIN, "atmos_Key-_9")
    assert basic_credentials(event("Bearer abc")) is None
    assert basic_credentials(event("Basic !!!")) is None
    assert basic_credentials(event("Basic " + base64.b64encode(b"no-colon").decode())) is None
    assert basic_credentials({"headers": {}}) is None


# --- the relay ------------------------------------------------------------------------------------------------

def basic(user: str, key: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def member_get(relay, path: str, user: str, key: str, accept: str = "application/json"):
    return relay.http("GET", path, token=None, headers={**basic(user, key), "Accept": accept})


def standing(relay, member, user: str = DOMAIN) -> dict:
    status, body, _ = member_get(relay, "/member/status.json", user, member["apiKey"])
    assert status == 200, (status, body)
    return body


def send(relay, member, to: str, subject: str = "Confirm your email") -> None:
    s = session(relay, "submission")
    s.login(DOMAIN, member["apiKey"])
    s.sendmail(f"noreply@{DOMAIN}", [to], message(f"PDS <noreply@{DOMAIN}>", to, subject=subject))
    s.quit()


def mx_send(relay, sender: str, recipients: list[str], raw: bytes) -> None:
    raw = re.sub(rb"\r?\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", relay.ports["mx"], local_hostname="mx.recipient.test", timeout=30) as s:
        s.sendmail(sender, recipients, raw)


def dsn(to: str, recipient: str, returned: bytes) -> bytes:
    """An RFC 3464 report that `recipient` does not exist, as the recipient's MTA sends it to the VERP address."""
    headers = returned.split(b"\r\n\r\n", 1)[0].decode()
    return (f"From: MAILER-DAEMON@mx.recipient.test\r\nTo: {to}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\n"
            f"Your message to <{recipient}> could not be delivered: the mailbox does not exist.\r\n\r\n"
            "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.recipient.test\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown\r\n\r\n"
            f"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n\r\n--b1--\r\n").encode()


def relay_event_names(relay, did: str) -> list[str]:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    names = [n for (n,) in db.execute("SELECT action_name FROM relay_events WHERE sender_did = ? ORDER BY id",
                                      (did,))]
    db.close()
    return names


def wait_until(condition, timeout: float = 30) -> None:
    """The stream app folds events into relay_events moments after the fact."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def two_members(relay, dns_server) -> tuple[dict, dict]:
    return enroll_published(relay, dns_server, DID, DOMAIN), enroll_published(relay, dns_server, OTHER_DID,
                                                                              OTHER_DOMAIN)


@pytest.fixture
def world(mail_relay, dns_server, sink_mx):
    relay = mail_relay(GENEROUS)
    return relay, *two_members(relay, dns_server), sink_mx


def test_only_the_members_own_key_opens_its_page(world):
    relay, member, other, _ = world
    status, body, headers = relay.http("GET", "/member/status", token=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="Atmosphere Mail member"')
    for user, key in ((DOMAIN, member["apiKey"] + "x"), (DOMAIN, other["apiKey"]), (OTHER_DID, member["apiKey"]),
                      ("nobody.example", member["apiKey"])):
        status, body, headers = member_get(relay, "/member/status", user, key)
        assert status == 401 and "WWW-Authenticate" in headers, (user, status, body)
    assert len(relay.wait_for("member_status.auth", result="failed", count=4)) == 4
    assert standing(relay, member, user=DID)["did"] == DID
    mine = standing(relay, member, user=DOMAIN)
    assert mine["did"] == DID and [d["domain"] for d in mine["domains"]] == [DOMAIN]
    assert OTHER_DID not in json.dumps(mine) and OTHER_DOMAIN not in json.dumps(mine)
    assert standing(relay, other, user=OTHER_DOMAIN)["did"] == OTHER_DID
    status, body, headers = member_get(relay, "/member/status", DOMAIN, member["apiKey"], accept="text/html")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and DID in body


def test_the_wizard_points_a_new_member_at_its_page_which_it_can_read_while_pending(relay):
    form = urllib.parse.urlencode({"did": NEW_DID, "domain": NEW_DOMAIN}).encode()
    status, enrolled, _ = relay.http("POST", "/enroll", token=None, data=form,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201 and enrolled["statusPage"]["path"] == "/member/status"
    assert enrolled["statusPage"]["username"] == NEW_DOMAIN
    status, view, _ = member_get(relay, enrolled["statusPage"]["json"], NEW_DOMAIN, enrolled["apiKey"])
    assert status == 200 and view["status"] == "pending" and view["sending"]["nextTier"] is None
    assert view["domains"][0]["verification"] == "pending" and set(view["feedback"]["figures"].values()) == {0}


def test_every_member_route_is_behind_the_member_authorizer():
    functions = yaml.safe_load((ROOT / "serverless.yml").read_text())["functions"]
    for name, spec in functions.items():
        paths = [e["httpApi"].split(" ", 1)[1] for e in spec.get("events", []) if "httpApi" in e]
        if any(p.startswith("/member") for p in paths):
            assert spec.get("authorizer") == "member-authorizer", name


def test_repeated_failures_are_throttled_with_smtp_auth_in_one_count(mail_relay, dns_server):
    relay = mail_relay({"smtp": {"authFailureLimit": 3, "authFailureDelay": "1s", "authFailureMaxDelay": "60s"}})
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    for _ in range(2):
        assert member_get(relay, "/member/status.json", DOMAIN, "atmos_wrong")[0] == 401
    s = session(relay, "submission")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(DOMAIN, "atmos_wrong")
    s.close()
    # Over the limit an attempt waits its turn (1 s, then 2 s, 4 s ...) and is then checked, as on SMTP.
    assert member_get(relay, "/member/status.json", DOMAIN, member["apiKey"])[0] == 200
    for _ in range(3):
        assert member_get(relay, "/member/status.json", DOMAIN, "atmos_wrong")[0] == 401
    # The next turn (8 s) is further off than a request waits: refused unchecked, even with the right key.
    status, body, headers = member_get(relay, "/member/status.json", DOMAIN, member["apiKey"])
    assert status == 429 and int(headers["Retry-After"]) > 5, (status, body)
    lines = relay.wait_for("member_status.auth_throttled", count=5)  # the log may trail the HTTP answer
    assert [line["refused"] for line in lines] == [False, False, False, False, True]
    assert {(line["username"], line["client"]) for line in lines} == {(DOMAIN, "127.0.0.1")}


def test_usage_and_queue_follow_the_mail_the_member_sent(mail_relay, dns_server, sink_mx):
    relay, sink = mail_relay({**GENEROUS, "delivery": {"retryIntervals": ["1h"]}}), sink_mx
    member, other = two_members(relay, dns_server)
    sink.behave(rcpt={"later@": "451 4.3.0 Try again later"})
    before = standing(relay, member)
    assert before["status"] == "active" and before["sending"]["tier"] == "warming"
    assert before["sending"]["hourly"] == {"cap": 5, "used": 0, "left": 5, "window": "last 60 minutes"}
    assert before["sending"]["nextTier"]["tier"] == "ramping"
    assert before["sending"]["nextTier"]["at"] == pytest.approx(before["approvedAt"] + 7 * 86400)
    for n in range(2):
        send(relay, member, f"friend{n}@recipient.test")
    send(relay, member, "later@recipient.test")
    sink.wait_for(2)
    relay.wait_for("delivery.result", status="deferred", recipient="later@recipient.test", timeout=30)
    after = standing(relay, member)
    assert after["sending"]["hourly"]["used"] == 3 and after["sending"]["daily"]["used"] == 3
    assert after["sending"]["hourly"]["left"] == 2
    queue = after["queue"]
    assert {state: q["count"] for state, q in queue.items()} == {"queued": 0, "deferred": 1, "held": 0, "frozen": 0}
    assert queue["deferred"]["notBefore"] > time.time() + 600  # the next retry, an hour after the first
    assert standing(relay, other, user=OTHER_DOMAIN)["queue"]["deferred"]["count"] == 0


def bounce_and_complaint(relay, member, sink) -> None:
    """gone@ does not exist (a DSN through the MX); angry@ complains (an ARF report through the MX)."""
    send(relay, member, "gone@recipient.test")
    send(relay, member, "angry@recipient.test")
    (gone_meta, gone_raw), (_, angry_raw) = sorted(sink.wait_for(2), key=lambda m: m[0]["rcpt_tos"][0] != "gone@recipient.test")
    mx_send(relay, "", [gone_meta["mail_from"]], dsn(gone_meta["mail_from"], "gone@recipient.test", gone_raw))
    mx_send(relay, "feedback@arf.mail.yahoo.test", ["fbl@atmos.test"],
            arf(angry_raw, original_rcpt_to="angry@recipient.test"))
    relay.wait_for("inbound.received", classification="bounce")
    relay.wait_for("inbound.received", classification="complaint")
    wait_until(lambda: {"bounce_received", "complaint_received"} <= set(relay_event_names(relay, DID)))


def test_bounces_and_complaints_show_with_the_rates_the_rules_compare(world):
    relay, member, _, sink = world
    bounce_and_complaint(relay, member, sink)
    assert [e["kind"] for e in events_of(relay, "bounce_received")] == ["hard"]
    view = standing(relay, member)
    figures = view["feedback"]["figures"]
    assert figures["sends_7d"] == 2 and figures["hard_bounces_7d"] == 1 and figures["complaints_7d"] == 1
    assert figures["hard_bounce_rate_7d"] == 0.5
    assert figures["complaint_rate_7d"] == pytest.approx(1 / max(figures["deliveries_7d"], 1))
    rule = next(r for r in view["feedback"]["rules"] if r["rule"] == "suspend_hard_bounce_rate")
    assert rule["suspends"] and [(c["metric"], c["yours"], c["holds"]) for c in rule["conditions"]] == [
        ("hard_bounce_rate_7d", 0.5, True), ("sends_7d", 2, False)]
    listed = {e["recipient"]: e for e in view["suppressions"]["entries"]}
    assert listed["gone@recipient.test"]["removable"] and listed["gone@recipient.test"]["source"].startswith("bounce")
    assert not listed["angry@recipient.test"]["removable"]
    assert view["suppressions"]["total"] == 2


def test_a_member_removes_a_bounce_suppression_but_not_a_complaint(world):
    relay, member, other, sink = world
    bounce_and_complaint(relay, member, sink)
    key = member["apiKey"]
    gone = urllib.parse.quote("gone@recipient.test")
    assert relay.http("DELETE", f"/member/suppressions/{gone}", token=None,
                      headers=basic(DOMAIN, other["apiKey"]))[0] == 401
    assert relay.http("DELETE", f"/member/suppressions/{gone}", token=None,
                      headers=basic(OTHER_DOMAIN, other["apiKey"]))[0] == 404  # not on the other member's list
    status, body, _ = relay.http("DELETE", f"/member/suppressions/{gone}", token=None, headers=basic(DOMAIN, key))
    assert status == 200 and body["removed"] and body["recipient"] == "gone@recipient.test"
    line = relay.wait_for("suppression.removed", by="member")[0]
    assert line["did"] == DID and line["recipient"] == "gone@recipient.test"
    removed = events_of(relay, "suppression_removed_by_member")
    assert [(e["sender_did"], e["recipient"], e["actor"]) for e in removed] == [(DID, "gone@recipient.test", "member")]
    status, body, _ = relay.http("POST", "/member/suppressions/remove", token=None,
                                 data=json.dumps({"recipient": "angry@recipient.test"}).encode(),
                                 headers={**basic(DOMAIN, key), "Content-Type": "application/json"})
    assert status == 403 and "recipient's wish" in body["error"]
    # The entry rewritten by a later source still came from a complaint: the recorded complaint decides.
    assert admin_add_suppression(relay, DID, "angry@recipient.test")[0] == 201
    angry = urllib.parse.quote("angry@recipient.test")
    status, body, _ = relay.http("DELETE", f"/member/suppressions/{angry}", token=None, headers=basic(DOMAIN, key))
    assert status == 403 and "recipient's wish" in body["error"]
    refused = relay.wait_for("suppression.remove_refused", did=DID, count=2)
    assert [line["recipient"] for line in refused] == ["angry@recipient.test"] * 2
    listed = {e["recipient"]: e for e in standing(relay, member)["suppressions"]["entries"]}
    assert listed["angry@recipient.test"]["source"] == "operator" and not listed["angry@recipient.test"]["removable"]
    s = session(relay, "submission")
    s.login(DOMAIN, key)
    s.mail(f"noreply@{DOMAIN}")
    assert s.rcpt("gone@recipient.test")[0] == 250
    assert s.rcpt("angry@recipient.test")[0] == 550
    s.quit()
    assert [e["recipient"] for e in standing(relay, member)["suppressions"]["entries"]] == ["angry@recipient.test"]


def test_a_suspended_member_still_sees_where_it_stands(world):
    relay, member, _, _ = world
    relay.cli("member", "suspend", DID, "--reason", "complaints from a bought list")
    view = standing(relay, member)
    assert view["status"] == "suspended" and view["reason"] == "complaints from a bought list"
    s = session(relay, "submission")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(DOMAIN, member["apiKey"])
    s.close()


def test_suppressions_are_paged(world):
    relay, member, _, _ = world
    for n in range(7):
        status, _ = admin_add_suppression(relay, DID, f"r{n}@recipient.test")
        assert status == 201
    status, page, _ = member_get(relay, "/member/suppressions?offset=5&limit=5", DOMAIN, member["apiKey"])
    assert status == 200 and page["total"] == 7 and page["offset"] == 5 and len(page["entries"]) == 2
    status, page, _ = member_get(relay, "/member/suppressions?limit=x", DOMAIN, member["apiKey"])
    assert status == 400


def admin_add_suppression(relay, did: str, recipient: str) -> tuple[int, dict]:
    status, body, _ = relay.http("POST", f"/admin/member/{did}/suppressions",
                                 data=json.dumps({"recipient": recipient, "reason": "typo in sign-up"}).encode(),
                                 headers={"Content-Type": "application/json"})
    return status, body


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_the_page_in_chromium_and_its_form_needs_the_pages_csrf_token(world, browser):
    relay, member, _, _ = world
    assert admin_add_suppression(relay, DID, "typo@recipient.test")[0] == 201
    key = member["apiKey"]
    browser.get(relay.http_url.replace("://", f"://{DOMAIN}:{key}@") + "/member/status")
    assert browser.find_element(By.ID, "member-status").text == "active"
    assert browser.find_element(By.ID, "tier").text.startswith("warming")
    assert browser.find_element(By.CSS_SELECTOR, "#hourly .cap").text == "5"
    assert browser.find_element(By.CSS_SELECTOR, "#queue tr[data-state=held] .count").text == "0"
    assert browser.find_element(By.CSS_SELECTOR, f".domain[data-domain='{DOMAIN}']").get_attribute(
        "data-verification") == "verified"
    row = browser.find_element(By.CSS_SELECTOR, "#suppressions tr[data-recipient='typo@recipient.test']")
    # Another site's form cannot carry the token: the same post without it is refused.
    forged = urllib.parse.urlencode({"recipient": "typo@recipient.test"}).encode()
    assert relay.http("POST", "/member/suppressions/remove", token=None, data=forged,
                      headers={**basic(DOMAIN, key), "Content-Type": "application/x-www-form-urlencoded",
                               "Accept": "text/html"})[0] == 403
    click_and_load(browser, row.find_element(By.CSS_SELECTOR, "button.remove"))
    assert browser.find_element(By.ID, "notice").text == "typo@recipient.test is no longer suppressed"
    assert not browser.find_elements(By.CSS_SELECTOR, "#suppressions tr[data-recipient='typo@recipient.test']")
    assert relay.wait_for("suppression.removed", by="member")[0]["recipient"] == "typo@recipient.test"


def test_the_operator_list_shows_members_at_a_cap(world):
    relay, member, _, _ = world
    for n in range(6):  # the warming tier's hourly cap is 5: the sixth is held
        send(relay, member, f"signup{n}@recipient.test")
    listed = {m["did"]: m for m in relay.http_json("/admin/members")["members"]}
    assert listed[DID]["sent24h"] == 5 and listed[OTHER_DID]["atCap"] == []
    wait_until(lambda: "member_at_cap" in relay_event_names(relay, DID))
    listed = {m["did"]: m for m in relay.http_json("/admin/members")["members"]}
    assert [(c["window"], c["cap"]) for c in listed[DID]["atCap"]] == [("hourly", 5)]
    status, page, _ = relay.http("GET", "/admin/members", headers={"Accept": "text/html"})
    assert status == 200 and 'class="status status-pending at-cap" data-window="hourly"' in page
    view = standing(relay, member)
    assert [(c["window"], c["outcome"]) for c in view["atCap"]] == [("hourly", "held")]
    assert view["queue"]["held"]["count"] == 1 and view["queue"]["held"]["notBefore"] > time.time()
