"""What one HTTP client may hold of the server: connections, time to send a request, body size.

Waitress's own `channel_timeout` counts inactivity, so a client that sends
one header byte every few seconds (slowloris) keeps its connection for
ever, and its `connection_limit` is shared by everyone, so a hundred such
clients lock the enroll page, the admin pages and the invoke API out. Here
a connection gets `http.headerTimeout` from when it opened (or its previous
response was done) to the end of the next request's header section, and
`http.bodyTimeout` from there to the end of the body; one client address
(an IPv6 client per /64) holds at most `http.maxConnectionsPerClient` of
the `http.maxConnections`, so others always find room. A trusted proxy is
exempt from the per-client cap: every client behind it shares its address,
and it keeps its own limits (see `infra/nginx/atmos-relay.conf`). A body
larger than its route allows gets 413 as soon as its Content-Length (or
its chunks) say so, before the body is read or parsed.

Refusals and timeouts are logged once when the first happens and then at
most once a minute with counts, so a flood cannot fill the disk with
log lines.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.utilities import RequestEntityTooLarge

from runtime.auth_throttle import address_key
from runtime.jsonlog import JsonLog
from runtime.open_files import EXHAUSTED, current_limit
from runtime.repeated_events import RepeatedEvent
from runtime.settings import HttpSettings
from runtime.trusted_proxies import TrustedProxies

LOG_INTERVAL = 60.0
ACCEPT_PAUSE = 0.25
_BUSY_TEXT = b"Too many connections from your address; close one and retry\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 10\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


class LogSummary:
    """One log line for the first occurrence, then at most one per interval counting the rest."""

    def __init__(self, log: JsonLog, event: str, interval: float = LOG_INTERVAL) -> None:
        self.log, self.event, self.interval = log, event, interval
        self.pending: Counter[str] = Counter()
        self.next_line = 0.0
        self.lock = threading.Lock()

    def add(self, what: str, client: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.pending[what] += 1
            if now < self.next_line:
                return
            counts, self.pending = dict(self.pending), Counter()
            self.next_line = now + self.interval
        self.log.warning(self.event, counts=counts, last_client=client, interval=self.interval)


class ConnectionGuard:
    """The per-client connection count and the limits every channel checks."""

    def __init__(self, settings: HttpSettings, body_limit: Callable[[str], int], log: JsonLog) -> None:
        self.settings, self.body_limit = settings, body_limit
        self.proxies = TrustedProxies(settings.trustedProxies)
        self.open: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.refused = LogSummary(log, "http.connection_refused")
        self.timed_out = LogSummary(log, "http.request_timed_out")
        self.too_large = LogSummary(log, "http.body_refused")

    def admit(self, peer: str) -> str | None:
        """The counting key of a new connection from `peer`, or None when that client holds its share."""
        key = "proxy" if self.proxies.trusts(peer) else address_key(peer)
        with self.lock:
            if key != "proxy" and self.open[key] >= self.settings.maxConnectionsPerClient:
                refused = True
            else:
                self.open[key] += 1
                refused = False
        if refused:
            self.refused.add("per_client_limit", peer)
            return None
        return key

    def release(self, key: str) -> None:
        with self.lock:
            self.open[key] -= 1
            if self.open[key] <= 0:
                del self.open[key]


class BoundedRequest(HTTPRequestParser):
    """Waitress's request parser, noting when the header section ended and refusing a body too large."""

    headers_done_at: float | None = None
    refusal_logged = False

    def __init__(self, adj, guard: ConnectionGuard, client: str) -> None:
        super().__init__(adj)
        self.guard, self.client = guard, client

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if self.headers_finished and self.error is None and self.headers_done_at is None:
            self.headers_done_at = time.monotonic()
        if self.headers_finished and self.error is None and not self.empty:
            limit = self.guard.body_limit(self.path or "/")
            if max(self.content_length, self.body_bytes_received) > limit:
                self.error = RequestEntityTooLarge(f"the body of a request to this path may have at most {limit} bytes")
                self.completed, self.expect_continue = True, False  # no "100 Continue" for a body we refuse
        if isinstance(self.error, RequestEntityTooLarge) and not self.refusal_logged:  # ours or waitress's own
            self.refusal_logged = True
            self.guard.too_large.add(self.path or "/", self.client)
        return consumed


class GuardedChannel(HTTPChannel):
    """A connection held to the guard's limits; a client over its share gets 503 and the connection closes."""

    def __init__(self, server, sock, addr, adj, map=None) -> None:
        self.guard: ConnectionGuard = server.connection_guard
        self.client = addr[0] if isinstance(addr, tuple) else str(addr)
        self.awaiting_since = time.monotonic()
        self.serving = False
        self.counted_as = self.guard.admit(self.client)
        super().__init__(server, sock, addr, adj, map)
        if self.counted_as is None:
            self.outbufs[-1].append(_BUSY)
            self.total_outbufs_len += len(_BUSY)
            self.close_when_flushed = True

    def parser_class(self, adj) -> BoundedRequest:
        return BoundedRequest(adj, self.guard, self.client)

    def service(self) -> None:
        """Serving is the function's time, not the client's: the clocks stop, and restart when it is done."""
        self.serving = True
        try:
            super().service()
        finally:
            self.awaiting_since = time.monotonic()
            self.serving = False

    def writable(self) -> bool:
        if not (self.will_close or self.close_when_flushed or self.requests or self.serving):
            phase = self.overdue(time.monotonic())
            if phase:
                self.will_close = True
                self.guard.timed_out.add(phase, self.client)
        return super().writable()

    def overdue(self, now: float) -> str | None:
        """"header" or "body" when the request being read has had its time, else None."""
        limits = self.guard.settings
        partial = self.request
        if partial is not None and partial.headers_done_at is not None and not partial.completed:
            return "body" if now - partial.headers_done_at > limits.bodyTimeout else None
        allowed = limits.bodyTimeout if self.total_outbufs_len else limits.headerTimeout
        return "header" if now - self.awaiting_since > allowed else None

    def del_channel(self, map=None) -> None:
        super().del_channel(map)
        key, self.counted_as = self.counted_as, None
        if key is not None:
            self.guard.release(key)


class GuardedServer(TcpWSGIServer):
    """Waitress's listener opening GuardedChannels, and pausing when accept() finds no descriptor free.

    Waitress drops such a failed accept() and asks again at once: the
    connection is still waiting, so its loop spins a core for as long as
    the descriptors stay used up. Here the listener stops asking for
    ACCEPT_PAUSE (the rest of the loop serves on, and closing connections
    frees descriptors), and the failures are one log line per interval.
    """

    channel_class = GuardedChannel
    paused_until = 0.0

    def __init__(self, application, guard: ConnectionGuard, log: JsonLog, **kw) -> None:
        self.connection_guard = guard
        self.exhausted = RepeatedEvent(log, "http.resource_exhausted", level="error")
        super().__init__(application, **kw)

    def readable(self) -> bool:
        accepting = super().readable()  # also waitress's upkeep of idle channels
        return accepting and time.monotonic() >= self.paused_until

    def accept(self):
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            self.paused_until = time.monotonic() + ACCEPT_PAUSE
            self.exhausted.happened("accept", error=exc.strerror, open_files_limit=current_limit(),
                                    open_connections=len(self._map))
            return None
