"""`atmos-relay serve`: every listener and background loop of one relay in one process.

Start order matters for "never lose mail": the spool is recovered and the
startup functions have run before any listener accepts a connection, and on
SIGTERM listeners close first, then the loops drain.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from runtime import doorbell as bell
from runtime.bootstrap import Platform
from runtime.doorbell import Doorbell
from runtime.edge_forkserver import EdgeForkServer
from runtime.edge_processes import EDGE_LISTENERS, EdgeStartFailed, EdgeSupervisor
from runtime.http_gateway import HttpServer, create_app
from runtime.manifest import StartupTrigger
from runtime.open_files import raise_soft_limit
from runtime.queue_runner import QueueRunner
from runtime.scheduler import Scheduler
from runtime.smtp_edge import SmtpEdge
from runtime.streams import OutboxConsumer, stream_bindings
from runtime.tls import server_context
from runtime.websocket_edge import WebSocketEdge


def deployment_file(platform: Platform) -> Path:
    return platform.settings.state_path / "deployment.json"


def write_deployment_record(platform: Platform) -> None:
    deployment = platform.runtime.require()
    record = {
        "pid": os.getpid(),
        "version": deployment.version,
        "loaded_at": deployment.loaded_at,
        "manifest": str(deployment.manifest.path),
        "functions": sorted(deployment.manifest.functions),
        "sources": deployment.fingerprint,
    }
    path = deployment_file(platform)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


class Relay:
    def __init__(self, platform: Platform, forks: EdgeForkServer | None = None) -> None:
        self.platform = platform
        self.forks = forks
        self.settings = platform.settings
        self.services = platform.services
        self.runtime = platform.runtime
        self.log = platform.services.log
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.edges: EdgeSupervisor | None = None

    def run_startup_functions(self) -> None:
        deployment = self.runtime.require()
        for spec in deployment.manifest.functions.values():
            if spec.triggers(StartupTrigger):
                try:
                    self.runtime.invoke(spec.name, {"trigger": "startup", "source": "atmos.runtime"},
                                        deployment=deployment)
                except Exception as exc:
                    raise StartupFailed(f"startup function {spec.name}: {exc}") from exc

    def deploy(self) -> None:
        """SIGHUP: reload serverless.yml and the handlers; open sessions keep the old code."""
        try:
            changed = self.runtime.changed_since_load()
            deployment = self.runtime.load()
            if deployment.manifest.migrations:
                self.services.store.migrate(deployment.manifest.migrations.partition(":")[0],
                                            deployment.resolve(deployment.manifest.migrations))
        except Exception as exc:
            self.log.error("deploy.failed", error=str(exc))
            return
        if self.edges is not None and not self.edges.deploy():
            self.log.error("deploy.failed", error="an edge process did not load the new deployment")
            return
        write_deployment_record(self.platform)
        self.log.info("deploy.done", version=deployment.version, functions=len(deployment.manifest.functions),
                      changed=changed)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        raise_soft_limit(self.log)
        recovered = await asyncio.to_thread(self.services.spool.recover)
        self.log.info("spool.recovered", **recovered)
        await asyncio.to_thread(self.run_startup_functions)
        tls = server_context(self.settings, self.log)
        edge = SmtpEdge(self.settings, self.runtime, self.log, tls)
        app = create_app(self.settings, self.runtime, self.log)
        http = HttpServer(app, *self.settings.listen.http, log=self.log, settings=self.settings)
        runner = QueueRunner(self.settings, self.runtime, self.services.spool, self.services.clock, self.log)
        scheduler = Scheduler(self.runtime, self.log)

        self.tasks.append(asyncio.create_task(runner.run(self.stop_event), name="queue-runner"))
        self.tasks.append(asyncio.create_task(scheduler.run(self.stop_event), name="scheduler"))
        for background in self._stream_tasks():
            self.tasks.append(asyncio.create_task(background, name="stream"))

        if self.settings.smtp.processes:
            doorbell = Doorbell(self.settings.state_path)
            self.edges = EdgeSupervisor(self.settings, self.log, self.forks)
            doorbell.listen(loop, self._on_ring)
            self.edges.bind()
            try:
                await self.edges.start()
            except EdgeStartFailed as exc:
                await self.edges.stop()
                raise StartupFailed(str(exc)) from exc
            await edge.start(skip=EDGE_LISTENERS)
        else:
            await edge.start()
        http.start()
        sockets = WebSocketEdge(self.settings, self.runtime, self.log, "labeler")
        if sockets.bound():
            await sockets.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, self.deploy))
        write_deployment_record(self.platform)
        self.log.info("relay.started", hostname=self.settings.hostname, state_dir=self.settings.stateDir,
                      config=self.settings.source, version=self.runtime.require().version,
                      kafka=bool(self.settings.kafka.bootstrapServers), pid=os.getpid())
        await self.stop_event.wait()
        self.log.info("relay.stopping")
        if self.edges is not None:
            await self.edges.stop()
            doorbell.close(loop)
        await edge.stop()
        http.stop()
        await sockets.stop()
        await asyncio.wait(self.tasks, timeout=30)
        for task in self.tasks:
            task.cancel()
        self.runtime.shutdown()
        deployment_file(self.platform).unlink(missing_ok=True)
        self.log.info("relay.stopped")

    def _on_ring(self, what: bytes, pid: int) -> None:
        """An edge process committed something: wake the readers here (queue runner, streams)."""
        assert self.edges is not None
        self.edges.on_ring(what, pid)
        if what == bell.WAKE:
            self.services.spool.wake()
            self.services.bus.nudge()

    def _stream_tasks(self) -> list:
        coros = []
        kafka = self.settings.kafka.bootstrapServers
        for function, trigger in stream_bindings(self.runtime):
            if kafka:
                from runtime.kafka import KafkaConsumerLoop
                coros.append(KafkaConsumerLoop(self.settings, self.runtime, self.log, function, trigger)
                             .run(self.stop_event))
            else:
                coros.append(OutboxConsumer(self.services.bus, self.runtime, self.log, function, trigger)
                             .run(self.stop_event))
        deployment = self.runtime.require()
        if kafka:
            from runtime.kafka import OutboxPublisher
            coros.append(OutboxPublisher(self.settings, self.services.bus, self.log).run(self.stop_event))
        else:
            for name, entry in deployment.manifest.stream_apps.items():
                if entry.get("embedded"):
                    factory = deployment.resolve(entry["embedded"])
                    coros.append(factory(self.services).run(self.stop_event))
        return coros


class StartupFailed(Exception):
    pass


def serve(platform: Platform, forks: EdgeForkServer | None = None) -> int:
    """`forks`: the edge fork server `atmos-relay serve` started before building the platform."""
    started = time.monotonic()
    relay = Relay(platform, forks)
    try:
        asyncio.run(relay.serve())
    except StartupFailed as exc:
        platform.services.log.error("relay.startup_failed", error=str(exc))
        return 2
    platform.services.log.info("relay.exit", uptime=round(time.monotonic() - started, 1))
    return 0
