"""Shared fixtures: the relay as a process, members enrolled through its CLI, a recipient MX."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.mx import SinkMX  # noqa: E402
from harness.relay import Relay  # noqa: E402


@pytest.fixture
def start_relay(tmp_path):
    """Factory: start_relay(config=None, env=None, name='relay') -> a running Relay, stopped after the test."""
    started: list[Relay] = []

    def start(config: dict | None = None, env: dict | None = None, name: str = "relay", wait: bool = True) -> Relay:
        relay = Relay(tmp_path / name, config=config, env=env)
        started.append(relay)
        return relay.start(wait=wait)

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def relay(start_relay) -> Relay:
    return start_relay()


@pytest.fixture
def sink_mx(tmp_path):
    mx = SinkMX(tmp_path / "mx").start()
    yield mx
    mx.stop()
