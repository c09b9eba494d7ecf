"""The admin API as the runbook drives it (tasks 3 and 4, "Member is suspended but shouldn't be"),
the dashboard's sessions as a browser holds them, and the enroll endpoint as a script drives it
with `Accept: application/json`."""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.parse
from pathlib import Path

import yaml

from harness.relay import ROOT, enroll_published
from harness.smtp import message, submission
from runtime.trusted_proxies import TrustedProxies

RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook.md"
RUNBOOK_HOST = "http://atmos-relay.internal.example:8080"
DID = "did:plc:adminapiadminapiadminapi"
DOMAIN = "pds.adminapi.example"


def runbook_curl(action: str) -> str:
    """The runbook's curl line for /admin/member/<did>/<action>, continuation lines joined."""
    text = RUNBOOK.read_text()
    commands = re.findall(r"^curl .*?(?<!\\)$", text.replace("\\\n", " "), flags=re.M)
    return next(c for c in commands if f"/admin/member/<did>/{action}" in c)


def run_runbook_curl(relay, action: str, did: str, reason: str = "") -> dict:
    line = runbook_curl(action).replace(RUNBOOK_HOST, relay.http_url).replace("<did>", did)
    line = line.replace("<url-encoded>", urllib.parse.quote(reason))
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "ADMIN": relay.admin_token})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def enroll_json(relay, **fields) -> tuple[int, dict]:
    status, body, _ = relay.http("POST", "/enroll", token=None, data=urllib.parse.urlencode(fields).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    return status, body


def auth_reply(relay, username: str, key: str) -> str:
    s = submission(relay)
    try:
        code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{username}\0{key}".encode()).decode())
        return f"{code} {text.decode()}"
    finally:
        s.close()


def outbox_actions(relay, name: str) -> list[dict]:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    try:
        return [json.loads(v)["data"] for (v,) in db.execute(
            "SELECT value FROM outbox WHERE topic = 'osprey.actions_input' ORDER BY id")
            if json.loads(v)["data"]["action_name"] == name]
    finally:
        db.close()


def test_runbook_approve_suspend_reactivate_with_curl(relay):
    status, enrolled = enroll_json(relay, did=DID, domain=DOMAIN)
    assert status == 201 and enrolled["status"] == "pending"
    key = enrolled["apiKey"]
    assert auth_reply(relay, DOMAIN, key) == "535 5.7.8 pending operator approval"

    assert run_runbook_curl(relay, "approve", DID)["status"] == "active"
    assert auth_reply(relay, DOMAIN, key) == "235 2.7.0 Authentication successful"

    suspended = run_runbook_curl(relay, "suspend", DID, reason="complaint spike, see ticket #42")
    assert suspended["status"] == "suspended" and suspended["reason"] == "complaint spike, see ticket #42"
    assert auth_reply(relay, DOMAIN, key) == "535 5.7.8 account suspended"
    assert auth_reply(relay, DID, key) == "535 5.7.8 account suspended"
    rejected = [e for e in outbox_actions(relay, "relay_rejected") if e["data"]["reject_reason"] == "suspended"]
    assert len(rejected) == 2 and all(e["data"]["sender_did"] == DID for e in rejected)

    assert run_runbook_curl(relay, "reactivate", DID)["status"] == "active"
    assert auth_reply(relay, DOMAIN, key) == "235 2.7.0 Authentication successful"
    actions = [line["action"] for line in relay.logs("admin.member", did=DID)]
    assert actions == ["approve", "suspend", "reactivate"]

    query = (f"SELECT verdicts, raw FROM relay_events WHERE sender_did = \"{DID}\""
             " AND action_name = \"member_suspended\" ORDER BY id DESC LIMIT 1")
    deadline = time.monotonic() + 30
    while True:
        found = subprocess.run(["sqlite3", str(relay.state / "relay.sqlite"), query], capture_output=True, text=True)
        if found.stdout.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    verdicts, raw = found.stdout.strip().split("|", 1)
    assert json.loads(raw)["ActionData"]["reason"] == "complaint spike, see ticket #42"
    assert json.loads(raw)["ActionData"]["actor"] == "admin:bearer"


def test_admin_api_refuses_without_the_token_and_knows_no_strangers(relay):
    enroll_json(relay, did=DID, domain=DOMAIN)
    for method, path in (("POST", f"/admin/member/{DID}/approve"), ("GET", "/admin/members"),
                         ("GET", f"/admin/members/{DID}"), ("GET", "/admin/events")):
        status, body, headers = relay.http(method, path, token=None)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), (path, body)
        status, body, _ = relay.http(method, path, token="wrong-token")
        assert status == 403, (path, body)
    status, body, _ = relay.http("POST", "/admin/member/did:plc:nobodynobodynobodynobody/approve")
    assert status == 404 and "no member" in body["error"]
    status, body, _ = relay.http("POST", "/admin/member/not-a-did/suspend")
    assert status == 400
    assert relay.cli_json("member", "show", DID)["status"] == "pending"


