"""A suspended member's mail does not keep going out (issue 14): frozen, released on reactivation, purged, expired.

The spam that got a member suspended must not keep flowing from the queue: its deferred and held mail
is frozen (`queue --state frozen`), reactivation sends it in order, an operator can purge it, and like
any mail it expires at `delivery.maxAge`.
"""
from __future__ import annotations

import itertools

import pytest

from harness.relay import events_of
from harness.smtp import message, session

DID = "did:plc:frozenfrozenfrozenfrozen"
DOMAIN = "frozen.example"
OTHER_DID = "did:plc:bystanderbystanderbystan"
OTHER_DOMAIN = "bystander.example"
_numbers = itertools.count()


@pytest.fixture
def relay(mail_relay, sink_mx, clock, tmp_path):
    """Default warm-up tiers (5 an hour), no reputation rules, an MX that defers mail to slow@, and a retry
    only after ten (test clock) minutes, so a deferred recipient is not in an attempt while the test acts."""
    policy = tmp_path / "policy.yml"
    policy.write_text("rules: []\n")
    relay = mail_relay({"rulesFile": str(policy), "delivery": {"retryIntervals": ["10m"]}}, env=clock.env)
    relay.member = relay.enroll(DID, DOMAIN)
    sink_mx.behave(rcpt={"slow": "451 4.2.0 Try again later"})
    return relay


def send(relay, local_parts: list[str], domain: str = DOMAIN, api_key: str | None = None) -> list[str]:
    """One message to each <local><n>@recipient.test; the recipients, all accepted."""
    s = session(relay, "submission")
    s.login(domain, api_key or relay.member["apiKey"])
    recipients = [f"{local}{next(_numbers)}@recipient.test" for local in local_parts]
    for rcpt in recipients:
        s.sendmail(f"app@{domain}", [rcpt], message(f"app@{domain}", rcpt))
    s.quit()
    return recipients


def results_for(relay, recipients: list[str]) -> list[dict]:
    return [r for r in relay.logs("delivery.result") if r["recipient"] in recipients]


def test_a_suspended_members_deferred_and_held_mail_is_frozen_until_reactivation(relay, sink_mx, clock):
    slow, *rest = send(relay, ["slow", "user", "user", "user", "user", "held", "held"])
    relay.wait_for("delivery.result", status="delivered", count=4, timeout=60)
    relay.wait_for("delivery.result", status="deferred", recipient=slow, timeout=60)

    status, view, _ = relay.http("POST", f"/admin/member/{DID}/suspend?reason=complaint+rate")
    assert status == 200 and view["status"] == "suspended"
    frozen = relay.cli_json("queue", "--state", "frozen")["recipients"]
    assert sorted(r["recipient"] for r in frozen) == sorted([slow, *rest[4:]])
    assert relay.http_json("/admin/queue?state=frozen")["summary"]["frozen"] == 3
    relay.wait_for("queue.frozen", did=DID, recipients=3)
    tried = len(results_for(relay, [slow, *rest[4:]]))

    # Past the held mail's hour and the deferral's retry, another member's mail goes out; this one's does not.
    clock.advance(2 * 3600)
    sink_mx.behave()
    other = relay.enroll(OTHER_DID, OTHER_DOMAIN)
    (bystander,) = send(relay, ["other"], OTHER_DOMAIN, other["apiKey"])
    relay.wait_for("delivery.result", status="delivered", recipient=bystander, timeout=60)
    assert len(results_for(relay, [slow, *rest[4:]])) == tried
    delivered = {meta["rcpt_tos"][0] for meta, _ in sink_mx.messages()}
    assert delivered == {*rest[:4], bystander}
    assert len(relay.cli_json("queue", "--state", "frozen")["recipients"]) == 3

    status, view, _ = relay.http("POST", f"/admin/member/{DID}/reactivate")
    assert status == 200 and view["status"] == "active"
    relay.wait_for("delivery.result", status="delivered", count=8, timeout=60)
    assert {meta["rcpt_tos"][0] for meta, _ in sink_mx.messages()} == {slow, *rest, bystander}
    later = [r["recipient"] for r in relay.logs("delivery.result", status="delivered")
             if r["recipient"] in rest[4:]]
    assert later == rest[4:], "held mail keeps its order through a freeze"
    assert relay.cli_json("queue", "--state", "frozen")["recipients"] == []


def test_frozen_mail_expires_at_max_age_and_an_operator_purges_what_is_left(relay, sink_mx, clock):
    (old,) = send(relay, ["slow"])
    relay.wait_for("delivery.result", status="deferred", recipient=old, timeout=60)
    relay.cli_json("member", "suspend", DID)
    clock.advance(5 * 86400 + 60)
    relay.cli_json("invoke", "housekeeping")
    expired = [e for e in events_of(relay, "delivery_result") if e["recipient"] == old and e["status"] == "expired"]
    assert len(expired) == 1
    assert [r["recipient"] for r in relay.cli_json("queue", "--state", "expired")["recipients"]] == [old]

    relay.cli_json("member", "reactivate", DID)
    relay.cli_json("member", "limits", DID, "--hourly", "1")
    slow, held = send(relay, ["slow", "held"])
    relay.wait_for("delivery.result", status="deferred", recipient=slow, timeout=60)
    purged = relay.cli_json("queue", "purge", "--did", DID)
    assert purged["purged"] == {"queued": 1, "held": 1, "frozen": 0}

    (late,) = send(relay, ["held"])
    relay.cli_json("member", "suspend", DID)
    status, view, _ = relay.http("POST", f"/admin/member/{DID}/purge-queue")
    assert status == 200 and view["purged"] == {"queued": 0, "held": 0, "frozen": 1}
    assert [e["frozen"] for e in events_of(relay, "queue_purged")] == [0, 1]
    relay.wait_for("queue.purged", did=DID, frozen=1)
    listed = {r["recipient"] for r in relay.cli_json("queue")["recipients"]}
    assert not listed & {slow, held, late}
    assert not {meta["rcpt_tos"][0] for meta, _ in sink_mx.messages()} & {old, slow, held, late}
