"""The reputation stream app on Kafka: `atmos-relay worker` or `faust -A stream_apps.app worker`.

Actions arrive on `osprey.actions_input` keyed by the member's DID; the
member's reputation state lives in a Faust table partitioned the same way
(changelog-backed, so a worker that dies is replaced without losing
counts); each action goes through `rules.process` and its execution result
is sent to `osprey.execution_results`. Configuration comes from the relay's
config.json ($ATMOS_RELAY_CONFIG), the policy from its `rulesFile`.
"""
from __future__ import annotations

import json
import os
import socket
import time

import faust

from functions.reputation import policy
from functions.reputation.events import ACTIONS_TOPIC, RESULTS_TOPIC
from runtime.settings import load_settings
from stream_apps import rules

settings = load_settings()
WORKER_ID = f"faust:{socket.gethostname()}:{os.getpid()}"
policy.load(settings.rulesFile)  # a bad policy stops the worker before it joins the group
_kafka = settings.kafka

app = faust.App(
    "atmos-reputation",
    broker=[f"kafka://{server}" for server in _kafka.bootstrapServers] or ["kafka://localhost:9092"],
    store="memory://",
    topic_partitions=_kafka.partitions,
    topic_replication_factor=1,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=10,
    broker_heartbeat_interval=2,
    broker_rebalance_timeout=20,
    broker_commit_every=50,
    broker_commit_interval=1.0,
    stream_wait_empty=False,
)

actions = app.topic(ACTIONS_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=_kafka.partitions)
results = app.topic(RESULTS_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=_kafka.partitions)
reputation = app.Table("member-reputation", default=None, key_type=str, value_type=None,
                       partitions=_kafka.partitions)


@app.agent(actions)
async def evaluate(stream) -> None:
    """One member's actions in order; state and result written for each."""
    async for key, value in stream.items():
        try:
            envelope = json.loads(value)
            did = str(envelope["data"]["data"]["sender_did"])
        except (ValueError, KeyError, TypeError):
            continue
        try:
            state, result = rules.process(policy.load(settings.rulesFile), reputation.get(did), envelope, time.time())
        except (KeyError, TypeError, ValueError):
            continue
        reputation[did] = state
        result["ProcessedBy"] = WORKER_ID
        await results.send(key=did.encode(), value=json.dumps(result, separators=(",", ":")).encode())
