"""Over a cap mail is held, not refused (issue 14): a warming member's PDS sends more than its hourly cap.

A PDS sends each mail once; the relay answers 250, sends what the caps allow, holds the rest in the
spool until the caps let it go (in the order it came), and refuses only what it would hold longer than
`limits.maxHold`, saying when sending resumes. The test clock (harness/clock.py) stands in for the hour.
"""
from __future__ import annotations

import itertools
import re
import sqlite3
from datetime import datetime, timezone

from harness.relay import events_of
from harness.smtp import message, session

DID = "did:plc:heldmailheldmailheldmail"
DOMAIN = "held.example"
_recipients = itertools.count()


def write_policy(tmp_path, text: str = "rules: []\n") -> str:
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return str(path)


def send(relay, count: int) -> list[tuple[str, str]]:
    """`count` single-recipient messages in one session, as a PDS sends them: (recipient, final reply)."""
    s = session(relay, "submission")
    s.login(DOMAIN, relay.member["apiKey"])
    sent = []
    for _ in range(count):
        rcpt = f"user{next(_recipients)}@recipient.test"
        s.mail(f"app@{DOMAIN}")
        code, text = s.rcpt(rcpt)
        if code == 250:
            code, text = s.data(message(f"app@{DOMAIN}", rcpt))
        else:
            s.rset()
        sent.append((rcpt, f"{code} {text.decode()}"))
    s.quit()
    return sent


def delivered_to(relay) -> list[str]:
    return [r["recipient"] for r in relay.logs("delivery.result", status="delivered")]


def utc(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%H:%M UTC")


def resume(when: float, now: float) -> str:
    """As a reply names a time: the day too when it is not today (UTC)."""
    moment, today = (datetime.fromtimestamp(t, timezone.utc) for t in (when, now))
    return moment.strftime("%H:%M UTC" if moment.date() == today.date() else "%Y-%m-%d %H:%M UTC")


def test_over_the_hourly_cap_mail_is_held_and_delivered_in_order_when_the_hour_allows(
        mail_relay, sink_mx, clock, tmp_path):
    relay = mail_relay({"rulesFile": write_policy(tmp_path)}, env=clock.env)
    relay.member = relay.enroll(DID, DOMAIN)
    first = send(relay, 8)
    assert all(reply.startswith("250 2.0.0 Ok: queued as ") for _, reply in first)
    assert not any("held" in reply for _, reply in first[:5])
    assert all("; held by the sending limit until " in reply for _, reply in first[5:])

    relay.wait_for("delivery.result", status="delivered", count=5, timeout=60)
    assert sorted(delivered_to(relay)) == sorted(r for r, _ in first[:5])
    assert len(sink_mx.messages()) == 5

    attempts = events_of(relay, "relay_attempt")
    assert [a["held_until"] for a in attempts[:5]] == [None] * 5
    release = attempts[5]["held_until"]
    assert all(a["held_until"] == release for a in attempts[5:])
    assert utc(release) in first[5][1]
    held = relay.cli_json("queue", "--state", "held")["recipients"]
    assert sorted(r["recipient"] for r in held) == sorted(r for r, _ in first[5:])
    assert {r["notBefore"] for r in held} == {release}
    shown = relay.http_json("/admin/queue?state=held")
    assert shown["summary"]["held"] == 3
    assert {(r["recipient"], r["notBefore"], r["did"]) for r in shown["recipients"]} == {
        (r, release, DID) for r, _ in first[5:]}
    status, page, _ = relay.http("GET", "/admin/queue?state=held", headers={"Accept": "text/html"})
    assert status == 200 and "held until" in page

    # Two more fit in the hour the held ones leave in; the next would wait past maxHold (1h).
    more = send(relay, 3)
    assert all("held by the sending limit" in reply for _, reply in more[:2])
    assert more[2][1] == ("451 4.7.1 hourly sending limit of 5 reached (tier warming); "
                          f"sending resumes at {resume(release + 3600, clock.now())}")
    at_cap = events_of(relay, "member_at_cap")
    assert len(at_cap) == 1, "one notice per crossing, not one per message"
    assert at_cap[0]["outcome"] == "held" and at_cap[0]["window"] == "hourly" and at_cap[0]["cap"] == 5
    rejected = events_of(relay, "relay_rejected")
    assert rejected[-1]["reject_reason"] == "rate_limited" and rejected[-1]["recipient"] == more[2][0]

    clock.advance(release - clock.now() + 61)
    relay.wait_for("delivery.result", status="delivered", count=10, timeout=60)
    later = delivered_to(relay)[5:]
    assert later == [r for r, _ in first[5:] + more[:2]], "held mail leaves in the order it came"
    assert len(sink_mx.messages()) == 10
    assert relay.cli_json("queue", "--state", "held")["recipients"] == []


def test_a_tier_holds_as_long_as_the_policy_file_says_and_the_daily_cap_names_tomorrow(start_relay, clock, tmp_path):
    policy = write_policy(tmp_path, "rules: []\nwarming:\n  tiers:\n"
                          "    - {name: warming, maxAgeDays: 7, hourly: 2, daily: 3, maxHold: 2h}\n")
    relay = start_relay({"rulesFile": policy, "limits": {"maxHold": 0}}, env=clock.env)
    relay.member = relay.enroll(DID, DOMAIN)
    sent = send(relay, 4)
    assert [reply.split(";")[0].startswith("250") for _, reply in sent] == [True, True, True, False]
    assert "held by the sending limit" in sent[2][1]
    match = re.fullmatch(r"451 4\.7\.1 daily sending limit of 3 reached \(tier warming\); "
                         r"sending resumes at (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", sent[3][1])
    assert match, sent[3][1]
    db = sqlite3.connect(relay.state / "relay.sqlite")
    (first_at,) = db.execute("SELECT MIN(created_at) FROM sent_messages").fetchone()
    db.close()
    tomorrow = (int(first_at // 3600) + 24) * 3600
    assert match.group(1) == datetime.fromtimestamp(tomorrow, timezone.utc).strftime("%Y-%m-%d %H:%M")
    notice = events_of(relay, "member_at_cap")
    assert [n["outcome"] for n in notice] == ["held"]


def test_held_mail_leaves_as_soon_as_an_operator_raises_the_limit(mail_relay, sink_mx, tmp_path):
    relay = mail_relay({"rulesFile": write_policy(tmp_path)})
    relay.member = relay.enroll(DID, DOMAIN)
    relay.cli_json("member", "limits", DID, "--hourly", "2")
    sent = send(relay, 4)
    assert [("held by" in reply) for _, reply in sent] == [False, False, True, True]
    relay.wait_for("delivery.result", status="delivered", count=2, timeout=60)
    assert len(relay.cli_json("queue", "--state", "held")["recipients"]) == 2

    relay.cli_json("member", "limits", DID, "--hourly", "10")  # the tier's 5 an hour now binds: room for both
    relay.wait_for("delivery.result", status="delivered", count=4, timeout=60)
    assert delivered_to(relay)[2:] == [r for r, _ in sent[2:]]
    assert len(sink_mx.messages()) == 4
