"""Submission and SMTPS in their own processes (`smtp.processes`), beside the main one.

One CPython process runs Python on one core at a time, and a relay that
signs four times per message spends most of its CPU in the SMTP sessions.
With `smtp.processes: N` the main process binds the submission and SMTPS
sockets and hands them to N edge processes, which accept on them, run the
session hooks (auth, submit, sign) and commit to the same store and spool;
the main process keeps the inbound MX, HTTP, the queue runner, the
scheduler and the stream apps, and wakes them when an edge rings the
doorbell. Because the sockets are bound before any edge starts, a
connection is never refused while an edge starts or restarts: it waits in
the listen backlog.

A client's connections are counted against `smtp.maxConnectionsPerClient`
across all edges, in a table the main process creates and each edge maps
(runtime/client_connection_table.py); an edge's slot there is its column,
cleared by the edge that takes the slot over after a crash.

Edges are forks of the fork server (runtime/edge_forkserver.py), which
holds the relay's imported code, and new interpreters only when it cannot
be had. The supervisor restarts an edge that dies; an edge dies with the
main process (PR_SET_PDEATHSIG, through the fork server), so a kill -9 of
the relay leaves nothing accepting mail that nobody would deliver.
"""
from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
import threading
import time

from runtime import client_connection_table as table
from runtime import doorbell as bell
from runtime.bootstrap import Platform
from runtime.doorbell import Doorbell
from runtime.edge_forkserver import EdgeForkServer, ForkedEdge, ForkServerGone, die_with_parent
from runtime.jsonlog import JsonLog
from runtime.settings import Settings

EDGE_LISTENERS = ("submission", "smtps")
RESTART_PAUSE = 1.0
READY_TIMEOUT = 60.0
BIND_PATIENCE = 10.0


class EdgeStartFailed(Exception):
    pass


