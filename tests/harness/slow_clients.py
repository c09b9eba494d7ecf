"""Hostile HTTP clients for the tests: slowloris connections and raw requests from chosen loopback addresses.

Linux routes all of 127.0.0.0/8 to loopback, so a test can be many clients
(127.0.0.2, 127.0.0.3, ...) and a proxy (say 127.0.0.9) at once.
"""
from __future__ import annotations

import http.client
import select
import socket
import threading


def connect(port: int, source: str = "127.0.0.1", timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def read_reply(sock: socket.socket, limit: int = 65536) -> bytes:
    """Everything the server sends until it closes (or `limit` bytes)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def request(port: int, method: str, path: str, source: str = "127.0.0.1", body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, str, dict]:
    """One HTTP request from `source`: (status, body text, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers={"Accept": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), dict(response.getheaders())
    finally:
        conn.close()


class Slowloris:
    """`per_source` connections from each address in `sources`, each sending one header line per `interval`
    and never finishing; a connection the server closes or answers is opened again at once."""

    def __init__(self, port: int, sources: list[str], per_source: int, interval: float = 0.5) -> None:
        self.port, self.interval = port, interval
        self.slots = [src for src in sources for _ in range(per_source)]
        self.socks: list[socket.socket | None] = [None] * len(self.slots)
        self.answers: list[bytes] = []
        self.answered = threading.Event()
        self.reopened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def __enter__(self) -> "Slowloris":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(30)
        for sock in self.socks:
            if sock is not None:
                sock.close()

    def _open(self, slot: int) -> None:
        try:
            sock = connect(self.port, self.slots[slot], timeout=5)
            sock.sendall(b"GET /enroll HTTP/1.1\r\nHost: relay\r\n")
        except OSError:
            return
        self.socks[slot] = sock

    def _drop(self, slot: int) -> None:
        sock, self.socks[slot] = self.socks[slot], None
        if sock is not None:
            sock.close()
            self.reopened += 1

    def _run(self) -> None:
        while not self.stopping.is_set():
            for slot, sock in enumerate(self.socks):
                if sock is None:
                    self._open(slot)
                    continue
                try:
                    if select.select([sock], [], [], 0)[0]:
                        answer = sock.recv(4096)
                        if answer:
                            self.answers.append(answer)
                            self.answered.set()
                        self._drop(slot)
                    else:
                        sock.send(b"X-Slow: 1\r\n")
                except OSError:
                    self._drop(slot)
            self.stopping.wait(self.interval)
