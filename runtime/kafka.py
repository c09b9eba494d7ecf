"""The event bus on Kafka: the outbox is forwarded to the brokers, stream triggers read from them.

`OutboxPublisher` keeps the outbox as the durable buffer: a record leaves it
only once the brokers acknowledged it (acks=all), in outbox order, keyed as
it was written (the member's DID), so each member's events stay in order on
their partition; a crash re-sends, never skips (at least once).
`KafkaConsumerLoop` feeds one function from a consumer group and commits
after the function succeeded.
"""
from __future__ import annotations

import asyncio
import base64

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from runtime.bus import EventBus
from runtime.invoker import FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import StreamTrigger
from runtime.settings import Settings
from runtime.streams import RETRY_PAUSE, lambda_kafka_event

PUBLISHER_GROUP = "kafka-publisher"
ALL_TOPICS = "*"


def servers(settings: Settings) -> str:
    return ",".join(settings.kafka.bootstrapServers)


async def ensure_topics(settings: Settings, topics: list[str], log: JsonLog) -> None:
    """Create the topics we use with the configured partitions, if the brokers do not have them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, num_partitions=settings.kafka.partitions, replication_factor=1)
                  for t in topics if t not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
                log.info("kafka.topics_created", topics=[t.name for t in wanted],
                         partitions=settings.kafka.partitions)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class OutboxPublisher:
    def __init__(self, settings: Settings, bus: EventBus, log: JsonLog) -> None:
        self.settings = settings
        self.bus = bus
        self.log = log.bind(component="kafka.publisher")
        self.known_topics: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        producer = None
        seen = self.bus.sequence
        while not stop.is_set():
            try:
                if producer is None:
                    producer = AIOKafkaProducer(bootstrap_servers=servers(self.settings), acks="all",
                                                linger_ms=5, request_timeout_ms=15000)
                    await producer.start()
                    self.log.info("kafka.publisher_started", servers=servers(self.settings))
                after = await asyncio.to_thread(self.bus.committed, PUBLISHER_GROUP, ALL_TOPICS)
                records = await asyncio.to_thread(self.bus.read_all, after, 1000)
                if not records:
                    seen = await asyncio.to_thread(self.bus.wait, seen, 0.5)
                    continue
                new_topics = {r.topic for r in records} - self.known_topics
                if new_topics:
                    await ensure_topics(self.settings, sorted(new_topics), self.log)
                    self.known_topics |= new_topics
                sends = [await producer.send(r.topic, key=r.key.encode(), value=r.raw.encode()) for r in records]
                await asyncio.gather(*sends)

                def commit(last: int = records[-1].offset) -> None:
                    with self.bus.store.transaction() as conn:
                        self.bus.commit(conn, PUBLISHER_GROUP, ALL_TOPICS, last)
                await asyncio.to_thread(commit)
            except (KafkaError, OSError) as exc:
                self.log.warning("kafka.publish_failed", error=repr(exc), retry_in=RETRY_PAUSE)
                if producer is not None:
                    await _quietly(producer.stop())
                    producer = None
                await asyncio.sleep(RETRY_PAUSE)
        if producer is not None:
            await _quietly(producer.stop())


class KafkaConsumerLoop:
    """One function's consumer group over one Kafka topic."""

    def __init__(self, settings: Settings, runtime: FunctionRuntime, log: JsonLog, function: str,
                 trigger: StreamTrigger) -> None:
        self.settings = settings
        self.runtime = runtime
        self.function = function
        self.trigger = trigger
        self.group = f"{settings.kafka.groupId}.{function}"
        self.log = log.bind(component="kafka.consumer", function=function, topic=trigger.topic)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = None
        while not stop.is_set():
            try:
                if consumer is None:
                    await ensure_topics(self.settings, [self.trigger.topic], self.log)
                    consumer = AIOKafkaConsumer(
                        self.trigger.topic, bootstrap_servers=servers(self.settings), group_id=self.group,
                        enable_auto_commit=False, max_poll_records=self.trigger.batchSize,
                        auto_offset_reset="earliest" if self.trigger.startingPosition == "TRIM_HORIZON" else "latest")
                    await consumer.start()
                    self.log.info("kafka.consumer_started", group=self.group)
                batch = await consumer.getmany(timeout_ms=500, max_records=self.trigger.batchSize)
                if not batch:
                    continue
                records = {f"{tp.topic}-{tp.partition}": [_lambda_record(r) for r in rs] for tp, rs in batch.items()}
                event = {**lambda_kafka_event(self.trigger.topic, [], "aws:kafka"), "records": records,
                         "bootstrapServers": servers(self.settings)}
                while not stop.is_set():
                    try:
                        await self.runtime.invoke_async(self.function, event)
                        break
                    except Exception as exc:
                        self.log.error("stream.batch_failed", error=repr(exc))
                        await asyncio.sleep(RETRY_PAUSE)
                else:
                    break
                await consumer.commit()
            except (KafkaError, OSError) as exc:
                self.log.warning("kafka.consume_failed", error=repr(exc), retry_in=RETRY_PAUSE)
                if consumer is not None:
                    await _quietly(consumer.stop())
                    consumer = None
                await asyncio.sleep(RETRY_PAUSE)
        if consumer is not None:
            await _quietly(consumer.stop())


def _lambda_record(r) -> dict:
    return {"topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(r.key or b"").decode(), "value": base64.b64encode(r.value or b"").decode(),
            "headers": []}


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass
