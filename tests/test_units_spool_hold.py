"""Fast checks of the spool's generic hold mechanics: a later not_before, an owner's frozen rows, a purge."""
from __future__ import annotations

import io

import pytest

from runtime import spool as spool_module
from runtime.clock import Clock
from runtime.jsonlog import JsonLog
from runtime.spool import Spool
from runtime.store import Store


@pytest.fixture
def spool(tmp_path) -> Spool:
    store = Store(tmp_path / "relay.sqlite")
    store.migrate("runtime.spool", spool_module.MIGRATIONS)
    return Spool(tmp_path / "queue", store, JsonLog(io.StringIO()), Clock())


def place(spool: Spool, owner: str, recipients: list[str], now: float, not_before: float | None = None) -> str:
    with spool.placing({"did": owner}, b"Subject: x\r\n\r\nbody\r\n") as placing:
        with spool.store.transaction() as conn:
            placing.register(conn, [(r, "recipient.test") for r in recipients], now, not_before, owner=owner)
    return placing.queue_id


def test_held_rows_wait_for_their_time_and_frozen_rows_are_never_due_nor_leased(spool):
    now = spool.clock.now()
    first = place(spool, "alice", ["a1@recipient.test"], now)
    held = place(spool, "alice", ["a2@recipient.test"], now, not_before=now + 3600)
    place(spool, "bob", ["b1@recipient.test"], now)
    assert [d.queue_id for d in spool.due(now, 10) if d.queue_id in (first, held)] == [first]
    assert spool.summary(now) == {"queued": 2, "held": 1}

    with spool.store.transaction() as conn:
        assert spool.freeze(conn, "alice") == 2
    assert {d.recipient for d in spool.due(now + 7200, 10)} == {"b1@recipient.test"}
    items = spool.due(now + 7200, 10)
    with spool.store.transaction() as conn:
        conn.execute("UPDATE spool_recipients SET frozen = 1 WHERE recipient = 'b1@recipient.test'")
    assert spool.lease(items, now + 60, "token") == [], "a row frozen after it was found due is not leased"
    assert spool.summary(now) == {"frozen": 3}

    with spool.store.transaction() as conn:
        assert spool.freeze(conn, "alice", frozen=False) == 2
        shown = [r["shown"] for r in spool.pending(conn, "alice", now)]
    assert shown == ["queued", "held"]


def test_a_purge_deletes_an_owners_queued_rows_and_their_messages(spool):
    now = spool.clock.now()
    place(spool, "alice", ["a1@recipient.test", "a2@recipient.test"], now)
    place(spool, "alice", ["a3@recipient.test"], now, not_before=now + 600)
    kept = place(spool, "bob", ["b1@recipient.test"], now)
    with spool.store.transaction() as conn:
        spool.freeze(conn, "alice")
        spool.freeze(conn, "alice", frozen=False)
        counts = spool.purge(conn, "alice", now)
    assert counts == {"queued": 2, "held": 1, "frozen": 0}
    assert spool.stats()["messages"] == 1
    assert spool.load(kept)[0]["did"] == "bob"
