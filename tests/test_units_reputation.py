"""Fast checks of reputation: what an event counts for, the figures the rules read, the words they answer in,
and the stream apps' refusal of an action they cannot read."""
from __future__ import annotations

import json

import pytest

from functions.reputation import counting, policy, verdicts
from harness.actions import action
from stream_apps import intake, reputation

DID = "did:plc:unitsunitsunitsunitsunit"
HOUR, DAY = 3600.0, 86400.0
NOW = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 12 * HOUR  # noon, so windows do not straddle midnight


@pytest.mark.parametrize("name, data, counts", [
    ("relay_attempt", {"recipients": ["a@x", "b@x"]}, {"sends": 2}),
    ("relay_attempt", {"recipients": []}, {"sends": 1}),
    ("relay_attempt", {"recipients": 7}, {"sends": 1}),  # another producer's result: counted, not a crash
    ("delivery_result", {"status": "delivered"}, {"delivered": 1}),
    ("delivery_result", {"status": "deferred"}, {"deferred": 1}),
    ("delivery_result", {"status": "failed"}, {"failed": 1}),
    ("delivery_result", {"status": "expired"}, {"failed": 1, "soft": 1}),
    ("delivery_result", {"status": "bogus"}, {}),
    ("bounce_received", {"kind": "hard"}, {"hard": 1}),
    ("bounce_received", {"kind": "soft"}, {"soft": 1}),
    ("complaint_received", {}, {"complaints": 1}),
    ("relay_rejected", {}, {"rejections": 1}),
    ("member_approved", {}, {}),
])
def test_what_each_event_counts_for(name, data, counts):
    assert counting.tally(name, data) == counts
    assert set(counts) <= set(counting.COUNTERS)


def test_the_chart_adds_the_same_counts_under_its_column_names():
    assert counting.daily_columns(counting.tally("delivery_result", {"status": "expired"})) == {
        "failed": 1, "bounced": 1}
    assert counting.daily_columns({"hard": 2, "soft": 1, "sends": 3}) == {"sent": 3, "bounced": 3}
    assert counting.daily_columns({}) == {}


def test_an_expired_delivery_is_a_soft_bounce_in_the_rules_figures():
    state = reputation.empty(DID)
    for i in range(4):
        state = reputation.apply(state, i, "relay_attempt", {"recipients": ["a@x"]}, NOW - 10 * HOUR)
    state = reputation.apply(state, 9, "delivery_result", {"status": "expired"}, NOW - HOUR)
    figures = reputation.figures(state, NOW)
    assert figures["soft_bounces_7d"] == 1 and figures["hard_bounces_7d"] == 0
    assert figures["bounce_rate_30d"] == pytest.approx(0.25)


@pytest.mark.parametrize("stamp, seconds", [
    ("2026-11-24T10:00:00Z", 1795514400.0), ("2026-11-24T10:00:00+00:00", 1795514400.0),
    ("2026-11-24T10:00:00.500000Z", 1795514400.5), (1795514400, 1795514400.0), (1795514400500, 1795514400.5),
    ("yesterday", 42.0), ("", 42.0), (None, 42.0), (True, 42.0), ([], 42.0),
])
def test_event_time_reads_every_producer_and_defaults_otherwise(stamp, seconds):
    assert counting.event_time(stamp, 42.0) == seconds


def test_figures_over_sliding_windows():
    state = reputation.empty(DID)
    state = reputation.apply(state, 1, "member_approved", {}, NOW - 10 * DAY)
    for i in range(10):
        state = reputation.apply(state, 100 + i, "relay_attempt", {"recipients": ["a@x"]}, NOW - 600)
        state = reputation.apply(state, 200 + i, "delivery_result", {"status": "delivered"}, NOW - 590)
    state = reputation.apply(state, 300, "complaint_received", {}, NOW - 60)
    state = reputation.apply(state, 301, "bounce_received", {"kind": "hard"}, NOW - 60)
    f = reputation.figures(state, NOW)
    assert f["sends_1h"] == 10 and f["sends_24h"] == 10 and f["deliveries_7d"] == 10
    assert f["complaint_rate_7d"] == pytest.approx(0.1) and f["hard_bounce_rate_7d"] == pytest.approx(0.1)
    assert f["days_active"] == pytest.approx(10.0)
    assert f["trailing_hourly_avg_7d"] == pytest.approx(10 / (7 * 24), abs=1e-6)  # figures keep 6 decimals
    assert f["burst_ratio"] == 10  # trailing average below 1 counts as 1
    assert set(f) == set(policy.METRICS)


def test_an_action_is_counted_once_and_old_buckets_are_dropped():
    state = reputation.apply(reputation.empty(DID), 7, "relay_attempt", {"recipients": ["a@x"]}, NOW - 40 * DAY)
    assert reputation.already_seen(state, 7) and not reputation.already_seen(state, 8)
    later = reputation.apply(state, 8, "relay_attempt", {"recipients": ["a@x"]}, NOW)
    assert len(later["hours"]) == 1 and len(later["days"]) == 1
    assert state["hours"] and later is not state  # the input state is left as it was


@pytest.mark.parametrize("mutation, parsed", [
    ("MemberDid/burst_warming/0", ("burst_warming", True)), ("MemberDid/burst_warming/1", ("burst_warming", False)),
    ("MemberDid/x/2", ("x", True)), ("MemberDid/x/3", ("x", False)),
    ("MemberDid/x/added", ("x", True)), ("MemberDid/x/removed", ("x", False)),
    ("UserId/x/0", None), ("MemberDid//0", None), ("MemberDid/x/9", None), ("MemberDid/x", None), ("", None),
])
def test_label_mutations_in_osprey_numbers_or_words(mutation, parsed):
    assert verdicts.parse_label_mutation(mutation) == parsed