class EdgeSupervisor:
    """Main-process side: binds the edge sockets, starts and restarts the edges, relays deploys."""

    def __init__(self, settings: Settings, log: JsonLog, forks: EdgeForkServer | None = None) -> None:
        self.settings = settings
        self.log = log
        self.forks = forks
        self.count = settings.smtp.processes
        self.sockets: dict[str, socket.socket] = {}
        self._procs: dict[int, asyncio.subprocess.Process | ForkedEdge] = {}
        self._seen = threading.Condition()
        self._ready: set[int] = set()
        self._deployed: dict[int, int] = {}
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    def bind(self) -> None:
        """Bind the edge listeners here; an edge of a relay killed a moment ago may still hold them."""
        deadline = time.monotonic() + BIND_PATIENCE
        for name in EDGE_LISTENERS:
            host, port = getattr(self.settings.listen, name)
            while True:
                try:
                    sock = socket.create_server((host, port), backlog=1024)
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            sock.set_inheritable(True)
            self.sockets[name] = sock
        smtp = self.settings.smtp
        table.create(self.settings.state_path / table.FILE_NAME, self.count,
                     table.rows_for(self.count, smtp.maxConnections))

    def on_ring(self, what: bytes, pid: int) -> None:
        if what in (bell.READY, bell.DEPLOYED):
            with self._seen:
                if what == bell.READY:
                    self._ready.add(pid)
                else:
                    self._deployed[pid] = self._deployed.get(pid, 0) + 1
                self._seen.notify_all()

    def _arguments(self, slot: int, parent: int) -> list[str]:
        args = ["edge", "--parent", str(parent), "--slot", str(slot)]
        if self.settings.source != "built-in defaults":
            args += ["--config", os.path.abspath(self.settings.source)]
        return args

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process | ForkedEdge:
        """A fork of the fork server when there is one, else a new interpreter."""
        proc: asyncio.subprocess.Process | ForkedEdge | None = None
        if self.forks is not None and self.forks.available:
            try:
                proc = await self.forks.spawn(self._arguments(slot, self.forks.pid), self.sockets)
            except ForkServerGone as exc:
                self.log.error("edge.forkserver_failed", pid=self.forks.pid, error=str(exc))
        if proc is None:
            fds = ",".join(f"{name}={sock.fileno()}" for name, sock in self.sockets.items())
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runtime.cli", *self._arguments(slot, os.getpid()), "--listen-fds", fds,
                pass_fds=[s.fileno() for s in self.sockets.values()], stdin=asyncio.subprocess.DEVNULL)
        self._procs[slot] = proc
        return proc

    async def start(self) -> None:
        """Start every edge and wait until each is accepting."""
        if self.forks is not None:
            self.forks.attach(asyncio.get_running_loop())
        started = [await self._spawn(slot) for slot in range(self.count)]
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            dead = [p for p in started if p.returncode is not None]
            if dead:
                raise EdgeStartFailed(f"edge process {dead[0].pid} exited with {dead[0].returncode} while starting")
            with self._seen:
                if all(p.pid in self._ready for p in started):
                    break
            if time.monotonic() > deadline:
                raise EdgeStartFailed(f"edge processes not ready within {READY_TIMEOUT:g}s")
            await asyncio.sleep(0.05)
        for slot, proc in self._procs.items():
            self._tasks.append(asyncio.create_task(self._supervise(slot, proc), name=f"edge-{slot}"))

    async def _supervise(self, slot: int, proc: asyncio.subprocess.Process) -> None:
        while True:
            code = await proc.wait()
            if self._stopping:
                return
            self.log.error("edge.exited", pid=proc.pid, returncode=code, restart_in=RESTART_PAUSE)
            await asyncio.sleep(RESTART_PAUSE)
            if self._stopping:
                return
            proc = await self._spawn(slot)
            self.log.info("edge.restarted", pid=proc.pid)

    def deploy(self, timeout: float = 30.0) -> bool:
        """Make every edge reload (SIGHUP) and wait for each to confirm (called off the loop)."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:  # an edge still starting is signalled once it is ready
                procs = [p for p in self._procs.values() if p.returncode is None]
                if all(p.pid in self._ready for p in procs):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._seen.wait(min(left, 0.1))
            before = {p.pid: self._deployed.get(p.pid, 0) for p in procs}
        for proc in procs:
            proc.send_signal(signal.SIGHUP)
        with self._seen:
            while not all(self._deployed.get(pid, 0) > n for pid, n in before.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._seen.wait(left)
        return True

    async def stop(self) -> None:
        self._stopping = True
        procs = [p for p in self._procs.values() if p.returncode is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        if procs:
            await asyncio.wait([asyncio.create_task(p.wait()) for p in procs], timeout=30)
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
        for task in self._tasks:
            task.cancel()
        if self.forks is not None:
            self.forks.close()
        for sock in self.sockets.values():
            sock.close()


def parse_fds(text: str) -> dict[str, int]:
    fds = {}
    for part in text.split(","):
        name, _, fd = part.partition("=")
        if name not in EDGE_LISTENERS or not fd.isdigit():
            raise ValueError(f"bad --listen-fds entry {part!r}")
        fds[name] = int(fd)
    return fds


def run_edge(platform: Platform, fds: dict[str, int], parent: int, slot: int) -> int:
    """Edge-process side: serve the inherited sockets until SIGTERM or the parent's death.

    `slot` is this edge's column of the shared per-client counts, cleared here before accepting.
    """
    die_with_parent(parent)
    from runtime.open_files import raise_soft_limit
    from runtime.smtp_edge import SmtpEdge
    from runtime.tls import server_context

    services = platform.services
    log = services.log
    raise_soft_limit(log)
    doorbell = Doorbell(platform.settings.state_path)
    services.spool.on_wake(doorbell.ring)
    services.bus.on_publish(doorbell.ring)

    def deploy() -> None:
        try:
            platform.runtime.load()
        except Exception as exc:
            log.error("deploy.failed", error=str(exc))
            return
        log.info("edge.deployed", version=platform.runtime.require().version)
        doorbell.ring(bell.DEPLOYED)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        counts = table.ClientConnectionTable(platform.settings.state_path / table.FILE_NAME, slot)
        edge = SmtpEdge(platform.settings, platform.runtime, log, server_context(platform.settings, log), counts)
        sockets = {name: socket.socket(fileno=fd) for name, fd in fds.items()}
        await edge.start(sockets)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, deploy))
        doorbell.ring(bell.READY)
        log.info("edge.started", listeners=sorted(sockets))
        await stop.wait()
        await edge.stop()
        platform.runtime.shutdown()
        log.info("edge.stopped")

    asyncio.run(serve())
    return 0