def test_admin_pages_answer_json(relay):
    enroll_json(relay, did=DID, domain=DOMAIN)
    relay.http("POST", f"/admin/member/{DID}/approve")
    listed = relay.http_json("/admin/members")
    row = next(m for m in listed["members"] if m["did"] == DID)
    assert row["status"] == "active" and row["domains"] == [DOMAIN] and row["tier"] == "warming"
    assert row["sent24h"] == 0 and row["labels"] == []
    assert relay.http_json("/admin/members?status=pending")["members"] == []
    detail = relay.http_json(f"/admin/members/{DID}")
    assert [c["status"] for c in detail["domainChecks"][0]["dkim"]] in (["missing", "missing"], ["error", "error"])
    assert len(detail["activity"]) == 30 and detail["hourlyCap"] == 5 and detail["suppressions"] == []
    relay.http("POST", f"/admin/member/{DID}/suppressions", data=b'{"recipient": "gone@recipient.test"}',
               headers={"Content-Type": "application/json"})
    status, page, _ = relay.http("GET", f"/admin/members/{DID}", headers={"Accept": "text/html"})
    assert "Suppressed recipients (1)" in page and "gone@recipient.test" in page
    status, body, _ = relay.http("GET", "/admin/members?status=bogus")
    assert status == 400


def test_re_enrolling_rotates_keys_only_with_the_current_key(relay):
    status, first = enroll_json(relay, did=DID, domain=DOMAIN)
    relay.http("POST", f"/admin/member/{DID}/approve")
    status, body = enroll_json(relay, did=DID, domain=DOMAIN)
    assert status == 403 and "current API key" in body["error"]
    status, body = enroll_json(relay, did="did:plc:otherotherotherotherothe", domain=DOMAIN)
    assert status == 201 and body["verification"] == "pending"  # an unproven claim blocks no one
    status, body = enroll_json(relay, did=DID, domain="second.adminapi.example")
    assert status == 403
    status, body = enroll_json(relay, did="did:web:", domain=DOMAIN)
    assert status == 400 and "did:web" in body["error"]

    status, second = enroll_json(relay, did=DID, domain=DOMAIN, currentApiKey=first["apiKey"])
    assert status == 201 and second["rotated"] and second["apiKey"] != first["apiKey"]
    assert second["status"] == "active"
    assert auth_reply(relay, DOMAIN, first["apiKey"]) == "535 5.7.8 Authentication credentials invalid"
    assert auth_reply(relay, DOMAIN, second["apiKey"]) == "235 2.7.0 Authentication successful"
    stored = sqlite3.connect(relay.state / "relay.sqlite").execute(
        "SELECT dkim_rsa_pubkey, api_key_hash FROM member_domains WHERE domain = ?", (DOMAIN,)).fetchone()
    assert stored[0] in json.dumps(second["dnsRecords"]) and second["apiKey"] not in stored[1]


def test_enroll_json_describes_the_setup(relay):
    status, body = enroll_json(relay, did=DID, domain=DOMAIN, forwardTo="ops@adminapi.example")
    assert status == 201
    assert {r["type"] for r in body["dnsRecords"]} == {"TXT"} and len(body["zoneFile"]) == 4
    assert body["smtp"]["username"] == DOMAIN and body["swaks"].count("--auth PLAIN") == 1
    assert body["pds"]["PDS_EMAIL_SMTP_URL"].startswith(f"smtps://{DOMAIN}:")
    assert body["attestation"]["record"]["dkimSelectors"] == body["selectors"]
    assert relay.cli_json("member", "show", DID)["forwardTo"] == "ops@adminapi.example"
    status, body = enroll_json(relay, did="did:plc:thirdthirdthirdthirdthir", domain="x.example", forwardTo="nope")
    assert status == 400 and "forward address" in body["error"]


