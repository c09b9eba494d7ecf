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
from functions.reputation.events import ACTIONS_TOPIC, REJECTED_TOPIC, RESULTS_TOPIC
from runtime.bus import Record
from runtime.context import Services
from stream_apps import intake

GROUP = "stream-app:reputation"
BATCH = 200


class EmbeddedReputation:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.bus = services.bus
        self.store = services.store
        self.log = services.log.bind(stream_app="reputation")
        self.processed_by = f"embedded:{os.getpid()}"
        self.rejected = 0

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
        def state_of(did: str) -> dict | None:
            if did not in states:
                row = conn.execute("SELECT state FROM reputation_state WHERE did = ?", (did,)).fetchone()
                states[did] = json.loads(row["state"]) if row else None
            return states[did]

        try:
            did, state, result = intake.process(pol, record.raw, state_of, record.timestamp)
        except intake.Rejected as rejected:
            self._reject(conn, record, rejected)
            return
        states[did] = state
        changed.add(did)
        result["ProcessedBy"] = self.processed_by
        self.bus.publish(conn, RESULTS_TOPIC, did, result)

    def _reject(self, conn, record: Record, rejected: intake.Rejected) -> None:
        """The dead letter goes out in the batch's transaction: it exists if and only if the offset moved past it."""
        self.rejected += 1
        origin = f"{record.topic}/0/{record.offset}"
        letter = intake.dead_letter(record.raw, rejected, origin, self.processed_by, time.time())
        self.bus.publish(conn, REJECTED_TOPIC, record.key, letter)
        self.log.warning("stream.rejected", action_id=rejected.action_id, action_name=rejected.action_name,
                         reason=rejected.reason, origin=origin, rejected=self.rejected)

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
