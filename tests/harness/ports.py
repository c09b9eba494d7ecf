"""Free loopback ports for the processes a test starts.

Ports come from a band below the kernel's ephemeral range (32768-60999 on Linux), so an
outgoing connection's source port can never take a port a test picked but has not bound
yet; under pytest-xdist each worker has a band of its own, so two workers never pick the
same port.
"""
from __future__ import annotations

import os
import socket
import threading
import time

LOW, HIGH = 10000, 32000

_lock = threading.Lock()
_next: int | None = None


def _band() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    span = (HIGH - LOW) // count
    start = LOW + (index % count) * span
    return start, start + span


def _is_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1, not handed out before in this worker's band (until it wraps)."""
    global _next
    start, end = _band()
    with _lock:
        if _next is None:
            _next = start
        for _ in range(end - start):
            port, _next = _next, _next + 1 if _next + 1 < end else start
            if _is_free(port):
                return port
    raise RuntimeError(f"no free port in {start}-{end}")


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
