"""The relay's main client for real: Bluesky's own PDS (`@atproto/pds` 0.5.35) sends its mail through it.

As a PDS operator does it: enroll in the wizard, publish the records, get approved, paste the two lines
the wizard prints (`PDS_EMAIL_SMTP_URL`, on `smtps://` or on `smtp://` with STARTTLS, and
`PDS_EMAIL_FROM_ADDRESS`) into the PDS's environment and start it. Its users then sign up and ask for a
confirmation code and a password reset through XRPC, and the mail arrives at their MX signed by the
member's domain and by the pool, every signature verified by verifiers that are not ours.
"""
from __future__ import annotations

import email
import itertools
from urllib.parse import quote, urlencode

import pytest

from harness.clock import ClockFile
from harness.pds import BlueskyPds, XrpcError
from harness.relay import Relay, events_of
from harness.verifiers import by_key, mail_dkim, mailauth

DID = "did:plc:pdsclientpdsclientpdscli"
DOMAIN = "pds.example"
# the wizard's line, its scheme, and the relay listener it names
URL_FORMS = {"smtps": ("PDS_EMAIL_SMTP_URL", "smtps", "smtps"),
             "starttls": ("PDS_EMAIL_SMTP_URL_STARTTLS", "smtp", "submission")}
_users = itertools.count()


