"""Shared fixtures: the relay as a process, members enrolled through its CLI, a recipient MX."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.certs import self_signed  # noqa: E402
from harness.clock import ClockFile  # noqa: E402
from harness.dns import Bind  # noqa: E402
from harness.mx import SinkMX  # noqa: E402
from harness.proofs import DomainProofs  # noqa: E402
from harness.relay import Relay, deep_merge  # noqa: E402


@pytest.fixture
def proofs(request, tmp_path):
    """Where members prove their domains (DKIM records in DNS, attestation in a fake PDS), started on first use.

    A test that has the `dns_server` fixture proves domains in that BIND, so the relay has one DNS.
    """
    dns = request.getfixturevalue("dns_server") if "dns_server" in request.fixturenames else None
    world = DomainProofs(tmp_path / "proofs", dns=dns)
    yield world
    world.stop()


@pytest.fixture
def atproto(proofs):
    """The fake PLC directory and PDS the relays of this test resolve DIDs and attestations with."""
    return proofs.start().atproto


@pytest.fixture
def start_relay(tmp_path, proofs):
    """Factory: start_relay(config=None, env=None, name='relay') -> a running Relay, stopped after the test."""
    started: list[Relay] = []

    def start(config: dict | None = None, env: dict | None = None, name: str = "relay", wait: bool = True) -> Relay:
        relay = Relay(tmp_path / name, config=config, env=env, proofs=proofs)
        started.append(relay)
        return relay.start(wait=wait)

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def relay(start_relay) -> Relay:
    return start_relay()


@pytest.fixture
def no_warmup(tmp_path) -> dict:
    """Config for a cooperative that does not warm new members up (a policy file without tiers)."""
    path = tmp_path / "policy.yml"
    path.write_text("warming:\n  tiers: []\n")
    return {"rulesFile": str(path)}


@pytest.fixture
def clock(tmp_path) -> ClockFile:
    """The relay's clock file: pass `clock.env` to the relay, then `clock.advance(seconds)`."""
    return ClockFile(tmp_path / "clock-offset")


@pytest.fixture
def sink_mx(tmp_path):
    """The recipients' MX: a real SMTP server offering STARTTLS, storing what it accepts."""
    mx = SinkMX(tmp_path / "mx", tls=self_signed(tmp_path / "mx-tls")).start()
    yield mx
    mx.stop()


@pytest.fixture
def dns_server(tmp_path):
    bind = Bind(tmp_path / "bind").start()
    yield bind
    bind.stop()


@pytest.fixture
def mail_relay(start_relay, dns_server, sink_mx):
    """Factory: a relay resolving through the test BIND and delivering to the sink MX.

    recipient.test has an MX; the operator's DKIM records are published from
    the relay's own `operator_dkim.first_boot` log line, as runbook task 1 says.
    """
    dns_server.mail_domain("recipient.test")

    def start(config: dict | None = None, **kwargs) -> Relay:
        base = deep_merge(dns_server.config, {"delivery": {"port": sink_mx.port, "retryIntervals": ["1s", "2s"],
                                                           "connectTimeout": "5s", "commandTimeout": "10s"}})
        relay = start_relay(deep_merge(base, config or {}), **kwargs)
        first_boot = relay.logs("operator_dkim.first_boot")
        if first_boot:
            dns_server.publish(first_boot[0]["records"])
        return relay

    return start



@pytest.fixture(scope="module", params=["embedded", "kafka"])
def reputation(request, tmp_path_factory):
    """A relay (with a movable clock) on the deployment named by the parameter, shared by a module's tests.

    kafka: a tansu broker, the relay publishing its outbox there, and two Faust workers sharing the
    partitions of the reputation app.
    """
    from harness.clock import ClockFile
    from harness.deployments import Deployment
    from harness.kafka import Tansu
    from harness.worker import Worker

    tmp = tmp_path_factory.mktemp(f"reputation-{request.param}")
    clock = ClockFile(tmp / "clock-offset")
    config: dict = {"limits": {"hourly": 100, "daily": 1000}}
    proofs = DomainProofs(tmp / "proofs")
    extras: list = [proofs]
    produce = None
    if request.param == "kafka":
        broker = Tansu(tmp / "tansu").start()
        extras.append(broker)
        config["kafka"] = {"bootstrapServers": [broker.bootstrap], "partitions": 4}
        produce = broker.produce
    relay = Relay(tmp / "relay", env=clock.env, config=config, proofs=proofs)
    deployment = Deployment(request.param, relay, clock, extras, produce)
    relay.start()
    if request.param == "kafka":
        workers = [Worker(relay.config_path, tmp / f"worker{i}", relay.env).start() for i in range(2)]
        extras.extend(workers)
        for worker in workers:
            worker.wait_ready()
        deployment.workers = workers
    yield deployment
    deployment.stop()
