"""Stream triggers: feed a topic to its function in order, committing offsets after success.

Without Kafka the topic is the SQLite outbox; with Kafka it is the broker's
topic, read by an aiokafka consumer group (see `runtime.kafka`). Either way
the function receives a batch shaped like Lambda's Kafka event source, and
a failed batch is retried, not skipped: delivery is at least once, in order.
"""
from __future__ import annotations

import asyncio

from runtime.bus import EventBus, record_as_lambda
from runtime.invoker import FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import StreamTrigger

RETRY_PAUSE = 2.0


def stream_bindings(runtime: FunctionRuntime) -> list[tuple[str, StreamTrigger]]:
    deployment = runtime.require()
    return [(spec.name, trigger) for spec in deployment.manifest.functions.values()
            for trigger in spec.triggers(StreamTrigger)]


def lambda_kafka_event(topic: str, records: list[dict], source: str) -> dict:
    return {"eventSource": source, "bootstrapServers": "",
            "records": {f"{topic}-0": records} if records else {}}


class OutboxConsumer:
    """One function's consumer group over one outbox topic."""

    def __init__(self, bus: EventBus, runtime: FunctionRuntime, log: JsonLog, function: str,
                 trigger: StreamTrigger) -> None:
        self.bus = bus
        self.runtime = runtime
        self.log = log
        self.function = function
        self.trigger = trigger
        self.group = f"fn:{function}"

    async def run(self, stop: asyncio.Event) -> None:
        topic = self.trigger.topic
        if self.trigger.startingPosition == "LATEST" and self.bus.committed(self.group, topic) == 0:
            latest = self.bus.latest_offset(topic)
            with self.bus.store.transaction() as conn:
                self.bus.commit(conn, self.group, topic, latest)
        seen = self.bus.sequence
        while not stop.is_set():
            offset = await asyncio.to_thread(self.bus.committed, self.group, topic)
            records = await asyncio.to_thread(self.bus.read, topic, offset, self.trigger.batchSize)
            if not records:
                seen = await asyncio.to_thread(self.bus.wait, seen, 0.5)
                continue
            event = lambda_kafka_event(topic, [record_as_lambda(r) for r in records], "atmos:outbox")
            try:
                deployment = self.runtime.require()
                if self.function not in deployment.manifest.functions:
                    return
                await self.runtime.invoke_async(self.function, event, deployment=deployment)
            except Exception as exc:
                self.log.error("stream.batch_failed", function=self.function, topic=topic,
                               first_offset=records[0].offset, error=repr(exc))
                await asyncio.sleep(RETRY_PAUSE)
                continue

            def commit(last: int = records[-1].offset) -> None:
                with self.bus.store.transaction() as conn:
                    self.bus.commit(conn, self.group, topic, last)
            await asyncio.to_thread(commit)