def test_a_session_cookie_without_its_csrf_token_changes_nothing(relay):
    enroll_json(relay, did=DID, domain=DOMAIN)
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = relay.http("POST", "/admin/login", token=None, data=b"token=" + relay.admin_token.encode(),
                              headers=form_type)
    assert status == 403  # a login form posted from elsewhere: no pre-login cookie, no CSRF token
    _, page, headers = relay.http("GET", "/admin/login", token=None, headers={"Accept": "text/html"})
    login_cookie = headers["Set-Cookie"].split(";")[0]
    login_csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    status, _, headers = relay.http("POST", "/admin/login", token=None,
                                    data=f"csrf={login_csrf}&token={relay.admin_token}".encode(),
                                    headers={**form_type, "Cookie": login_cookie})
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = {"Cookie": cookie.split(";")[0], "Accept": "text/html",
               "Content-Type": "application/x-www-form-urlencoded"}
    for data in (b"", b"csrf=forged"):
        status, _, _ = relay.http("POST", f"/admin/member/{DID}/approve", token=None, data=data, headers=session)
        assert status == 403
    assert relay.cli_json("member", "show", DID)["status"] == "pending"
    page = relay.http("GET", "/admin/members", token=None, headers=session)[1]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    status, _, headers = relay.http("POST", f"/admin/member/{DID}/approve", token=None,
                                    data=f"csrf={csrf}&next=/admin/members".encode(), headers=session)
    assert relay.cli_json("member", "show", DID)["status"] == "active"


def test_the_wizard_throttles_one_address(relay):
    for n in range(20):
        status, body = enroll_json(relay, did=f"did:plc:bad{n}", domain=DOMAIN)
        assert status == 400
    status, body = enroll_json(relay, did=DID, domain=DOMAIN)
    assert status == 429 and "too many enrollments" in body["error"]
    assert relay.wait_for("enroll.refused", reason="throttled")  # the log line may trail the answer
    assert relay.cli_json("member", "list") == []


def test_queue_page_shows_who_waits_and_what_the_mx_said(mail_relay, dns_server, sink_mx):
    sink_mx.behave(rcpt={"busy@": "451 4.2.1 Mailbox busy, try later"})
    relay = mail_relay()
    member = enroll_published(relay, dns_server, DID, DOMAIN)
    s = submission(relay)
    s.login(DOMAIN, member["apiKey"])
    for to in ("busy@recipient.test", "fine@recipient.test"):
        s.sendmail(f"noreply@{DOMAIN}", [to], message(f"noreply@{DOMAIN}", to))
    s.quit()
    relay.wait_for("delivery.result", status="deferred", timeout=30)
    relay.wait_for("delivery.result", status="delivered", timeout=30)
    queued = relay.http_json("/admin/queue")
    assert [r["recipient"] for r in queued["recipients"]] == ["busy@recipient.test"]
    row = queued["recipients"][0]
    assert row["did"] == DID and row["state"] == "queued" and row["attempts"] >= 1
    assert row["lastCode"] == 451 and "Mailbox busy" in row["lastReply"] and row["destination"] == "recipient.test"
    assert queued["summary"]["delivered"] == 1
    everything = relay.http_json(f"/admin/queue?state=&did={DID}")
    assert {r["recipient"] for r in everything["recipients"]} == {"busy@recipient.test", "fine@recipient.test"}
    status, page, _ = relay.http("GET", "/admin/queue", headers={"Accept": "text/html"})
    assert status == 200 and 'data-recipient="busy@recipient.test"' in page and "Mailbox busy" in page
    assert relay.http("GET", "/admin/queue?state=stuck")[0] == 400


# --- dashboard sessions -------------------------------------------------------------------------

