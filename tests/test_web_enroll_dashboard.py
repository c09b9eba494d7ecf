"""The enroll wizard and the dashboard in headless Chromium, as a PDS operator and a relay operator use them."""
from __future__ import annotations

import json
import shlex
import smtplib
import subprocess
import time
import urllib.parse

import dns.rdatatype
import dns.zone
import pytest
from selenium.webdriver.common.by import By

from harness.browser import chromium, click_and_load
from harness.smtp import insecure, message, submission

DID = "did:plc:webenrollwebenrollwebenr"
DOMAIN = "pds.webenroll.example"


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def web_relay(mail_relay):
    """Members are told to connect to 127.0.0.1, so the page's commands run here verbatim."""
    return mail_relay({"publicSmtp": {"host": "127.0.0.1"}})


def write_attestation(atproto, did: str, page: dict) -> None:
    """What the member does with the page's record: putRecord to its own repo."""
    record = json.loads(page["attestation"])
    atproto.register(did)
    atproto.put_record(did, record["$type"], record["domain"], record)


def enroll_in_browser(browser, relay, did: str, domain: str, contact: str = "") -> dict:
    browser.get(relay.http_url + "/enroll")
    browser.find_element(By.ID, "did").send_keys(did)
    browser.find_element(By.ID, "domain").send_keys(domain)
    if contact:
        browser.find_element(By.ID, "contact").send_keys(contact)
    click_and_load(browser, browser.find_element(By.ID, "enroll"))
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
    return {
        "apiKey": text("api-key"),
        "status": text("status"),
        "zone": browser.find_element(By.ID, "zone-lines").get_attribute("value"),
        "swaks": text("swaks"),
        "pdsEnv": dict(line.split("=", 1) for line in text("pds-env").splitlines()),
        "advice": text("advice"),
        "attestation": text("attestation"),
        "verification": text("verification"),
    }


def publish_zone_lines(dns_server, domain: str, lines: str) -> list[str]:
    """Paste the page's zone-file lines into a zone, as a member would, and publish what it holds."""
    zone_text = f"$TTL 3600\n@ IN SOA ns.{domain}. host.{domain}. 1 3600 600 86400 60\n@ IN NS ns.{domain}.\n{lines}\n"
    zone = dns.zone.from_text(zone_text, origin=domain, relativize=False, check_origin=False)
    published = []
    for name, rdataset in zone.iterate_rdatasets(dns.rdatatype.TXT):
        for rdata in rdataset:
            value = b"".join(rdata.strings).decode()
            dns_server.replace(name.to_text(omit_final_dot=True), "TXT", value)
            published.append(name.to_text(omit_final_dot=True))
    return published


