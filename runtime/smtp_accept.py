"""Accepting SMTP connections: admit a client within its caps, or tell it 421 and close.

asyncio's own server admits every connection and, when descriptors run
out, reports each failed accept; so each SMTP listener accepts here
instead. A connection is counted from accept() until its socket closes
(for implicit TLS that includes the handshake, where an idle client would
otherwise hold a descriptor unseen), a client past its cap gets
`421 4.7.0` before the close, and a failed accept() for lack of
descriptors is logged once per interval and pauses accepting briefly
instead of spinning.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Callable

from runtime import replies
from runtime.connection_limits import Admission, ConnectionLimits
from runtime.jsonlog import JsonLog
from runtime.open_files import EXHAUSTED, current_limit
from runtime.repeated_events import RepeatedEvent

ACCEPT_PAUSE = 0.25
TLS_HANDSHAKE_TIMEOUT = 30.0
# A refusal on the implicit-TLS listener needs a handshake; at most this many at once, the rest are just closed.
TLS_REFUSALS = 32
REFUSAL_HANDSHAKE_TIMEOUT = 5.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


class Refusal(asyncio.Protocol):
    """Says one reply and closes (on implicit TLS, once the handshake is done)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.reply)
        transport.close()


class Acceptor:
    """One listener's accept loop; `session` makes the protocol of an admitted connection."""

    def __init__(self, name: str, sock: socket.socket, session: Callable[[Admission], asyncio.Protocol],
                 limits: ConnectionLimits, tls: ssl.SSLContext | None, log: JsonLog,
                 exhausted: RepeatedEvent, refused: RepeatedEvent) -> None:
        self.name = name
        self.sock = sock
        self.session = session
        self.limits = limits
        self.tls = tls
        self.log = log
        self.exhausted = exhausted
        self.refused = refused
        self._pending: set[asyncio.Task] = set()
        self._tls_refusals = 0
        self._task: asyncio.Task | None = None
        sock.setblocking(False)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop(), name=f"smtp-accept-{self.name}")

    async def stop(self) -> None:
        """Stop accepting; sessions already open finish on their own."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    self.exhausted.happened(self.name, listener=self.name, error=exc.strerror,
                                            open_files_limit=current_limit(), open_connections=self.limits.count)
                    await asyncio.sleep(ACCEPT_PAUSE)
                continue  # ECONNABORTED and the like: that client is gone
            self._place(conn, addr[0] if isinstance(addr, tuple) else str(addr))

    def _place(self, conn: socket.socket, peer: str) -> None:
        admission, reason = self.limits.admit(peer)
        if admission is None:
            self._refuse(conn, peer, reason)
            return
        task = asyncio.get_running_loop().create_task(self._serve(conn, admission))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket, admission: Admission) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: self.session(admission), conn, ssl=self.tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self.tls else None)
        except Exception as exc:
            # The handshake failed or the client left before it (or, a fault of ours, the session
            # could not be made): the session never began, and its place is free again.
            if not isinstance(exc, (OSError, asyncio.TimeoutError)):
                self.log.error("smtp.session_error", listener=self.name, error=repr(exc)[:500])
            conn.close()
            admission.release()

    def _refuse(self, conn: socket.socket, peer: str, reason: str) -> None:
        reply = replies.TOO_MANY_CONNECTIONS if reason == "per_client" else replies.LISTENER_FULL
        # A full listener is one fact however many addresses knock; a client past its own cap is one per client.
        key = f"{self.name} total" if reason == "total" else f"{self.name} {self.limits.key_of(peer)}"
        self.refused.happened(key, listener=self.name, peer=peer,
                              reason=reason, reply=str(reply), held=self.limits.held_by(peer),
                              open_connections=self.limits.count)
        line = (str(reply) + "\r\n").encode()
        if self.tls is None:
            try:
                conn.send(line)
            except OSError:
                pass
            conn.close()
            return
        if self._tls_refusals >= TLS_REFUSALS:
            conn.close()
            return
        self._tls_refusals += 1
        task = asyncio.get_running_loop().create_task(self._refuse_over_tls(conn, line))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _refuse_over_tls(self, conn: socket.socket, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: Refusal(line), conn, ssl=self.tls,
                                               ssl_handshake_timeout=REFUSAL_HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
            conn.close()
        finally:
            self._tls_refusals -= 1
