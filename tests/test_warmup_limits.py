"""Warm-up tiers and limits at submission (runbook section 5), with a clock the test moves forward.

These run with `limits.maxHold: 0`, the relay refusing at a cap as it did before held mail (issue 14);
tests/test_held_mail.py covers holding.
"""
from __future__ import annotations

import itertools
import json
import sqlite3

import pytest

from harness.relay import events_of
from harness.smtp import message, session

DID = "did:plc:warmupwarmupwarmupwarmup"
DOMAIN = "warm.example"
DAY = 86400
_recipients = itertools.count()


@pytest.fixture
def warm_relay(start_relay, clock, tmp_path):
    """Default warm-up tiers, no reputation rules and no holding: these tests are about the caps alone."""
    policy = tmp_path / "policy.yml"
    policy.write_text("rules: []\n")
    relay = start_relay({"limits": {"hourly": 30, "daily": 200, "maxHold": 0}, "rulesFile": str(policy)},
                        env=clock.env)
    relay.member = relay.enroll(DID, DOMAIN)
    return relay


def send(relay, count: int, listener: str = "submission") -> list[str]:
    """Send `count` single-recipient messages in one session; the replies to each RCPT/DATA."""
    s = session(relay, listener)
    s.login(DOMAIN, relay.member["apiKey"])
    replies = []
    for _ in range(count):
        n = next(_recipients)
        s.mail(f"app@{DOMAIN}")
        code, text = s.rcpt(f"user{n}@recipient.test")
        if code != 250:
            replies.append(f"{code} {text.decode()}")
            s.rset()
            continue
        code, text = s.data(message(f"app@{DOMAIN}", f"user{n}@recipient.test"))
        replies.append(f"{code} {text.decode()}")
    s.quit()
    return replies


def test_a_new_member_gets_five_an_hour(warm_relay):
    replies = send(warm_relay, 6)
    assert all(r.startswith("250 2.0.0 Ok: queued") for r in replies[:5])
    assert replies[5] == "451 4.7.1 hourly sending limit reached (5/5, tier warming); try again later"
    db = sqlite3.connect(warm_relay.state / "relay.sqlite")
    rejected = [json.loads(v)["data"] for (v,) in db.execute(
        "SELECT value FROM outbox WHERE topic = 'osprey.actions_input'"
        " AND value LIKE '%relay_rejected%' ORDER BY id")]
    assert rejected[-1]["data"]["reject_reason"] == "rate_limited"
    assert rejected[-1]["data"]["recipient"].startswith("user")
    assert send(warm_relay, 1)[0].startswith("451 4.7.1 hourly")
    at_cap = events_of(warm_relay, "member_at_cap")
    assert [(e["outcome"], e["window"], e["cap"]) for e in at_cap] == [("refused", "hourly", 5)], "once, not per refusal"


def test_counters_are_shared_by_listeners_and_survive_a_restart(warm_relay):
    assert all(r.startswith("250") for r in send(warm_relay, 2, "submission"))
    assert all(r.startswith("250") for r in send(warm_relay, 2, "smtps"))
    warm_relay.restart()
    replies = send(warm_relay, 2, "smtps")
    assert replies[0].startswith("250") and replies[1].startswith("451 4.7.1 hourly")


def test_a_tighter_member_limit_wins_over_the_tier(warm_relay):
    warm_relay.cli_json("member", "limits", DID, "--hourly", "2")
    replies = send(warm_relay, 3)
    assert replies[2] == "451 4.7.1 hourly sending limit reached (2/2, tier warming); try again later"


def test_tiers_follow_age_since_approval(warm_relay, clock):
    clock.advance(8 * DAY)
    replies = send(warm_relay, 21)
    assert sum(r.startswith("250") for r in replies) == 20
    assert replies[20] == "451 4.7.1 hourly sending limit reached (20/20, tier ramping); try again later"
    clock.advance(7 * DAY)
    replies = send(warm_relay, 31)
    assert sum(r.startswith("250") for r in replies) == 30
    assert replies[30] == "451 4.7.1 hourly sending limit reached (30/30, tier warmed); try again later"


def test_daily_cap_of_the_tier(warm_relay, clock):
    for hour in range(4):
        assert all(r.startswith("250") for r in send(warm_relay, 5))
        clock.advance(3700)
    replies = send(warm_relay, 1)
    assert replies == ["451 4.7.1 daily sending limit reached (20/20, tier warming); try again later"]


def test_highly_trusted_skips_warming_and_burst_warming_halves_the_hour(warm_relay):
    warm_relay.cli_json("member", "label", DID, "--add", "highly_trusted", "--reason", "known operator")
    replies = send(warm_relay, 31)
    assert sum(r.startswith("250") for r in replies) == 30
    assert "tier trusted" in replies[30]
    warm_relay.cli_json("member", "label", DID, "--add", "burst_warming")
    assert send(warm_relay, 1) == ["451 4.7.1 hourly sending limit reached (30/15, tier trusted); try again later"]
    shown = warm_relay.cli_json("member", "show", DID)
    # The labeler's minute may have come and labelled the proven domain meanwhile; that is not a cap.
    assert [x for x in shown["labels"] if x != "verified-mail-operator"] == ["burst_warming", "highly_trusted"]
