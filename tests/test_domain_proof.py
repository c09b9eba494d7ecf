"""A member sends only as domains it has proven: DKIM records in the domain's DNS, an attestation in its repo.

Claims go through the enroll page as a member makes them, DNS is a real
BIND and the member's repo the fake PLC/PDS; the relay looks both up itself.
"""
from __future__ import annotations

import json
import sqlite3
import urllib.parse

import pytest

from functions.members.domain_proof import PROOF_GRACE, Finding, decide, recheck_due
from harness.smtp import message, submission

OWNER = "did:plc:ownerownerownerownerowne"
STRANGER = "did:plc:strangerstrangerstranger"
HOME = "pds.owner.example"
BANK = "bank.test"


@pytest.fixture
def relay(mail_relay):
    return mail_relay({"publicSmtp": {"host": "127.0.0.1"}})


def enroll_page(relay, **fields) -> tuple[int, dict]:
    """The enroll wizard as a script drives it (`Accept: application/json`)."""
    status, body, _ = relay.http("POST", "/enroll", token=None, data=urllib.parse.urlencode(fields).encode())
    return status, body


def send(relay, username: str, api_key: str, sender: str, to: str = "someone@recipient.test") -> tuple[int, str]:
    s = submission(relay)
    s.login(username, api_key)
    s.mail(sender)
    s.rcpt(to)
    code, text = s.data(message(sender, to))
    s.quit()
    return code, text.decode()


def claim(relay, did: str, domain: str) -> dict:
    return next(d for d in relay.cli_json("member", "show", did)["domains"] if d["domain"] == domain)


def events_of(relay, did: str, name: str) -> list[dict]:
    """The data of the member's events of one name, as written to the outbox."""
    db = sqlite3.connect(relay.state / "relay.sqlite")
    rows = db.execute("SELECT value FROM outbox WHERE topic = 'osprey.actions_input' AND key = ?", (did,)).fetchall()
    db.close()
    actions = [json.loads(v)["data"] for (v,) in rows]
    return [a["data"] for a in actions if a["action_name"] == name]


def test_a_domain_added_with_the_key_carries_mail_only_while_proven(relay, proofs, sink_mx):
    member = relay.enroll(OWNER, HOME)
    status, added = enroll_page(relay, did=OWNER, domain=BANK, currentApiKey=member["apiKey"])
    assert status == 201 and added["verification"] == "pending" and added["status"] == "active"
    assert claim(relay, OWNER, BANK)["verification"] == "pending"
    assert relay.cli_json("member", "show", OWNER)["domainsProven"] is False

    code, text = send(relay, OWNER, added["apiKey"], f"security@{BANK}")
    assert code == 550 and text.startswith(f"5.7.1 From: domain {BANK} is not verified yet")
    assert "attestation" in text
    assert send(relay, OWNER, member["apiKey"], f"noreply@{HOME}")[0] == 250

    proofs.publish(added)
    verified = relay.cli_json("member", "verify", OWNER)
    bank = next(d for d in verified["domains"] if d["domain"] == BANK)
    assert bank["verification"] == "pending" and "attestation missing" in bank["lastFailure"]
    proofs.attest(OWNER, BANK, added["selectors"])
    verified = relay.cli_json("member", "verify", OWNER)
    assert verified["domainsProven"] is True and claim(relay, OWNER, BANK)["verifiedAt"]
    assert {"did": OWNER, "domain": BANK, "status": "verified", "changed": True} in [
        {k: c[k] for k in ("did", "domain", "status", "changed")} for c in verified["checks"]]
    assert [e["domain"] for e in events_of(relay, OWNER, "domain_verified")] == [HOME, BANK]
    code, _ = send(relay, OWNER, added["apiKey"], f"security@{BANK}", to="proven@recipient.test")
    assert code == 250
    relay.wait_for("delivery.result", status="delivered", recipient="proven@recipient.test", timeout=30)

    proofs.dns.delete(f"{added['selectors'][0]}._domainkey.{BANK}")
    status, _, _ = relay.http("POST", f"/admin/member/{OWNER}/verify")
    lost = claim(relay, OWNER, BANK)
    assert status == 200 and lost["verification"] == "unverified" and "DKIM key missing" in lost["lastFailure"]
    assert relay.wait_for("domain.unverified", did=OWNER, domain=BANK)[0]["reason"] == lost["lastFailure"]
    assert [e["reason"] for e in events_of(relay, OWNER, "domain_unverified")] == [lost["lastFailure"]]
    assert send(relay, OWNER, added["apiKey"], f"security@{BANK}")[0] == 550
    assert send(relay, OWNER, member["apiKey"], f"noreply@{HOME}")[0] == 250


