"""The two deployments the reputation scenarios run on: embedded (SQLite outbox) and Kafka (tansu + workers)."""
from __future__ import annotations

import base64
import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable

from harness.clock import ClockFile
from harness.relay import Relay


@dataclass
class Deployment:
    kind: str
    relay: Relay
    clock: ClockFile
    extras: list = field(default_factory=list)
    produce: Callable[[str, str, dict], None] | None = None
    workers: list = field(default_factory=list)

    def publish_result(self, result: dict) -> None:
        """An execution result as another producer (an Osprey deployment) would emit it."""
        if self.produce is not None:
            self.produce("osprey.execution_results", result.get("SenderDid", ""), result)
            return
        record = {"topic": "osprey.execution_results", "partition": 0, "offset": 0, "timestamp": 0,
                  "key": base64.b64encode(result.get("SenderDid", "").encode()).decode(),
                  "value": base64.b64encode(json.dumps(result).encode()).decode()}
        event = {"eventSource": "aws:kafka", "records": {"osprey.execution_results-0": [record]}}
        self.relay.cli("invoke", "apply-results", "--payload", json.dumps(event))

    def publish_action(self, envelope: dict) -> None:
        """An action written straight onto osprey.actions_input, past the replay function's checks.

        On Kafka that is any producer of the topic; embedded, the topic is the outbox table.
        """
        did = str(((envelope.get("data") or {}).get("data") or {}).get("sender_did") or "")
        if self.produce is not None:
            self.produce("osprey.actions_input", did, envelope)
            return
        db = sqlite3.connect(self.relay.state / "relay.sqlite", timeout=30)
        with db:
            db.execute("INSERT INTO outbox (topic, key, value, created_at) VALUES (?, ?, ?, ?)",
                       ("osprey.actions_input", did, json.dumps(envelope), time.time()))
        db.close()

    def stop(self) -> None:
        self.relay.stop()
        for extra in reversed(self.extras):
            extra.stop()
