"""Edge processes forked from a copy of the relay taken after its imports, not started afresh.

An edge started as a new interpreter spends about a second of CPU importing
the relay before it accepts, at every start and again at every restart after
a crash while clients wait in the listen backlog. So `serve`, before it opens
the store or starts a thread, imports every handler and forks once: the child
is the fork server, a single-threaded process that only forks edges on
request. An edge is then a fork of that pristine, fully imported process and
is accepting within a tenth of a second. It builds its own platform (store,
spool, settings) from the config file, exactly as an exec'd edge does.

The main process talks to the fork server over a socket pair: a spawn request
carries the edge's arguments and its listening sockets (SCM_RIGHTS); the
server answers with the edge's pid, and later with its exit code, since only
a parent can reap its child. The fork server dies with the main process and
each edge with the fork server (PR_SET_PDEATHSIG), so a kill -9 of the relay
still leaves nothing accepting. When the fork server cannot be had (threads
already running, the server gone), the supervisor starts edges as new
interpreters instead.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Callable

from runtime.jsonlog import JsonLog

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 65536
SPAWN_TIMEOUT = 10.0
Entry = Callable[[list[str], dict[str, float]], int]


class ForkServerGone(Exception):
    pass


class ForkedEdge:
    """The main process's handle on an edge the fork server started (asyncio Process's interface)."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = loop.create_future()

    def _exit(self, code: int) -> None:
        self.returncode = code
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class EdgeForkServer:
    """Main-process side: forks the server once, then asks it for edges."""

    def __init__(self, control: socket.socket, pid: int, log: JsonLog) -> None:
        self._control = control
        self.pid = pid
        self.log = log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replies: asyncio.Queue[dict] | None = None
        self._edges: dict[int, ForkedEdge] = {}
        self._early_exits: dict[int, int] = {}
        self._lock: asyncio.Lock | None = None
        self.gone = False  # the connection is lost: the server and its edges are dead
        self.failed = False  # it did not answer a spawn: ask it for no more edges

    @classmethod
    def start(cls, preloaded: dict[str, float], entry: Entry, log: JsonLog) -> "EdgeForkServer | None":
        """Fork the server from this process, whose handlers are imported; None when forking is not safe here.

        `preloaded` is those handlers' sources' fingerprint (runtime.invoker.preload_handlers), which each
        edge's `entry(argv, preloaded)` uses to keep the modules instead of importing them again.
        """
        if threading.active_count() != 1:
            log.warning("edge.forkserver_unavailable", reason="threads already running; edges start as new processes")
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                code = _serve(theirs, parent, lambda argv: entry(argv, preloaded))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        return cls(ours, pid, log)

    @property
    def available(self) -> bool:
        return not (self.gone or self.failed)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._replies = asyncio.Queue()
        self._lock = asyncio.Lock()
        loop.add_reader(self._control.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._replies is not None
        while True:
            try:
                data = self._control.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            message = json.loads(data)
            if "exited" in message:
                pid, code = int(message["exited"]), int(message["returncode"])
                edge = self._edges.pop(pid, None)
                if edge is not None:
                    edge._exit(code)
                else:  # exited before spawn() registered it
                    self._early_exits[pid] = code
            elif self.failed:  # the answer to a spawn we gave up on: that edge is not ours to run
                os.kill(int(message["spawned"]), signal.SIGTERM)
            else:
                self._replies.put_nowait(message)

    def _lost(self) -> None:
        """The server is gone (killed?): its edges died with it (PDEATHSIG), so they count as exited."""
        if self.gone:
            return
        self.gone = True
        assert self._loop is not None
        self._loop.remove_reader(self._control.fileno())
        self.log.error("edge.forkserver_lost", pid=self.pid)
        for edge in self._edges.values():
            edge._exit(-signal.SIGKILL)
        self._edges.clear()
        assert self._replies is not None
        self._replies.put_nowait({"error": "fork server gone"})

    async def spawn(self, argv: list[str], sockets: dict[str, socket.socket]) -> ForkedEdge:
        """A new edge running `argv` + `--listen-fds` for these sockets, as numbered in the edge."""
        assert self._loop is not None and self._lock is not None and self._replies is not None
        async with self._lock:
            if not self.available:
                raise ForkServerGone("fork server gone")
            names = list(sockets)
            request = json.dumps({"argv": argv, "listeners": names}).encode()
            try:
                socket.send_fds(self._control, [request], [sockets[n].fileno() for n in names])
                reply = await asyncio.wait_for(self._replies.get(), SPAWN_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                self.failed = True
                raise ForkServerGone(f"fork server did not answer: {exc!r}") from exc
            if "error" in reply:
                raise ForkServerGone(reply["error"])
            edge = ForkedEdge(int(reply["spawned"]), self._loop)
            if edge.pid in self._early_exits:
                edge._exit(self._early_exits.pop(edge.pid))
            else:
                self._edges[edge.pid] = edge
            return edge

    def close(self) -> None:
        if self._loop is not None and not self.gone:
            self._loop.remove_reader(self._control.fileno())
        self._control.close()
        self.gone = True


def name_process(name: str) -> None:
    """What ps -o comm and top show: a fork keeps its parent's command line, not its role."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def die_with_parent(parent: int) -> None:
    """SIGKILL when the parent dies; exit now if it already has (we were reparented)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _serve(control: socket.socket, parent: int, entry: Callable[[list[str]], int]) -> int:
    """The fork server's loop: fork an edge per request, report each edge's exit."""
    die_with_parent(parent)
    name_process("atmos-forksrv")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the main process stops the edges, then us
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        try:
            ready, _, _ = select.select([control, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
            _reap(control)
        if control in ready:
            try:
                data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 8)
            except OSError:
                return 0
            if not data:
                return 0  # the main process closed its end: it is stopping
            request = json.loads(data)
            pid = os.fork()
            if pid == 0:
                _become_edge(control, (wake_r, wake_w), request, fds, entry)
            for fd in fds:
                os.close(fd)
            if not _tell(control, {"spawned": pid}):
                return 0


def _tell(control: socket.socket, message: dict) -> bool:
    """False when the main process is gone (its edges then die with us)."""
    try:
        control.send(json.dumps(message).encode())
        return True
    except OSError:
        return False


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _tell(control, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _become_edge(control: socket.socket, wake: tuple[int, int], request: dict, fds: list[int],
                 entry: Callable[[list[str]], int]) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        name_process("atmos-edge")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)  # SIGHUP stays ignored until the edge is ready
        control.close()
        for fd in wake:
            os.close(fd)
        listen = ",".join(f"{name}={fd}" for name, fd in zip(request["listeners"], fds))
        code = entry([*request["argv"], "--listen-fds", listen])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
