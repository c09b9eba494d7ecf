"""The event bus: a durable outbox in SQLite, read like a Kafka topic.

A handler publishes inside the same transaction as the state change the
event describes, so an event exists if and only if its state does. Readers
keep committed offsets per consumer group, as Kafka consumers do. With Kafka
configured, `runtime.kafka.OutboxPublisher` forwards the outbox to the brokers.
"""
from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from runtime.store import Store

LINGER = 0.02


@dataclass(frozen=True)
class Record:
    offset: int
    topic: str
    key: str
    raw: str
    timestamp: float

    @functools.cached_property
    def value(self) -> dict:
        """Decoded on first use: a consumer that only passes records on never parses them."""
        return json.loads(self.raw)


class EventBus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._published = threading.Condition()
        self._seq = 0
        self._listeners: list = []

    def publish(self, conn: sqlite3.Connection, topic: str, key: str, value: dict) -> int:
        """Append to `topic` inside the caller's open transaction."""
        cur = conn.execute(
            "INSERT INTO outbox (topic, key, value, created_at) VALUES (?, ?, ?, ?)",
            (topic, key, json.dumps(value, separators=(",", ":"), sort_keys=True), time.time()))
        self.nudge()
        return int(cur.lastrowid)

    def nudge(self) -> None:
        with self._published:
            self._seq += 1
            self._published.notify_all()
        for callback in self._listeners:
            callback()

    def on_publish(self, callback) -> None:
        """Also call `callback` on every publish (an edge process rings the main one)."""
        self._listeners.append(callback)

    def wait(self, seen: int, timeout: float, linger: float = LINGER) -> int:
        """Block until something was published after `seen` (a hint, never a guarantee).

        After a wake-up the reader lingers a moment: the publisher's transaction is usually still
        open, and under load the next few records arrive within milliseconds, so one read then
        takes a batch instead of one record per wake-up.
        """
        with self._published:
            if self._seq == seen:
                self._published.wait(timeout)
            sequence = self._seq
        if sequence != seen and linger > 0:
            time.sleep(linger)
        return sequence

    @property
    def sequence(self) -> int:
        return self._seq

    def read(self, topic: str, after: int, limit: int = 500) -> list[Record]:
        rows = self.store.query(
            "SELECT id, topic, key, value, created_at FROM outbox"
            " WHERE topic = ? AND id > ? ORDER BY id LIMIT ?", (topic, after, limit))
        return [Record(*r) for r in rows]

    def read_all(self, after: int, limit: int = 500) -> list[Record]:
        rows = self.store.query(
            "SELECT id, topic, key, value, created_at FROM outbox"
            " WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return [Record(*r) for r in rows]

    def committed(self, group: str, topic: str) -> int:
        row = self.store.query_one(
            "SELECT committed FROM consumer_offsets WHERE group_id = ? AND topic = ?", (group, topic))
        return int(row["committed"]) if row else 0

    def commit(self, conn: sqlite3.Connection, group: str, topic: str, offset: int) -> None:
        conn.execute(
            "INSERT INTO consumer_offsets (group_id, topic, committed, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (group_id, topic) DO UPDATE SET committed = MAX(committed, excluded.committed),"
            " updated_at = excluded.updated_at",
            (group, topic, offset, time.time()))

    def latest_offset(self, topic: str | None = None) -> int:
        if topic is None:
            row = self.store.query_one("SELECT MAX(id) AS o FROM outbox")
        else:
            row = self.store.query_one("SELECT MAX(id) AS o FROM outbox WHERE topic = ?", (topic,))
        return int(row["o"] or 0) if row else 0

    def prune(self, older_than: float) -> int:
        """Drop records older than `older_than` that every consumer group of their topic has read.

        A topic nobody has ever consumed is kept (its reader may not have started yet).
        """
        removed = 0
        with self.store.transaction() as conn:
            topics = [r["topic"] for r in conn.execute("SELECT DISTINCT topic FROM outbox")]
            for topic in topics:
                row = conn.execute(
                    "SELECT MIN(committed) AS low, COUNT(*) AS groups FROM consumer_offsets"
                    " WHERE topic IN (?, '*')", (topic,)).fetchone()
                if not row["groups"]:
                    continue
                removed += conn.execute("DELETE FROM outbox WHERE topic = ? AND id <= ? AND created_at < ?",
                                        (topic, row["low"], older_than)).rowcount
        return removed


def record_as_lambda(record: Record, partition: int = 0) -> dict[str, Any]:
    """One record in the shape of Lambda's Kafka event source (values base64)."""
    import base64

    return {
        "topic": record.topic,
        "partition": partition,
        "offset": record.offset,
        "timestamp": int(record.timestamp * 1000),
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(record.key.encode()).decode(),
        "value": base64.b64encode(record.raw.encode()).decode(),
        "headers": [],
    }


MIGRATIONS = [
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX outbox_topic ON outbox (topic, id);
    CREATE TABLE consumer_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        committed INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (group_id, topic)
    );
    """,
]
