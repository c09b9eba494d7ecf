"""The cooperative's memory: events through the rules, verdicts back into relay_events, effects applied.

Each scenario runs on both deployments: in-process over the SQLite outbox,
and with Kafka (a real Kafka-protocol broker, tansu) and two Faust workers.
History is replayed in Osprey's format, as another producer would send it,
and the relay's clock is moved forward where a scenario needs time to pass.
"""
from __future__ import annotations

import base64
import json
import random
import smtplib
import sqlite3
import time

import pytest

from harness.actions import action, history, write_jsonl
from harness.smtp import message, session

DAY = 86400
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


@pytest.fixture
def ids() -> tuple[str, str]:
    """A fresh member for each test: the deployment is shared by the module."""
    did = "did:plc:" + "".join(random.choice(_BASE32) for _ in range(24))
    return did, f"{did[-8:]}.rep.example"


def relay_events(relay, did: str, action_name: str | None = None) -> list[dict]:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM relay_events WHERE sender_did = ? AND (? IS NULL OR action_name = ?)"
                      " ORDER BY id", (did, action_name, action_name)).fetchall()
    db.close()
    return [dict(r) for r in rows]


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def replay(relay, tmp_path, actions: list[dict], name: str = "history.jsonl") -> None:
    out = relay.cli_json("events", "replay", str(write_jsonl(tmp_path / name, actions)))
    assert out["published"] == len(actions)


def send(relay, member, count: int) -> list[int]:
    domain = member["domain"]
    s = session(relay, "submission")
    s.login(domain, member["apiKey"])
    codes = []
    for n in range(count):
        s.mail(f"app@{domain}")
        code, _ = s.rcpt(f"live{n}-{time.monotonic_ns()}@recipient.test")
        if code == 250:
            code, _ = s.data(message(f"app@{domain}", "x@recipient.test"))
        else:
            s.rset()
        codes.append(code)
    s.quit()
    return codes


def test_every_event_comes_back_as_an_execution_result(reputation, tmp_path, ids):
    DID, DOMAIN = ids
    relay = reputation.relay
    member = relay.enroll(DID, DOMAIN)
    assert send(relay, member, 2) == [250, 250]
    wait_until(lambda: len(relay_events(relay, DID, "relay_attempt")) == 2, what="results of both sends")
    # A member's events are in order on one partition: with the sends in, so are enrolment and approval.
    names = [e["action_name"] for e in relay_events(relay, DID)]
    assert names[:2] == ["member_enrolled", "member_approved"] and names.count("relay_attempt") == 2
    raw = json.loads(relay_events(relay, DID, "relay_attempt")[0]["raw"])
    assert raw["__action_id"] and raw["__timestamp"].endswith("+00:00")
    assert raw["__verdicts"] == [] and raw["__entity_label_mutations"] == []
    assert raw["SenderDid"] == DID and raw["Figures"]["sends_1h"] >= 1


def test_a_member_whose_complaints_cross_the_threshold_is_suspended(reputation, tmp_path, ids):
    DID, DOMAIN = ids
    relay = reputation.relay
    member = relay.enroll(DID, DOMAIN)
    now = reputation.clock.now()
    replay(relay, tmp_path, history(DID, now - 6 * DAY, now - 3600, 250))
    complaints = [action("complaint_received", DID, now - 60 + i, recipient=f"h{i}@recipient.test",
                         feedback_type="abuse") for i in range(2)]
    replay(relay, tmp_path, complaints, "complaints.jsonl")
    suspended = wait_until(lambda: relay_events(relay, DID, "member_suspended"), what="member_suspended")

    # Runbook: "Investigate what rule suspended them"
    db = sqlite3.connect(relay.state / "relay.sqlite")
    verdicts, raw = db.execute(
        "SELECT verdicts, raw FROM relay_events WHERE sender_did = ? AND action_name = 'member_suspended'"
        " ORDER BY id DESC LIMIT 1", (DID,)).fetchone()
    assert json.loads(verdicts) == ["suspend_member"]
    assert json.loads(raw)["RulesFired"] == ["suspend_complaint_rate"]
    explained = json.loads(raw)["ActionData"]
    assert explained["rule"] == "suspend_complaint_rate" and explained["actor"] == "rules"
    assert explained["figures"]["complaint_rate_7d"] >= 0.005 and explained["figures"]["sends_7d"] >= 200
    assert "complaint_rate_7d" in explained["reason"]
    trigger = [e for e in relay_events(relay, DID, "complaint_received") if "suspend_member" in e["verdicts"]]
    assert trigger and json.loads(trigger[0]["raw"])["RulesFired"] == ["suspend_complaint_rate"]
    assert len(suspended) == 1

    assert relay.cli_json("member", "show", DID)["status"] == "suspended"
    s = session(relay, "submission")
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        s.login(DOMAIN, member["apiKey"])
    assert err.value.smtp_error == b"5.7.8 account suspended"


