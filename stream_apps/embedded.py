"""The stream apps without Kafka: the same `rules.process`, run in-process over the SQLite outbox.

A batch of actions is handled in one transaction: each member's state is
read once, every action is processed in order, each changed state is
written once, the execution results are appended to the outbox and the
consumer offset moves. A crash between batches loses nothing and repeats
nothing.
"""
from __future__ import annotations

import asyncio
import json
import os
import time

from functions.reputation import policy
from functions.reputation.events import ACTIONS_TOPIC, RESULTS_TOPIC
from runtime.bus import Record
from runtime.context import Services
from stream_apps import rules

GROUP = "stream-app:reputation"
BATCH = 200


class EmbeddedReputation:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.bus = services.bus
        self.store = services.store
        self.log = services.log.bind(stream_app="reputation")

    def step(self) -> int:
        """Process what is waiting; returns how many actions were read."""
        topic = ACTIONS_TOPIC
        records = self.bus.read(topic, self.bus.committed(GROUP, topic), BATCH)
        if not records:
            return 0
        pol = policy.load(self.settings.rulesFile)
        with self.store.transaction() as conn:
            states: dict[str, dict | None] = {}
            changed: set[str] = set()
            for record in records:
                self._one(conn, pol, record, states, changed)
            now = time.time()
            conn.executemany(
                "INSERT INTO reputation_state (did, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (did) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                [(did, json.dumps(states[did], separators=(",", ":")), now) for did in sorted(changed)])
            self.bus.commit(conn, GROUP, topic, records[-1].offset)
        return len(records)

    def _one(self, conn, pol: policy.Policy, record: Record, states: dict[str, dict | None],
             changed: set[str]) -> None:
        try:
            did = str(record.value["data"]["data"]["sender_did"])
        except (KeyError, TypeError):
            self.log.warning("stream.action_malformed", offset=record.offset)
            return
        if did not in states:
            row = conn.execute("SELECT state FROM reputation_state WHERE did = ?", (did,)).fetchone()
            states[did] = json.loads(row["state"]) if row else None
        try:
            state, result = rules.process(pol, states[did], record.value, record.timestamp)
        except (KeyError, TypeError, ValueError) as exc:
            self.log.warning("stream.action_malformed", offset=record.offset, error=repr(exc))
            return
        states[did] = state
        changed.add(did)
        result["ProcessedBy"] = f"embedded:{os.getpid()}"
        self.bus.publish(conn, RESULTS_TOPIC, did, result)

    async def run(self, stop: asyncio.Event) -> None:
        seen = self.bus.sequence
        while not stop.is_set():
            try:
                handled = await asyncio.to_thread(self.step)
            except Exception as exc:
                self.log.error("stream.step_failed", error=repr(exc))
                await asyncio.sleep(1)
                continue
            if not handled:
                seen = await asyncio.to_thread(self.bus.wait, seen, 0.5)
