"""An operator manages members from the shell, with or without the relay running."""
from __future__ import annotations

import json
import sqlite3

import pytest

from harness.relay import Relay
from harness.smtp import submission

DID = "did:plc:clicliclicliclicliclicli"
DOMAIN = "cli.example"


@pytest.fixture
def offline(tmp_path, proofs) -> Relay:
    """A relay that was configured but never started (its DNS and atproto start only if a test proves a domain)."""
    return Relay(tmp_path / "offline", proofs=proofs)


def test_enroll_prints_what_the_member_needs_once(offline):
    out = offline.cli_json("member", "enroll", "--did", DID, "--domain", "CLI.Example.")
    assert out["did"] == DID and out["domain"] == DOMAIN and out["status"] == "pending"
    assert out["apiKey"].startswith("atmos_") and len(out["apiKey"]) > 40
    assert out["selector"].startswith("atmos") and len(out["selector"]) == len("atmosYYYYMMDD")
    names = {(r["name"], r["type"]) for r in out["dnsRecords"]}
    assert (f"{out['selector']}r._domainkey.{DOMAIN}", "TXT") in names
    assert (f"{out['selector']}e._domainkey.{DOMAIN}", "TXT") in names
    assert (f"_dmarc.{DOMAIN}", "TXT") in names
    rsa = next(r for r in out["dnsRecords"] if r["name"].startswith(out["selector"] + "r"))
    assert rsa["value"].startswith("v=DKIM1; k=rsa; p=MII")
    shown = offline.cli_json("member", "show", DID)
    assert "apiKey" not in json.dumps(shown) and out["apiKey"] not in json.dumps(shown)


def test_api_key_is_stored_only_as_an_argon2id_hash(offline):
    out = offline.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    db = sqlite3.connect(offline.state / "relay.sqlite")
    (stored,) = db.execute("SELECT api_key_hash FROM member_domains WHERE domain = ?", (DOMAIN,)).fetchone()
    assert stored.startswith("$argon2id$v=19$")
    db.close()
    for path in offline.state.glob("relay.sqlite*"):
        assert out["apiKey"].encode() not in path.read_bytes()


def test_lifecycle_works_without_a_running_relay(offline):
    offline.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    assert offline.cli_json("member", "approve", DID, "--reason", "DKIM and attestation checked")["status"] == "active"
    db = sqlite3.connect(offline.state / "relay.sqlite")
    approved = [json.loads(v)["data"] for (v,) in db.execute(
        "SELECT value FROM outbox WHERE topic = 'osprey.actions_input' ORDER BY id")]
    db.close()
    assert [a["data"]["reason"] for a in approved if a["action_name"] == "member_approved"] == [
        "DKIM and attestation checked"]
    suspended = offline.cli_json("member", "suspend", DID, "--reason", "spam trap hits")
    assert suspended["status"] == "suspended" and suspended["reason"] == "spam trap hits"
    assert offline.cli_json("member", "reactivate", DID)["status"] == "active"
    listed = offline.cli_json("member", "list")
    assert listed[0]["did"] == DID and listed[0]["domains"] == [DOMAIN]
    assert offline.cli_json("member", "list", "--status", "pending") == []
    dns = offline.cli_json("member", "dns", DOMAIN)
    assert len(dns["dnsRecords"]) == 4


def test_suspend_from_the_shell_reaches_a_running_relay(relay):
    member = relay.enroll(DID, DOMAIN)
    s = submission(relay)
    assert s.login(DID, member["apiKey"])[0] == 235
    s.quit()
    relay.cli_json("member", "suspend", DID, "--reason", "operator check")
    s = submission(relay)
    code, text = s.docmd("AUTH", "PLAIN " + __import__("base64").b64encode(
        f"\0{DID}\0{member['apiKey']}".encode()).decode())
    assert (code, text) == (535, b"5.7.8 account suspended")


@pytest.mark.parametrize("did, message", [
    ("did:plc:short", "not a valid did:plc"),
    ("did:key:z6Mkabc", "DID method 'key' is not supported"),
    ("alice.example", "is not a DID"),
    ("did:web:", "not a valid did:web"),
])
def test_invalid_dids_are_refused_clearly(offline, did, message):
    result = offline.cli("member", "enroll", "--did", did, "--domain", DOMAIN, check=False)
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize("domain, message", [
    ("localhost", "at least two labels"),
    ("192.0.2.1", "is an IP address"),
    ("bad_domain.example", "bad label"),
    ("-lead.example", "bad label"),
    ("a." + "b" * 64 + ".example", "bad label"),
])
def test_invalid_domains_are_refused_clearly(offline, domain, message):
    result = offline.cli("member", "enroll", "--did", DID, f"--domain={domain}", check=False)
    assert result.returncode == 1
    assert message in result.stderr


def test_a_domain_belongs_to_the_member_that_proves_it(offline):
    offline.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    other = "did:plc:otherotherotherotherothe"
    offline.enroll(other, DOMAIN)
    result = offline.cli("member", "enroll", "--did", "did:plc:thirdthirdthirdthirdthir", "--domain", DOMAIN,
                         check=False)
    assert result.returncode == 1 and "already enrolled by another member" in result.stderr
    (mine,) = offline.cli_json("member", "show", DID)["domains"]
    assert mine["verification"] == "pending"
    assert [(c["did"], c["verification"]) for c in mine["otherClaims"]] == [(other, "verified")]


def test_member_verify_and_show_say_why_a_domain_is_not_proven(offline, proofs, atproto):
    enrolled = offline.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    assert enrolled["verification"] == "pending"
    (domain,) = offline.cli_json("member", "verify", DID)["domains"]
    assert domain["verification"] == "pending" and domain["lastCheckedAt"]
    assert "DKIM key" in domain["lastFailure"] or "could not check" in domain["lastFailure"]
    proofs.publish(enrolled)
    (domain,) = offline.cli_json("member", "verify", DID)["domains"]
    assert domain["lastFailure"] == "could not check: attestation unknown: DID document lookup answered HTTP 404"
    proofs.attest(DID, DOMAIN, enrolled["selectors"])
    shown = offline.cli_json("member", "verify", DID)
    assert shown["domainsProven"] is True and shown["domains"][0]["verification"] == "verified"
    assert offline.cli_json("member", "show", DID)["domains"][0]["verifiedAt"]


def test_re_enrolling_rotates_keys_and_api_key(relay):
    first = relay.enroll(DID, DOMAIN)
    second = relay.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    assert second["rotated"] is True and second["status"] == "active" and second["verification"] == "pending"
    assert second["apiKey"] != first["apiKey"]
    assert second["dnsRecords"][0]["value"] != first["dnsRecords"][0]["value"]
    s = submission(relay)
    with pytest.raises(Exception):
        s.login(DOMAIN, first["apiKey"])
    s = submission(relay)
    assert s.login(DOMAIN, second["apiKey"])[0] == 235


def test_unknown_member_and_bad_transitions(offline):
    result = offline.cli("member", "approve", DID, check=False)
    assert result.returncode == 1 and f"no member with DID {DID}" in result.stderr
    offline.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    result = offline.cli("member", "reactivate", DID, check=False)
    assert result.returncode == 1 and "never approved" in result.stderr


def test_a_second_domain_gets_its_own_key(offline):
    offline.cli_json("member", "enroll", "--did", DID, "--domain", DOMAIN)
    other = offline.cli_json("member", "enroll", "--did", DID, "--domain", "mail.cli.example")
    assert other["rotated"] is False
    shown = offline.cli_json("member", "show", DID)
    assert [d["domain"] for d in shown["domains"]] == [DOMAIN, "mail.cli.example"]
