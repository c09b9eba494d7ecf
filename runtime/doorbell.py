"""Wake-ups between the relay's processes over a Unix datagram socket in stateDir.

An edge process commits spool rows and outbox records that the main
process's queue runner and stream readers act on. Those readers poll as a
fallback, but a poll interval is latency on every message; instead the edge
rings after it publishes and the main process wakes its readers at once.
A ring is a hint and is dropped when nobody listens or the socket is full.
"""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Callable

SOCKET_NAME = "doorbell.sock"
READY = b"r"
DEPLOYED = b"d"
WAKE = b"w"


class Doorbell:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / SOCKET_NAME
        self._send: socket.socket | None = None
        self._recv: socket.socket | None = None

    def ring(self, what: bytes = WAKE) -> None:
        """Tell the main process something changed (from an edge process, on any thread)."""
        if self._send is None:
            self._send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            self._send.sendto(what + b" %d" % os.getpid(), str(self.path))
        except (BlockingIOError, FileNotFoundError, ConnectionRefusedError):
            pass

    def listen(self, loop: asyncio.AbstractEventLoop, on_ring: Callable[[bytes, int], None]) -> None:
        """Serve rings on the loop (main process): on_ring(what, pid), wakes coalesced."""
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._recv = sock

        def drain() -> None:
            rung: dict[tuple[bytes, int], None] = {}
            while True:
                try:
                    data = sock.recv(64)
                except BlockingIOError:
                    break
                what, _, pid = data.partition(b" ")
                rung[(what, 0 if what == WAKE else int(pid or 0))] = None
            for what, pid in rung:  # many rings while we were busy make one wake-up
                on_ring(what, pid)

        loop.add_reader(sock.fileno(), drain)

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        recv = self._recv
        if recv is not None:
            if loop is not None:
                loop.remove_reader(recv.fileno())
            recv.close()
            self.path.unlink(missing_ok=True)
        if self._send is not None:
            self._send.close()
