"""Failed logins counted per client address and per username; past the limit, attempts wait their turn.

A guesser gains nothing from new connections, other edge processes, other
addresses or a key of its own: failures are counted under every key an
attempt names (the client's address, its /64 for IPv6, and the username) in
one SQLite file shared by every process that checks credentials, and a
success forgets only its own username's failures. An attempt counts as a
failure from the moment it begins until it succeeds, so parallel attempts
see each other; once a key is over the limit, each attempt takes the next
free turn (its own delay after the turn before it) and one that would wait
longer than the longest delay is refused at once, unchecked. synchronous=OFF:
a count lost in a power cut is harmless, and no login waits for an fsync.
"""
from __future__ import annotations

import ipaddress
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.store import private_database

PRUNE_EVERY = 100
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS auth_failures (key TEXT NOT NULL, at REAL NOT NULL, attempt TEXT)",
    "CREATE INDEX IF NOT EXISTS auth_failures_key ON auth_failures (key, at)",
    "CREATE INDEX IF NOT EXISTS auth_failures_attempt ON auth_failures (attempt)",
    "CREATE TABLE IF NOT EXISTS auth_turns (key TEXT PRIMARY KEY, next_at REAL NOT NULL)",
)


def address_key(peer: str) -> str:
    """The counting key of a client address: IPv6 clients are counted per /64, what one host usually holds."""
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return f"addr:{peer[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"addr:{ip}"


def username_key(username: str) -> str:
    return f"user:{username.strip().lower()[:320]}"


@dataclass(frozen=True)
class Attempt:
    """One credential check in progress: `wait` seconds before it may be checked, or refused (never checked)."""
    id: str
    keys: tuple[str, ...]
    wait: float
    refused: bool


class AuthThrottle:
    """A login that can wait: `begin(address_key(peer), username_key(name))`, sleep `wait` (or refuse when
    `refused`), check, then `failed`, `succeeded` or `abandon`. A caller that cannot wait its turn (an HTTP
    request) reads `delay_for(...)` and refuses while it is non-zero; `record_failure` counts a failure that had
    no attempt begun for it.
    """

    def __init__(self, path: Path, limit: int, window: float, base_delay: float, max_delay: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit, self.window, self.base, self.max = limit, window, base_delay, max_delay
        self._clock = clock
        self._db = sqlite3.connect(private_database(path), timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        if self._db.execute("SELECT 1 FROM pragma_table_info('auth_failures') WHERE name = 'peer'").fetchone():
            self._db.execute("DROP TABLE auth_failures")  # the per-address table of earlier versions
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._lock = threading.Lock()
        self._writes = 0

    @classmethod
    def from_settings(cls, settings: Any, file_name: str = "auth-failures.sqlite") -> "AuthThrottle":
        smtp = settings.smtp
        return cls(settings.state_path / file_name, smtp.authFailureLimit, smtp.authFailureWindow,
                   smtp.authFailureDelay, smtp.authFailureMaxDelay)

    def failures(self, key: str) -> int:
        """Failures (and attempts not yet over) under `key` within the window."""
        with self._lock:
            return self._count(key, self._clock())

    def delay_for(self, *keys: str) -> float:
        """The delay the next attempt under these keys gets by their counts, before any queueing."""
        now = self._clock()
        with self._lock:
            return max((self._delay(self._count(k, now)) for k in keys), default=0.0)

    def record_failure(self, *keys: str) -> None:
        """A failure that had no attempt begun for it (undecodable credentials, a wrong admin token)."""
        now = self._clock()
        with self._lock:
            self._db.executemany("INSERT INTO auth_failures (key, at) VALUES (?, ?)", [(k, now) for k in keys])
            self._wrote(now)

    def begin(self, *keys: str) -> Attempt:
        """Count the attempt as a failure under every key now, and give it its turn (or refuse it)."""
        now, attempt_id = self._clock(), secrets.token_hex(8)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                attempt = self._take_turn(attempt_id, keys, now)
                if not attempt.refused:
                    self._db.executemany("INSERT INTO auth_failures (key, at, attempt) VALUES (?, ?, ?)",
                                         [(k, now, attempt_id) for k in keys])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._wrote(now)
        return attempt

    def failed(self, attempt: Attempt) -> int:
        """The attempt's credentials were wrong: its failures stay. Returns the first key's count."""
        with self._lock:
            self._db.execute("UPDATE auth_failures SET attempt = NULL WHERE attempt = ?", (attempt.id,))
            return self._count(attempt.keys[0], self._clock()) if attempt.keys else 0

    def succeeded(self, attempt: Attempt, reset: str) -> None:
        """The credentials were right: the attempt was no failure, and `reset` (its username) starts afresh.

        One statement: a login is the common case, and each statement on the shared file costs a lock.
        """
        with self._lock:
            self._db.execute("DELETE FROM auth_failures WHERE attempt = ? OR key = ?", (attempt.id, reset))

    def abandon(self, attempt: Attempt) -> None:
        """The attempt decided nothing (a fault of ours): it does not count."""
        with self._lock:
            self._db.execute("DELETE FROM auth_failures WHERE attempt = ?", (attempt.id,))

    def _take_turn(self, attempt_id: str, keys: tuple[str, ...], now: float) -> Attempt:
        delay = max((self._delay(self._count(k, now)) for k in keys), default=0.0)
        if delay <= 0:
            return Attempt(attempt_id, keys, 0.0, False)
        marks = "?" * len(keys)
        rows = self._db.execute(f"SELECT MAX(next_at) FROM auth_turns WHERE key IN ({','.join(marks)})",
                                keys).fetchone()
        turn = max(now, rows[0] or 0.0) + delay
        if turn - now > self.max:
            return Attempt(attempt_id, keys, turn - now, True)
        self._db.executemany("INSERT INTO auth_turns (key, next_at) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET next_at = excluded.next_at", [(k, turn) for k in keys])
        return Attempt(attempt_id, keys, turn - now, False)

    def _count(self, key: str, now: float) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM auth_failures WHERE key = ? AND at > ?",
                               (key, now - self.window)).fetchone()
        return int(row[0])

    def _delay(self, count: int) -> float:
        excess = count - self.limit + 1
        return 0.0 if excess <= 0 else min(self.max, self.base * (2 ** (excess - 1)))

    def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self._db.execute("DELETE FROM auth_failures WHERE at <= ?", (now - self.window,))
            self._db.execute("DELETE FROM auth_turns WHERE next_at <= ?", (now - self.window,))
