"""The reputation stream app on Kafka: `atmos-relay worker` or `faust -A stream_apps.app worker`.

Actions arrive on `osprey.actions_input` keyed by the member's DID; the
member's reputation state lives in a Faust table partitioned the same way
(changelog-backed, so a worker that dies is replaced without losing
counts); each action goes through `rules.process` and its execution result
is sent to `osprey.execution_results`. An action the rules cannot read
goes whole to `osprey.actions_rejected` with the reason (stream_apps/intake.py)
and is logged as `stream.rejected`. Configuration comes from the relay's
config.json ($ATMOS_RELAY_CONFIG), the policy from its `rulesFile`.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import time

import faust

from functions.reputation import policy
from functions.reputation.events import ACTIONS_TOPIC, REJECTED_TOPIC, RESULTS_TOPIC
from runtime.jsonlog import JsonLog
from runtime.settings import load_settings
from stream_apps import intake

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
rejected = app.topic(REJECTED_TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=_kafka.partitions)
reputation = app.Table("member-reputation", default=None, key_type=str, value_type=None,
                       partitions=_kafka.partitions)
log = JsonLog().bind(stream_app="reputation", worker=WORKER_ID)
rejections = itertools.count(1)


@app.agent(actions)
async def evaluate(stream) -> None:
    """One member's actions in order; state and result written for each, or the action's dead letter."""
    async for event in stream.events():
        message = event.message
        try:
            did, state, result = intake.process(policy.load(settings.rulesFile), event.value or b"",
                                                reputation.get, time.time())
        except intake.Rejected as refused:
            await _reject(event.key, event.value or b"", refused, f"{message.topic}/{message.partition}/{message.offset}")
            continue
        reputation[did] = state
        result["ProcessedBy"] = WORKER_ID
        await results.send(key=did.encode(), value=json.dumps(result, separators=(",", ":")).encode())


async def _reject(key: bytes | None, raw: bytes, refused: intake.Rejected, origin: str) -> None:
    letter = intake.dead_letter(raw, refused, origin, WORKER_ID, time.time())
    await rejected.send(key=key or b"", value=json.dumps(letter, separators=(",", ":")).encode())
    log.warning("stream.rejected", action_id=refused.action_id, action_name=refused.action_name,
                reason=refused.reason, origin=origin, rejected=next(rejections))