def test_a_member_who_bursts_is_put_on_burst_warming(reputation, tmp_path, ids):
    DID, DOMAIN = ids
    relay = reputation.relay
    member = relay.enroll(DID, DOMAIN)
    relay.cli_json("member", "label", DID, "--add", "highly_trusted")
    relay.cli_json("member", "limits", DID, "--hourly", "20", "--daily", "1000")
    now = reputation.clock.now()
    replay(relay, tmp_path, history(DID, now - 7 * DAY, now - 3600, 7 * 24))
    wait_until(lambda: len(relay_events(relay, DID, "relay_attempt")) >= 7 * 24, what="history counted")
    codes = send(relay, member, 12)
    assert codes[:10] == [250] * 10
    wait_until(lambda: "burst_warming" in relay.cli_json("member", "show", DID)["labels"], what="burst_warming")
    burst = [e for e in relay_events(relay, DID, "relay_attempt") if "burst" in json.loads(e["verdicts"])]
    assert json.loads(burst[0]["label_mutations"]) == ["MemberDid/burst_warming/0"]
    figures = json.loads(burst[0]["raw"])["RuleFigures"]["burst_detected"]
    assert figures["burst_ratio"] > 5 and figures["sends_1h"] >= 10
    assert send(relay, member, 1) == [250]  # 10 or more sent this hour, cap 20 halved to 10: held, not refused
    sent_at = lambda r: int(r["recipient"].split("-")[1].split("@")[0])  # noqa: E731 (monotonic ns of the send)
    everything = [r for r in relay.cli_json("queue", "--state", "", "--limit", "100")["recipients"]
                  if r["owner"] == DID]
    held = [r for r in everything if r["state"] == "held"]
    # The last one is held; so may be the first burst's tail if it had not left when the cap was halved.
    assert max(everything, key=sent_at)["recipient"] in {r["recipient"] for r in held}
    assert 1 <= len(held) <= 3 and all(r["notBefore"] > reputation.clock.now() for r in held)


def test_a_member_earns_highly_trusted(reputation, tmp_path, ids):
    DID, DOMAIN = ids
    relay = reputation.relay
    relay.enroll(DID, DOMAIN)
    reputation.clock.advance(31 * DAY)
    now = reputation.clock.now()
    replay(relay, tmp_path, history(DID, now - 29 * DAY, now - 600, 1100))
    wait_until(lambda: "highly_trusted" in relay.cli_json("member", "show", DID)["labels"], timeout=120,
               what="highly_trusted")
    earned = [e for e in relay_events(relay, DID, "delivery_result") if "trusted" in json.loads(e["verdicts"])]
    raw = json.loads(earned[0]["raw"])
    assert raw["__entity_label_mutations"] == ["MemberDid/highly_trusted/0"]
    assert raw["RuleFigures"]["earn_highly_trusted"]["deliveries_30d"] >= 1000
    assert raw["RuleFigures"]["earn_highly_trusted"]["days_active"] >= 30