def wait_until(condition, timeout: float = 30) -> None:
    """The stream apps fold events into relay_events and daily stats moments after the fact."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)


def login(browser, relay, token: str | None = None) -> None:
    browser.get(relay.http_url + "/admin/login")
    browser.find_element(By.ID, "token").send_keys(token or relay.admin_token)
    click_and_load(browser, browser.find_element(By.ID, "login"))


def row_status(browser, did: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, f'tr[data-did="{did}"]').get_attribute("data-status")


def test_wizard_then_approve_button_then_step5_swaks_and_pds_url(web_relay, dns_server, atproto, sink_mx, browser):
    relay = web_relay
    page = enroll_in_browser(browser, relay, DID, DOMAIN, contact="admin@webenroll.example")
    assert page["apiKey"].startswith("atmos_") and page["status"] == "pending"
    assert "--auth PLAIN" in page["swaks"] and f"--auth-user {DOMAIN}" in page["swaks"]
    smtp_url = page["pdsEnv"]["PDS_EMAIL_SMTP_URL"]
    parsed = urllib.parse.urlsplit(smtp_url)
    assert parsed.scheme == "smtps" and parsed.port == relay.ports["smtps"]
    assert parsed.username == DOMAIN and ":" not in urllib.parse.unquote(parsed.username)
    assert urllib.parse.unquote(parsed.password) == page["apiKey"]
    assert page["pdsEnv"]["PDS_EMAIL_FROM_ADDRESS"] == f"noreply@{DOMAIN}"
    assert "spam" in page["advice"] and "5 messages an hour and 20 a day" in page["advice"]
    assert '"$type": "email.atmos.attestation"' in page["attestation"]
    assert page["verification"] == "pending"
    published = publish_zone_lines(dns_server, DOMAIN, page["zone"])
    assert len([n for n in published if "._domainkey." in n]) == 2 and f"_dmarc.{DOMAIN}" in published
    write_attestation(atproto, DID, page)

    step5 = shlex.split(page["swaks"].replace("you@example.com", "someone@recipient.test"))
    pending = subprocess.run(step5, capture_output=True, text=True, timeout=60)
    assert "535 5.7.8 pending operator approval" in pending.stdout + pending.stderr

    login(browser, relay)
    assert browser.current_url.endswith("/admin/members")
    assert row_status(browser, DID) == "pending"
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, f'tr[data-did="{DID}"] button.approve'))
    assert row_status(browser, DID) == "active"
    assert relay.logs("admin.member", action="approve", did=DID)[0]["actor"] == "admin:session"
    assert relay.wait_for("domain.verified", did=DID, domain=DOMAIN)

    sent = subprocess.run(step5, capture_output=True, text=True, timeout=60)
    assert "250 2.0.0 Ok: queued" in sent.stdout, sent.stdout + sent.stderr
    with smtplib.SMTP_SSL(parsed.hostname, parsed.port, context=insecure(), timeout=30) as pds:
        pds.login(urllib.parse.unquote(parsed.username), urllib.parse.unquote(parsed.password))
        sender = page["pdsEnv"]["PDS_EMAIL_FROM_ADDRESS"]
        pds.sendmail(sender, ["reset@recipient.test"], message(sender, "reset@recipient.test", "Reset your password"))
    relay.wait_for("delivery.result", status="delivered", timeout=30,
                   predicate=lambda line: line["recipient"] == "reset@recipient.test")
    relay.wait_for("delivery.result", status="delivered", timeout=30,
                   predicate=lambda line: line["recipient"] == "someone@recipient.test")


def test_wizard_refuses_bad_input_with_clear_errors(web_relay, browser):
    relay = web_relay
    browser.get(relay.http_url + "/enroll")
    browser.find_element(By.ID, "did").send_keys("did:plc:short")
    browser.find_element(By.ID, "domain").send_keys(DOMAIN)
    click_and_load(browser, browser.find_element(By.ID, "enroll"))
    assert "is not a valid did:plc" in browser.find_element(By.ID, "enroll-error").text
    assert browser.find_element(By.ID, "domain").get_attribute("value") == DOMAIN
    browser.find_element(By.ID, "did").clear()
    browser.find_element(By.ID, "did").send_keys(DID)
    browser.find_element(By.ID, "domain").clear()
    browser.find_element(By.ID, "domain").send_keys("not a domain")
    click_and_load(browser, browser.find_element(By.ID, "enroll"))
    assert "domain" in browser.find_element(By.ID, "enroll-error").text
    assert relay.cli_json("member", "list") == []


def test_detail_page_shows_dkim_in_dns_attestation_limits_and_activity(web_relay, dns_server, atproto, browser):
    relay = web_relay
    page = enroll_in_browser(browser, relay, DID, DOMAIN)
    login(browser, relay)
    detail = relay.http_url + f"/admin/members/{DID}"

    def statuses() -> tuple[list[str], str]:
        browser.get(detail)
        dkim = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".dkim-status")]
        return dkim, browser.find_element(By.CSS_SELECTOR, ".attestation-status").text

    assert statuses() == (["missing", "missing"], "unknown")
    publish_zone_lines(dns_server, DOMAIN, page["zone"])
    atproto.register(DID)
    assert statuses() == (["published", "published"], "missing")
    selectors = relay.cli_json("member", "show", DID)["domains"][0]["selectors"]
    dns_server.replace(f"{selectors[1]}._domainkey.{DOMAIN}", "TXT",
                       "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    atproto.put_record(DID, "email.atmos.attestation", DOMAIN,
                       {"$type": "email.atmos.attestation", "domain": DOMAIN, "dkimSelectors": selectors,
                        "relay": "atmos.test"})
    assert statuses() == (["published", "mismatch"], "verified")
    assert browser.find_element(By.ID, "tier").text == "warming"
    assert browser.find_element(By.ID, "limits").text.startswith("5 an hour, 20 a day")

    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button.approve"))
    assert browser.find_element(By.ID, "member-status").text == "active"
    assert browser.find_element(By.ID, "domains-proven").text == "no"
    assert "DKIM key mismatch" in browser.find_element(By.CSS_SELECTOR, ".proof-failure").text
    publish_zone_lines(dns_server, DOMAIN, page["zone"])
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button.verify"))
    assert browser.find_element(By.ID, "domains-proven").text == "yes"
    assert browser.find_element(By.CSS_SELECTOR, ".proof-status").text == "verified"
    s = submission(relay)
    s.login(DOMAIN, page["apiKey"])
    for n in range(3):
        s.sendmail(f"noreply@{DOMAIN}", [f"user{n}@recipient.test"],
                   message(f"noreply@{DOMAIN}", f"user{n}@recipient.test"))
    s.quit()
    wait_until(lambda: sum(d["delivered"] for d in relay.http_json(f"/admin/members/{DID}")["activity"]) == 3)
    browser.get(detail)
    chart = browser.find_element(By.ID, "activity-chart")
    totals = {e.get_attribute("data-series"): int(e.get_attribute("data-total"))
              for e in chart.find_elements(By.CSS_SELECTOR, "polyline.series")}
    assert totals == {"sent": 3, "delivered": 3, "bounced": 0, "complained": 0}
    assert chart.find_elements(By.CSS_SELECTOR, "text")
    assert "3 in the last 24 hours" in browser.page_source

    browser.find_element(By.CSS_SELECTOR, 'input[name="reason"]').send_keys("looks scraped")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button.suspend"))
    assert browser.find_element(By.ID, "member-status").text == "suspended"
    assert browser.find_element(By.ID, "reason").text == "looks scraped"
    events_path = f"/admin/events?did={DID}&action=member_suspended"
    wait_until(lambda: relay.http_json(events_path)["count"] == 1)
    browser.get(relay.http_url + events_path)
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tr[data-action]")
    assert [r.get_attribute("data-action") for r in rows] == ["member_suspended"]


def test_dashboard_needs_a_login_and_a_wrong_token_is_refused(web_relay, browser):
    relay = web_relay
    browser.get(relay.http_url + "/admin/members")
    assert browser.current_url.endswith("/admin/login")
    login(browser, relay, token="not-the-token")
    assert browser.find_element(By.ID, "login-error").text == "That is not the admin token."
    assert relay.logs("admin.login", result="failed")
    login(browser, relay)
    cookie = browser.get_cookie("atmos_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "header form button"))
    assert browser.current_url.endswith("/admin/login")
    assert browser.get_cookie("atmos_admin") is None


def test_labeler_issues_verified_mail_operator_and_withdraws_it(web_relay, dns_server, atproto):
    relay = web_relay
    enrolled = relay.enroll(DID, DOMAIN, prove=False)
    label = lambda: relay.cli_json("member", "show", DID)["labels"]  # noqa: E731
    ran = relay.cli_json("invoke", "labeler", "--payload", "{}")
    assert {k: ran[k] for k in ("checked", "added", "removed", "undecided")} == {
        "checked": 1, "added": [], "removed": [], "undecided": []}
    dns_server.publish(enrolled["dnsRecords"])
    assert relay.cli_json("invoke", "labeler", "--payload", "{}")["undecided"] == [DID]
    atproto.register(DID)
    assert relay.cli_json("invoke", "labeler", "--payload", "{}")["added"] == []
    assert label() == []
    atproto.put_record(DID, "email.atmos.attestation", DOMAIN,
                       {"$type": "email.atmos.attestation", "domain": DOMAIN,
                        "dkimSelectors": enrolled["selectors"], "relay": "atmos.test"})
    ran = relay.cli_json("invoke", "labeler", "--payload", "{}")
    assert ran["added"] == [DID]
    assert label() == ["verified-mail-operator"]
    assert relay.http_json(f"/admin/members/{DID}")["labelDetails"][0]["src"] == "labeler"
    dns_server.delete(f"{enrolled['selectors'][0]}._domainkey.{DOMAIN}")
    assert relay.cli_json("invoke", "labeler", "--payload", "{}")["removed"] == [DID]
    assert label() == []
    assert "labeler" in [f["name"] for f in relay.cli_json("functions", "--json")]