def test_a_strangers_unproven_claim_does_not_block_the_owner(relay, proofs):
    status, grabbed = enroll_page(relay, did=STRANGER, domain=BANK)
    assert status == 201 and grabbed["verification"] == "pending"
    relay.cli_json("member", "approve", STRANGER)
    status, owned = enroll_page(relay, did=OWNER, domain=BANK)
    assert status == 201, owned
    relay.cli_json("member", "approve", OWNER)
    proofs.prove(owned)
    relay.cli_json("member", "verify", OWNER)
    assert claim(relay, OWNER, BANK)["verification"] == "verified"

    both = relay.http_json(f"/admin/members/{STRANGER}")
    theirs = next(d for d in both["domains"] if d["domain"] == BANK)
    assert theirs["verification"] == "pending" and both["domainsProven"] is False
    assert [(o["did"], o["verification"]) for o in theirs["otherClaims"]] == [(OWNER, "verified")]
    assert [o["did"] for o in claim(relay, OWNER, BANK)["otherClaims"]] == [STRANGER]
    assert send(relay, STRANGER, grabbed["apiKey"], f"security@{BANK}")[0] == 550
    assert send(relay, BANK, owned["apiKey"], f"noreply@{BANK}")[0] == 250

    status, refused = enroll_page(relay, did="did:plc:latecomerlatecomerlateco", domain=BANK)
    assert status == 409 and refused["error"] == f"domain {BANK} is already enrolled by another member"
    proofs.attest(STRANGER, BANK, grabbed["selectors"])
    relay.cli_json("member", "verify", STRANGER)
    held = claim(relay, STRANGER, BANK)
    assert held["verification"] == "pending" and "DKIM key mismatch" in held["lastFailure"]


def test_the_owner_takes_a_domain_whose_holder_lost_its_proof(relay, proofs):
    first = relay.enroll(STRANGER, BANK)
    status, owned = enroll_page(relay, did=OWNER, domain=BANK)
    assert status == 409
    proofs.dns.delete(f"{first['selectors'][1]}._domainkey.{BANK}")
    status, owned = enroll_page(relay, did=OWNER, domain=BANK)
    assert status == 409, "a holder keeps the domain until a check sees the proof gone"
    relay.cli_json("member", "verify", STRANGER)
    assert claim(relay, STRANGER, BANK)["verification"] == "unverified"
    status, owned = enroll_page(relay, did=OWNER, domain=BANK)
    assert status == 201
    relay.cli_json("member", "approve", OWNER)
    proofs.prove(owned)
    assert relay.cli_json("member", "verify", OWNER)["domainsProven"] is True


def test_the_approval_view_shows_whether_every_domain_is_proven(relay, proofs):
    member = relay.enroll(OWNER, HOME)
    status, added = enroll_page(relay, did=OWNER, domain=BANK, currentApiKey=member["apiKey"])
    detail = relay.http_json(f"/admin/members/{OWNER}")
    assert detail["domainsProven"] is False
    assert {d["domain"]: d["verification"] for d in detail["domains"]} == {HOME: "verified", BANK: "pending"}
    status, page, _ = relay.http("GET", f"/admin/members/{OWNER}", headers={"Accept": "text/html"})
    assert 'id="domains-proven">no<' in page and f'data-domain="{BANK}" data-verification="pending"' in page
    proofs.prove(added)
    status, after, _ = relay.http("POST", f"/admin/member/{OWNER}/verify")
    assert status == 200 and after["domainsProven"] is True
    assert relay.logs("admin.member", action="verify", did=OWNER)