def test_results_from_another_producer_are_applied_once(reputation, ids):
    """An Osprey deployment's verdict (numeric label status, no ActionData) labels the member, once."""
    DID, DOMAIN = ids
    relay = reputation.relay
    relay.enroll(DID, DOMAIN)
    result = {"__action_id": random.randrange(1 << 40), "__timestamp": "2026-11-24T10:00:00+00:00", "__error_count": 0,
              "__verdicts": [], "__entity_label_mutations": ["MemberDid/clean-sender/0"],
              "ActionName": "delivery_result", "SenderDid": DID}
    reputation.publish_result(result)
    reputation.publish_result(result)
    later = {**result, "__action_id": result["__action_id"] + 1, "__entity_label_mutations": []}
    reputation.publish_result(later)
    # Results are applied in order: once the later one is stored, both copies of the first have been seen.
    wait_until(lambda: any(e["action_id"] == later["__action_id"] for e in relay_events(relay, DID)),
               what="the result published after the duplicate")
    assert "clean-sender" in relay.cli_json("member", "show", DID)["labels"]
    assert len([e for e in relay_events(relay, DID) if e["action_id"] == result["__action_id"]]) == 1


def test_an_expired_delivery_counts_the_same_for_the_rules_and_the_chart(reputation, tmp_path, ids):
    """One definition of counting: failed and a soft bounce, in the rules' figures and in member_daily_stats."""
    DID, DOMAIN = ids
    relay = reputation.relay
    relay.enroll(DID, DOMAIN)
    now = reputation.clock.now()
    sent = action("relay_attempt", DID, now - 60, recipients=["gone@recipient.test"], message_id="<exp@x>")
    expired = action("delivery_result", DID, now - 30, message_id="<exp@x>", recipient="gone@recipient.test",
                     status="expired")
    replay(relay, tmp_path, [sent, expired], "expired.jsonl")
    rows = wait_until(lambda: relay_events(relay, DID, "delivery_result"), what="the expired delivery's result")
    figures = json.loads(rows[0]["raw"])["Figures"]
    assert figures["soft_bounces_7d"] == 1 and figures["hard_bounces_7d"] == 0
    db = sqlite3.connect(relay.state / "relay.sqlite")
    sent_n, failed, bounced = db.execute("SELECT SUM(sent), SUM(failed), SUM(bounced) FROM member_daily_stats"
                                         " WHERE did = ?", (DID,)).fetchone()
    db.close()
    assert (sent_n, failed, bounced) == (1, 1, 1)


def stream_rejections(reputation, action_id: int) -> list[dict]:
    """`stream.rejected` lines of whoever runs the rules: the relay (embedded) or the Faust workers."""
    lines = reputation.relay.logs("stream.rejected") if not reputation.workers else [
        line for worker in reputation.workers for line in list(worker.lines) if line.get("event") == "stream.rejected"]
    return [line for line in lines if line.get("action_id") == action_id]


def test_a_malformed_action_is_kept_with_its_reason_and_the_stream_goes_on(reputation, ids):
    """A third-party producer's wrong field type is refused, logged, counted and kept whole; later actions count."""
    DID, _ = ids
    relay = reputation.relay
    now = reputation.clock.now()
    bad = action("relay_attempt", DID, now, recipients=7, message_id="<bad@producer>")
    good = action("relay_attempt", DID, now + 1, recipients=["a@recipient.test"], message_id="<good@producer>")
    reputation.publish_action(bad)
    reputation.publish_action(good)
    bad_id = bad["data"]["action_id"]

    def kept() -> list[dict]:
        listed = relay.cli_json("events", "rejected", "--limit", "1000")
        return [r for r in listed["rejected"] if r["action_id"] == bad_id] and listed

    listed = wait_until(kept, what="the dead letter of the malformed action")
    row = next(r for r in listed["rejected"] if r["action_id"] == bad_id)
    assert listed["count"] >= 1
    assert row["action_name"] == "relay_attempt" and "recipients" in row["reason"]
    assert json.loads(row["raw"]) == bad
    assert row["origin"].startswith("osprey.actions_input/")
    logged = wait_until(lambda: stream_rejections(reputation, bad_id), what="stream.rejected")
    assert "recipients" in logged[0]["reason"] and logged[0]["rejected"] >= 1

    # Same member, same partition, in order: once the good one's result is in, the bad one was passed over.
    rows = wait_until(lambda: relay_events(relay, DID, "relay_attempt"), what="the next action's result")
    assert [json.loads(r["raw"])["__action_id"] for r in rows] == [good["data"]["action_id"]]
    assert json.loads(rows[0]["raw"])["Figures"]["sends_1h"] == pytest.approx(1, abs=0.01)


