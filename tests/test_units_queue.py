"""Fast checks of the queue runner's batching: one message's recipients together, busy routes gather a little."""
from __future__ import annotations

from runtime.queue_runner import BATCH_FILL, HOLD_AT_MOST, take_batch, worth_waiting
from runtime.spool import Due


def due(queue_id: str, recipient: str, created_at: float = 100.0) -> Due:
    return Due(queue_id, recipient, "recipient.test", 0, created_at)


def test_a_batch_takes_whole_messages_in_order_up_to_its_size():
    items = [due("B", "b1"), due("A", "a2"), due("A", "a1"), due("C", "c1"), due("B", "b2")]
    batch, rest = take_batch(items, 3)
    assert [(d.queue_id, d.recipient) for d in batch] == [("A", "a1"), ("A", "a2"), ("B", "b1")]
    assert [(d.queue_id, d.recipient) for d in rest] == [("B", "b2"), ("C", "c1")]
    assert take_batch(items, 50) == (sorted(items, key=lambda d: (d.queue_id, d.recipient)), [])
    assert take_batch([], 5) == ([], [])


def test_an_idle_route_starts_at_once():
    assert not worth_waiting(0, [due("A", "a")], 50, now=100.0)


def test_a_busy_route_waits_for_fresh_mail_to_gather_but_not_for_long():
    few = [due(f"Q{i}", "r", created_at=100.0) for i in range(BATCH_FILL - 1)]
    assert worth_waiting(1, few, 50, now=100.0 + HOLD_AT_MOST / 2)
    assert not worth_waiting(1, few, 50, now=100.0 + HOLD_AT_MOST)  # the oldest has waited long enough
    enough = few + [due("Z", "r", created_at=100.0)]
    assert not worth_waiting(1, enough, 50, now=100.0)
    assert worth_waiting(2, enough, 50, now=100.0)  # two in flight: it gathers twice as many
    assert not worth_waiting(2, enough, len(enough), now=100.0)  # a full batch never waits
