"""Events per second through the rules, on each deployment: embedded (SQLite outbox) and Kafka (tansu, 2 workers).

N actions are replayed at once; the clock runs from the moment they are on
the stream until the relay has stored every execution result in
`relay_events` (rules evaluated, results consumed, effects applied).
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from harness.actions import action, plc_did, write_jsonl
from harness.kafka import Tansu
from harness.relay import Relay
from harness.worker import Worker


def _results(relay: Relay) -> int:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM relay_events").fetchone()[0]
    finally:
        db.close()


def _drive(relay: Relay, work: Path, count: int, members: int) -> float:
    now = time.time()
    actions = []
    for i in range(count):
        did = plc_did(i % members, "bench")
        if i % 2:
            actions.append(action("delivery_result", did, now - 3000 + i * 0.01, recipient=f"r{i}@recipient.test",
                                  message_id=f"<{i}@bench>", status="delivered"))
        else:
            actions.append(action("relay_attempt", did, now - 3000 + i * 0.01, recipients=[f"r{i}@recipient.test"],
                                  message_id=f"<{i}@bench>"))
    path = write_jsonl(work / "actions.jsonl", actions)
    before = _results(relay)
    relay.cli_json("events", "replay", str(path))
    started = time.perf_counter()
    deadline = time.monotonic() + 600
    while _results(relay) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_results(relay) - before} of {count} results")
        time.sleep(0.05)
    return count / (time.perf_counter() - started)


def run(work: Path, count: int = 5000, members: int = 50) -> dict[str, float]:
    out: dict[str, float] = {}
    relay = Relay(work / "events-embedded")
    try:
        relay.start()
        _drive(relay, work, 200, members)
        out["embedded_events_per_s"] = _drive(relay, work, count, members)
    finally:
        relay.stop()
    broker = Tansu(work / "events-tansu").start()
    relay = Relay(work / "events-kafka", config={"kafka": {"bootstrapServers": [broker.bootstrap], "partitions": 4}})
    workers: list[Worker] = []
    try:
        relay.start()
        workers = [Worker(relay.config_path, work / f"events-worker{i}", relay.env).start() for i in range(2)]
        for worker in workers:
            worker.wait_ready()
        _drive(relay, work, 200, members)
        out["kafka_2_workers_events_per_s"] = _drive(relay, work, count, members)
    finally:
        for worker in workers:
            worker.stop()
        relay.stop()
        broker.stop()
    return out