def json_login(relay, source: str = "127.0.0.1", headers: dict | None = None) -> tuple[int, str]:
    """POST /admin/login as JSON from a given loopback address: (status, the Set-Cookie header)."""
    conn = http.client.HTTPConnection("127.0.0.1", relay.ports["http"], timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/admin/login", body=json.dumps({"token": relay.admin_token}),
                     headers={"Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Set-Cookie") or ""
    finally:
        conn.close()


def session_headers(set_cookie: str, accept: str = "application/json") -> dict:
    return {"Cookie": set_cookie.split(";")[0], "Accept": accept,
            "Content-Type": "application/x-www-form-urlencoded"}


def page_csrf(relay, session: dict) -> str:
    page = relay.http("GET", "/admin/members", token=None, headers={**session, "Accept": "text/html"})[1]
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_logout_revokes_the_session_server_side(relay):
    status, set_cookie = json_login(relay)
    assert status == 303
    session = session_headers(set_cookie)
    assert relay.http("GET", "/admin/members", token=None, headers=session)[0] == 200
    csrf = page_csrf(relay, session)
    status, _, headers = relay.http("POST", "/admin/logout", token=None, data=f"csrf={csrf}".encode(),
                                    headers=session)
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]
    relay.wait_for("admin.logout")

    # The browser dropped the cookie; a copy kept elsewhere is worth nothing now.
    status, body, _ = relay.http("GET", "/admin/members", token=None, headers=session)
    assert status == 401, body
    status, _, headers = relay.http("GET", "/admin/members", token=None, headers={**session, "Accept": "text/html"})
    assert status == 303 and headers["Location"] == "/admin/login"
    status, _, _ = relay.http("POST", f"/admin/member/{DID}/approve", token=None, data=f"csrf={csrf}".encode(),
                              headers=session)
    assert status == 401
    rows = sqlite3.connect(relay.state / "relay.sqlite").execute("SELECT COUNT(*) FROM admin_sessions").fetchone()
    assert rows == (0,)


def test_logins_in_the_same_second_get_their_own_session_and_csrf_token(relay):
    cookies = [json_login(relay)[1].split(";")[0] for _ in range(5)]
    assert len(set(cookies)) == 5
    sessions = [session_headers(c) for c in cookies]
    assert len({page_csrf(relay, s) for s in sessions}) == 5
    # One session's CSRF token is no good with another's cookie.
    enroll_json(relay, did=DID, domain=DOMAIN)
    status, _, _ = relay.http("POST", f"/admin/member/{DID}/approve", token=None,
                              data=f"csrf={page_csrf(relay, sessions[0])}".encode(), headers=sessions[1])
    assert status == 403 and relay.cli_json("member", "show", DID)["status"] == "pending"


def test_the_secure_flag_and_client_address_come_only_from_a_trusted_proxy(start_relay):
    relay = start_relay({"http": {"trustedProxies": ["127.0.0.2/32"]}}, name="behind-proxy")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}

    status, cookie = json_login(relay, "127.0.0.1", forwarded)  # anyone may send the headers
    assert status == 303 and "Secure" not in cookie
    status, cookie = json_login(relay, "127.0.0.2")  # the proxy, on plain HTTP
    assert status == 303 and "Secure" not in cookie
    status, cookie = json_login(relay, "127.0.0.2", forwarded)
    assert status == 303 and "; Secure" in cookie and "HttpOnly" in cookie

    clients = [r["client"] for r in relay.wait_for("admin.login", result="ok", count=3)]
    assert clients == ["127.0.0.1", "127.0.0.2", "203.0.113.9"]  # the nearest hop the proxy saw

    conn = http.client.HTTPConnection("127.0.0.1", relay.ports["http"], timeout=30, source_address=("127.0.0.2", 0))
    conn.request("GET", "/admin/login", headers={**forwarded, "Accept": "text/html"})
    response = conn.getresponse()
    response.read()
    assert "; Secure" in response.getheader("Set-Cookie")  # the login form's pre-login cookie too
    conn.close()