def make_due(relay) -> None:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    with db:
        db.execute("UPDATE member_domains SET last_checked_at = last_checked_at - 60")
    db.close()


def test_the_labeler_schedule_verifies_new_claims_and_notices_lost_proofs(relay, proofs):
    member = relay.enroll(OWNER, HOME)
    status, added = enroll_page(relay, did=OWNER, domain=BANK, currentApiKey=member["apiKey"])
    proofs.prove(added)
    # The relay's own minute may have looked at the new claim before it was proven (its first run is two
    # seconds after start): a claim looked at within 50 s is not due, so every claim is made due first.
    make_due(relay)
    ran = relay.cli_json("invoke", "labeler", "--payload", "{}")
    # This pass verified the claim, or the relay's own minute did a moment earlier: nothing else ran.
    assert claim(relay, OWNER, BANK)["verification"] == "verified", ran
    proofs.dns.delete(f"{member['selectors'][0]}._domainkey.{HOME}")
    ran = relay.cli_json("invoke", "labeler", "--payload", "{}")
    assert ran["claimsChanged"] == [], "checked a moment ago: not due yet"
    make_due(relay)
    ran = relay.cli_json("invoke", "labeler", "--payload", "{}")
    assert ran["claimsChanged"] == [{"did": OWNER, "domain": HOME, "status": "unverified"}]
    assert claim(relay, OWNER, HOME)["verification"] == "unverified"


NOW = 1_800_000_000.0


@pytest.mark.parametrize("status, finding, held_by, expected", [
    ("pending", Finding("proven", "ok"), "", ("verified", NOW, "", "domain_verified")),
    ("verified", Finding("proven", "ok"), "", ("verified", NOW, "", "")),
    ("unverified", Finding("proven", "ok"), "", ("verified", NOW, "", "domain_verified")),
    ("pending", Finding("proven", "ok"), "did:plc:x", ("pending", None, "proven, but did:plc:x holds the domain "
                                                       "and its proof still holds", "")),
    ("verified", Finding("failed", "gone"), "", ("unverified", NOW - 60, "gone", "domain_unverified")),
    ("pending", Finding("failed", "gone"), "", ("pending", None, "gone", "")),
    ("verified", Finding("undecided", "timeout"), "", ("verified", NOW - 60, "could not check: timeout", "")),
    ("pending", Finding("undecided", "timeout"), "", ("pending", None, "could not check: timeout", "")),
])
def test_decide(status, finding, held_by, expected):
    verified_at = NOW - 60 if status in ("verified", "unverified") else None
    if status == "unverified" or (held_by and status == "pending"):
        verified_at = None
    step = decide(status, verified_at, finding, held_by, NOW)
    assert (step.status, step.verified_at, step.last_failure, step.event) == expected


def test_decide_lets_an_unanswerable_proof_lapse_after_the_grace():
    step = decide("verified", NOW - PROOF_GRACE - 1, Finding("undecided", "PDS unreachable"), "", NOW)
    assert step.status == "unverified" and step.event == "domain_unverified"
    assert "PDS unreachable" in step.last_failure


@pytest.mark.parametrize("row, due", [
    ({"last_checked_at": None, "status": "pending", "rotated_at": NOW}, True),
    ({"last_checked_at": NOW - 10, "status": "verified", "rotated_at": NOW - 9e5}, False),
    ({"last_checked_at": NOW - 55, "status": "verified", "rotated_at": NOW - 9e5}, True),
    ({"last_checked_at": NOW - 55, "status": "pending", "rotated_at": NOW - 3600}, True),
    ({"last_checked_at": NOW - 55, "status": "pending", "rotated_at": NOW - 2 * 86400}, False),
    ({"last_checked_at": NOW - 3700, "status": "pending", "rotated_at": NOW - 2 * 86400}, True),
])
def test_recheck_due(row, due):
    assert recheck_due(row, NOW) is due