def test_rules_live_in_a_file_and_a_bad_one_stops_the_relay(start_relay, tmp_path):
    bad = tmp_path / "policy.yml"
    bad.write_text("rules:\n  - name: Bad-Name\n    when: [{metric: complaint_rate_7d, op: '>=', value: 1}]\n")
    relay = start_relay({"rulesFile": str(bad)}, wait=False)
    code = relay.proc.wait(60)
    assert code != 0
    assert any("invalid policy" in line and "name" in line for line in relay.raw), relay.raw[-5:]


def test_apply_results_event_shape_matches_lambda_kafka(reputation, ids):
    """The function sees a Lambda Kafka event source batch, whichever deployment feeds it."""
    DID, DOMAIN = ids
    relay = reputation.relay
    relay.enroll(DID, DOMAIN)
    payload = {"eventSource": "aws:kafka", "records": {"osprey.execution_results-0": [{
        "topic": "osprey.execution_results", "partition": 0, "offset": 1, "timestamp": 0,
        "key": base64.b64encode(DID.encode()).decode(),
        "value": base64.b64encode(json.dumps({
            "__action_id": random.randrange(1 << 40), "__timestamp": "2026-11-24T10:00:00+00:00", "__verdicts": ["suspend_member"],
            "__entity_label_mutations": [], "SenderDid": DID, "ActionName": "complaint_received",
            "RulesFired": ["manual"], "RuleFigures": {"manual": {"complaints_7d": 9}}}).encode()).decode()}]}}
    out = json.loads(relay.cli("invoke", "apply-results", "--payload", json.dumps(payload)).stdout)
    assert out == {"applied": 1}
    shown = relay.cli_json("member", "show", DID)
    assert shown["status"] == "suspended" and shown["reason"] == "rule manual: complaints_7d=9"


def test_an_action_seen_again_gets_its_result_again_with_the_same_effects():
    """A Kafka worker can die after its state was saved and before its result was sent; the next one re-sends it."""
    from functions.reputation import policy
    from stream_apps import rules

    did, now = "did:plc:replayreplayreplayreplay", time.time()
    suspension = action("member_suspended", did, now, reason="complaint_rate_7d 0.01", actor="rules",
                        rule="suspend_complaint_rate", figures={"complaint_rate_7d": 0.01})
    state, first = rules.process(policy.load(""), None, suspension, now)
    again_state, again = rules.process(policy.load(""), state, suspension, now + 5)
    assert again_state == state
    assert again["__action_id"] == first["__action_id"] and again["Replayed"] is True
    assert again["__verdicts"] == first["__verdicts"] == ["suspend_member"]
    assert again["RulesFired"] == first["RulesFired"] == ["suspend_complaint_rate"]
    quiet = action("relay_attempt", did, now, recipients=["a@recipient.test"], message_id="<q@x>")
    state, _ = rules.process(policy.load(""), state, quiet, now)
    assert str(quiet["data"]["action_id"]) not in state.get("effects", {})


def test_reputation_survives_a_restart_of_the_relay(reputation, tmp_path, ids):
    """A member's counts live in reputation_state (embedded) or the Faust table (Kafka), not in memory."""
    DID, _ = ids
    relay = reputation.relay
    now = reputation.clock.now()
    before = [action("relay_attempt", DID, now - 1800 + i, recipients=[f"b{i}@recipient.test"],
                     message_id=f"<b{i}@x>") for i in range(30)]
    replay(relay, tmp_path, before, "before.jsonl")
    wait_until(lambda: len(relay_events(relay, DID, "relay_attempt")) == 30, what="results before the restart")
    relay.restart()
    after = [action("relay_attempt", DID, now - 600 + i, recipients=[f"a{i}@recipient.test"],
                    message_id=f"<a{i}@x>") for i in range(10)]
    replay(relay, tmp_path, after, "after.jsonl")
    rows = wait_until(lambda: len(relay_events(relay, DID, "relay_attempt")) == 40 and
                      relay_events(relay, DID, "relay_attempt"), what="results after the restart")
    last = json.loads(rows[-1]["raw"])
    assert last["__action_id"] == after[-1]["data"]["action_id"]
    assert last["Figures"]["sends_24h"] == pytest.approx(40, abs=0.01)