def test_the_nearest_untrusted_hop_is_the_client():
    proxies = TrustedProxies(["10.0.0.0/8", "::1"])
    hops = {"x-forwarded-for": "192.0.2.1, 198.51.100.2, 10.1.1.1", "x-forwarded-proto": "http, https"}
    assert proxies.origin("10.0.0.5", hops, "http").address == "198.51.100.2"
    assert proxies.origin("10.0.0.5", hops, "http").scheme == "https"
    assert proxies.origin("192.0.2.50", hops, "http") == proxies.origin("192.0.2.50", {}, "http")
    assert proxies.origin("192.0.2.50", hops, "http").address == "192.0.2.50"
    assert proxies.origin("::1", {"x-forwarded-for": "not-an-address"}, "http").address == "::1"
    assert proxies.origin("::ffff:10.2.3.4", {"x-forwarded-for": "192.0.2.9"}, "http").address == "192.0.2.9"
    assert proxies.origin("10.0.0.5", {"x-forwarded-proto": "gopher"}, "http").scheme == "http"
    assert TrustedProxies([]).origin("10.0.0.5", hops, "http").address == "10.0.0.5"


def test_wrong_admin_tokens_are_slowed_like_failed_auth(start_relay):
    relay = start_relay({"smtp": {"authFailureLimit": 2, "authFailureDelay": "0.2s", "authFailureMaxDelay": "5s"}},
                        name="throttled")
    for token in ("guess-1", "guess-2", "guess-3"):
        assert relay.http("GET", "/admin/members", token=token)[0] == 403
    status, _, _ = relay.http("POST", "/admin/login", token=None, data=b'{"token": "guess-4"}',
                              headers={"Content-Type": "application/json"})
    assert status == 403
    failures = [r["failures"] for r in relay.wait_for("admin.auth", result="failed", count=4)]
    assert failures == [1, 2, 3, 4]
    assert [r["delay"] for r in relay.logs("admin.auth_throttled")] == [0.2, 0.4]

    # The right token waits its turn too, then clears the address's count.
    assert relay.http("GET", "/admin/members")[0] == 200
    assert [r["delay"] for r in relay.logs("admin.auth_throttled")] == [0.2, 0.4, 0.8]
    assert relay.http("GET", "/admin/members")[0] == 200
    assert len(relay.logs("admin.auth_throttled")) == 3


def test_every_admin_route_is_behind_the_admin_authorizer():
    functions = yaml.safe_load((ROOT / "serverless.yml").read_text())["functions"]
    for name, spec in functions.items():
        paths = [e["httpApi"].split(" ", 1)[1] for e in spec.get("events", []) if "httpApi" in e]
        if any(p.startswith("/admin") for p in paths) and name != "admin-login":
            assert spec.get("authorizer") == "admin-authorizer", name


def test_the_relays_secrets_are_readable_by_its_user_only(start_relay):
    relay = start_relay({"adminToken": ""}, name="modes")
    relay.wait_for("admin_token.generated")
    assert auth_reply(relay, "nobody.example", "wrong").startswith("535")
    relay.wait_for("smtp.auth", result="invalid")
    state = relay.state
    expected = {"relay.sqlite", "relay.sqlite-wal", "relay.sqlite-shm", "labels.db", "auth-failures.sqlite",
                "auth-failures.sqlite-wal", "admin-token", "operator-dkim-keys.json"}
    present = {p.name for p in state.iterdir()}
    assert expected <= present, expected - present
    databases = {p for p in state.iterdir() if p.name.split("-")[0].endswith((".sqlite", ".db"))}
    for path in {state / name for name in expected} | databases | set((state / "tls").glob("*key*")):
        assert path.stat().st_mode & 0o777 == 0o600, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"

    # An install from before is tightened at the next start.
    relay.stop()
    os.chmod(state / "relay.sqlite", 0o644)
    relay.restart()
    assert (state / "relay.sqlite").stat().st_mode & 0o777 == 0o600


def test_an_admin_route_that_lost_its_authorizer_serves_nobody(start_relay, tmp_path):
    manifest = yaml.safe_load((ROOT / "serverless.yml").read_text())
    del manifest["functions"]["admin-members"]["authorizer"]
    path = tmp_path / "serverless.yml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    relay = start_relay({"manifest": str(path)}, name="no-gate")
    for token in (None, "wrong-token", ""):
        status, body, _ = relay.http("GET", "/admin/members", token=token)
        assert status == 500 and "members" not in body, body
    relay.wait_for("function.error", function="admin-members", predicate=lambda r: "AuthorizerMissing" in r["error"])
    assert relay.http("GET", "/admin/queue")[0] == 200  # the routes that kept theirs still work