def enroll_in_wizard(relay: Relay, did: str, domain: str) -> dict:
    """The wizard's JSON answer (its API key and PDS lines), then the proofs and the operator's approval."""
    form = urlencode({"did": did, "domain": domain}).encode()
    status, wizard, _ = relay.http("POST", "/enroll", token=None, data=form,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201, wizard
    relay.proofs.prove(wizard)
    shown = relay.cli_json("member", "approve", did)
    assert [d["verification"] for d in shown["domains"] if d["domain"] == domain] == ["verified"]
    return wizard


@pytest.fixture
def pds_relay(mail_relay):
    """Factory: a relay whose wizard names `localhost` (the relay's certificate covers it) as the SMTP host."""
    def start(config: dict | None = None, **kwargs) -> Relay:
        return mail_relay({"publicSmtp": {"host": "localhost"}, **(config or {})}, **kwargs)
    return start


@pytest.fixture
def start_pds(tmp_path):
    """Factory: start_pds(relay, wizard, url_key) -> a running PDS configured with the wizard's lines,
    trusting the relay's self-signed certificate (trust_relay=False: only the public CAs)."""
    started: list[BlueskyPds] = []

    def start(relay: Relay, wizard: dict, url_key: str, trust_relay: bool = True) -> BlueskyPds:
        pds = BlueskyPds(tmp_path / f"pds{len(started)}", smtp_url=wizard["pds"][url_key],
                         from_address=wizard["pds"]["PDS_EMAIL_FROM_ADDRESS"],
                         ca_file=relay.state / "tls" / "cert.pem" if trust_relay else None)
        started.append(pds)
        return pds.start()

    yield start
    for pds in started:
        assert pds.stop() in (0, None), pds.log.read_text()[-4000:]  # None: it never started


def sign_up(pds: BlueskyPds) -> tuple[dict, str]:
    """A new user of the PDS, with an address at the recipients' domain: (session, address)."""
    n = next(_users)
    address = f"user{n}@recipient.test"
    return pds.create_account(f"user{n}.test", address), address


def signers(relay: Relay, wizard: dict) -> tuple[set, set]:
    """(RSA, Ed25519) signing keys as (d=, s=): the member's domain's and the pool's, one of each."""
    operator = [r["name"].split("._domainkey.")[0] for r in relay.logs("operator_dkim.first_boot")[0]["records"]]
    return ({(DOMAIN, wizard["selector"] + "r"), ("atmos.test", operator[0])},
            {(DOMAIN, wizard["selector"] + "e"), ("atmos.test", operator[1])})


@pytest.mark.parametrize("form", list(URL_FORMS))
def test_the_pds_sends_confirmation_and_reset_mail_through_the_relay(pds_relay, dns_server, sink_mx,
                                                                       start_pds, form):
    url_key, scheme, listener = URL_FORMS[form]
    relay = pds_relay()
    wizard = enroll_in_wizard(relay, DID, DOMAIN)
    assert wizard["pds"] == {**wizard["pds"], "PDS_EMAIL_FROM_ADDRESS": f"noreply@{DOMAIN}",
                             url_key: f"{scheme}://{DOMAIN}:{quote(wizard['apiKey'], safe='')}"
                                      f"@localhost:{relay.ports[listener]}/"}
    pds = start_pds(relay, wizard, url_key)

    session, address = sign_up(pds)
    pds.xrpc("com.atproto.server.requestEmailConfirmation", token=session["accessJwt"])
    pds.xrpc("com.atproto.server.requestPasswordReset", {"email": address})

    received = sink_mx.wait_for(2, timeout=60)
    subjects = sorted(email.message_from_bytes(raw)["Subject"] for _, raw in received)
    assert subjects == ["Email Confirmation", "Password Reset Requested"]
    rsa, ed25519 = signers(relay, wizard)
    for meta, raw in received:
        msg = email.message_from_bytes(raw)
        assert meta["rcpt_tos"] == [address] and msg["From"] == f"noreply@{DOMAIN}"
        assert msg["X-Atmos-Member-Did"] == DID
        node = by_key(mailauth(raw, dns_server.port))
        assert {k: node.get(k) for k in rsa | ed25519} == {k: "pass" for k in rsa | ed25519}, node
        perl = by_key(mail_dkim(raw, dns_server.port))
        assert {k: perl.get(k) for k in rsa} == {k: "pass" for k in rsa}, perl

    logins = relay.logs("smtp.auth", result="ok", did=DID)
    assert logins and {line["listener"] for line in logins} == {listener}
    relay.wait_for("delivery.result", status="delivered", count=2)


def test_the_pds_verifies_the_relays_certificate(pds_relay, start_pds):
    """The PDS checks the certificate: one it was not told to trust fails the handshake, before AUTH."""
    relay = pds_relay()
    wizard = enroll_in_wizard(relay, DID, DOMAIN)
    pds = start_pds(relay, wizard, "PDS_EMAIL_SMTP_URL", trust_relay=False)
    _, address = sign_up(pds)
    with pytest.raises(XrpcError) as failed:
        pds.xrpc("com.atproto.server.requestPasswordReset", {"email": address})
    assert failed.value.status == 500
    said = pds.wait_for_log(lambda line: line.get("nsid") == "com.atproto.server.requestPasswordReset")
    assert said[-1]["err"] == {"code": "ESOCKET", "message": "self-signed certificate"}
    assert relay.logs("smtp.auth", did=DID) == []


def test_a_warming_pds_over_its_hourly_cap_loses_no_mail(pds_relay, sink_mx, start_pds, tmp_path):
    """Issue 14: the PDS sends each mail once. Over the cap the relay holds it (the user's request
    succeeds) and sends it when the hour allows; only past maxHold is it refused, saying when."""
    clock = ClockFile(tmp_path / "clock-offset")
    policy = tmp_path / "policy.yml"
    policy.write_text("rules: []\n")  # the built-in warm-up tiers (warming: 5 an hour), no reputation rules
    relay = pds_relay({"rulesFile": str(policy)}, env=clock.env)
    wizard = enroll_in_wizard(relay, DID, DOMAIN)
    pds = start_pds(relay, wizard, "PDS_EMAIL_SMTP_URL")
    users = [sign_up(pds)[1] for _ in range(11)]

    for address in users[:8]:
        pds.xrpc("com.atproto.server.requestPasswordReset", {"email": address})
    relay.wait_for("delivery.result", status="delivered", count=5, timeout=60)
    assert sorted(meta["rcpt_tos"][0] for meta, _ in sink_mx.messages()) == sorted(users[:5])
    attempts = events_of(relay, "relay_attempt")
    assert [a["held_until"] for a in attempts[:5]] == [None] * 5
    release = attempts[5]["held_until"]
    assert release and [a["held_until"] for a in attempts[5:]] == [release] * 3
    held = relay.cli_json("queue", "--state", "held")["recipients"]
    assert sorted((r["recipient"], r["notBefore"]) for r in held) == sorted((u, release) for u in users[5:8])

    for address in users[8:10]:  # they still fit in the hour the held ones leave in
        pds.xrpc("com.atproto.server.requestPasswordReset", {"email": address})
    with pytest.raises(XrpcError) as refused:  # the next would wait longer than maxHold (1h)
        pds.xrpc("com.atproto.server.requestPasswordReset", {"email": users[10]})
    assert refused.value.status == 500 and refused.value.error == "InternalServerError"
    rejected = events_of(relay, "relay_rejected")[-1]
    assert rejected["reject_reason"] == "rate_limited" and rejected["recipient"] == users[10]
    assert "hourly sending limit of 5 reached (tier warming); sending resumes at " in rejected["detail"]
    said = pds.wait_for_log(lambda line: "451 4.7.1" in str(line.get("err", "")))
    assert rejected["detail"] in said[-1]["err"]["message"], "the PDS's log has the relay's reply"

    clock.advance(release - clock.now() + 61)
    delivered = relay.wait_for("delivery.result", status="delivered", count=10, timeout=90)
    assert [d["recipient"] for d in delivered[5:]] == users[5:10], "held mail leaves in the order it came"
    assert len(sink_mx.messages()) == 10
    assert relay.cli_json("queue", "--state", "held")["recipients"] == []