def test_label_mutations_are_written_as_osprey_numbers():
    assert verdicts.label_mutation("highly_trusted", True) == "MemberDid/highly_trusted/0"
    assert verdicts.parse_label_mutation(verdicts.label_mutation("a", False)) == ("a", False)


def _process(value) -> tuple:
    raw = value if isinstance(value, (bytes, str)) else json.dumps(value)
    return intake.process(policy.load(""), raw, lambda did: None, NOW)


def test_a_well_formed_action_goes_through_the_rules():
    did, state, result = _process(action("relay_attempt", DID, NOW, recipients=["a@x"], message_id="<m@x>"))
    assert did == DID and result["SenderDid"] == DID and result["Figures"]["sends_1h"] == 1


@pytest.mark.parametrize("value, reason, action_id_known", [
    (b"\xff not json", "not JSON", False),
    (b"[1, 2]", "a JSON list", False),
    ({"send_time": "x"}, "not an Osprey action envelope", False),
    ({"data": {"action_id": "abc", "action_name": "relay_attempt", "data": {}}}, "not an Osprey", False),
    ({"data": {"action_id": 5, "action_name": "relay_attempt", "data": {"recipients": ["a@x"]}}}, "sender_did",
     True),
    ({"data": {"action_id": 5, "action_name": "x", "data": {"sender_did": 12}}}, "sender_did", True),
    ({"data": {"action_id": 5, "action_name": "relay_attempt",
               "data": {"sender_did": DID, "message_id": "<m>", "recipients": 7}}}, "recipients", True),
    ({"data": {"action_id": 5, "action_name": "delivery_result",
               "data": {"sender_did": DID, "message_id": "<m>", "recipient": "a@x", "status": "lost"}}},
     "status", True),
])
def test_an_action_the_rules_cannot_read_is_rejected_with_the_reason(value, reason, action_id_known):
    with pytest.raises(intake.Rejected) as refused:
        _process(value)
    assert reason in refused.value.reason
    assert (refused.value.action_id == 5) is action_id_known


def test_a_dead_letter_keeps_the_action_as_it_came():
    raw = json.dumps(action("relay_attempt", DID, NOW, recipients=7, message_id="<m>"))
    with pytest.raises(intake.Rejected) as refused:
        _process(raw)
    letter = intake.dead_letter(raw.encode(), refused.value, "osprey.actions_input/2/41", "faust:h:1", NOW)
    assert letter["raw"] == raw and letter["truncated"] is False
    assert letter["origin"] == "osprey.actions_input/2/41" and letter["action_name"] == "relay_attempt"
    assert letter["action_id"] == json.loads(raw)["data"]["action_id"]
    huge = intake.dead_letter("x" * (intake.RAW_KEPT + 1), refused.value, "o", "w", NOW)
    assert len(huge["raw"]) == intake.RAW_KEPT and huge["truncated"] is True


@pytest.mark.parametrize("name, data", [
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": ["a@x"]}),
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": ["a@x"], "size": 12, "extra": [1]}),
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": ["a@x"], "size": "12"}),
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": ["a@x"], "size": 1.5}),
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": ["a@x"], "size": True}),
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": []}),
    ("relay_attempt", {"sender_did": DID, "message_id": "<m>", "recipients": [3]}),
    ("relay_attempt", {"sender_did": "", "message_id": "<m>", "recipients": ["a@x"]}),
    ("relay_attempt", {"sender_did": DID, "message_id": None, "recipients": ["a@x"]}),
    ("delivery_result", {"sender_did": DID, "message_id": "<m>", "recipient": "a@x", "status": "expired",
                         "smtp_code": None}),
    ("delivery_result", {"sender_did": DID, "message_id": "<m>", "recipient": "a@x", "status": "gone"}),
    ("member_suspended", {"sender_did": DID, "figures": {"complaint_rate_7d": 0.01}}),
    ("member_suspended", {"sender_did": DID, "figures": [1]}),
    ("label_changed", {"sender_did": DID, "label": "x", "status": "added"}),
    ("label_changed", {"sender_did": DID, "label": 5, "status": "added"}),
])
def test_admission_agrees_with_the_event_schemas(name, data):
    """The quick path of `admit` never lets through what the marshmallow schema would refuse, nor the reverse."""
    from marshmallow import ValidationError

    from functions.reputation import events

    try:
        events.SCHEMAS[name]().load(data)
        schema_ok = True
    except ValidationError:
        schema_ok = False
    try:
        events.admit({"data": {"action_id": 1, "action_name": name, "data": data}})
        admitted = True
    except events.EventError:
        admitted = False
    assert admitted == schema_ok


@pytest.mark.parametrize("raw", [
    b'{"data": {"action_id": Infinity, "action_name": "relay_attempt", "data": {"sender_did": "d"}}}',
    b'{"data": {"action_id": 99999999999999999999999, "action_name": "relay_attempt", "data": {"sender_did": "d"}}}',
    b"[" * 100_000 + b"]" * 100_000,
])
def test_a_poison_record_is_rejected_not_raised(raw):
    """Anything but Rejected would fail the batch, and the batch would be retried for ever."""
    with pytest.raises(intake.Rejected) as refused:
        _process(raw)
    assert refused.value.action_id is None
