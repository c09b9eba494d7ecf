"""Failed logins per client address; past the limit each AUTH reply waits longer.

The count is shared by every process that serves SMTP (the main process and
the edge processes), so spreading attempts over connections that land on
different processes gains a client nothing. It lives in a small SQLite file
of its own with synchronous=OFF: a count lost in a power cut is harmless,
and no AUTH waits for an fsync.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from runtime.store import private_database

PRUNE_EVERY = 100


class AuthThrottle:
    def __init__(self, path: Path, limit: int, window: float, base_delay: float, max_delay: float) -> None:
        self.limit, self.window, self.base, self.max = limit, window, base_delay, max_delay
        self._db = sqlite3.connect(private_database(path), timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS auth_failures (peer TEXT NOT NULL, at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS auth_failures_peer ON auth_failures (peer, at)")
        self._lock = threading.Lock()
        self._inserts = 0

    def _recent(self, peer: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM auth_failures WHERE peer = ? AND at > ?",
                               (peer, time.time() - self.window)).fetchone()
        return int(row[0])

    def delay(self, peer: str) -> float:
        with self._lock:
            excess = self._recent(peer) - self.limit + 1
        return 0.0 if excess <= 0 else min(self.max, self.base * (2 ** (excess - 1)))

    def failed(self, peer: str) -> int:
        """Count one failure; returns the address's failures within the window."""
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO auth_failures (peer, at) VALUES (?, ?)", (peer, now))
            self._inserts += 1
            if self._inserts % PRUNE_EVERY == 0:
                self._db.execute("DELETE FROM auth_failures WHERE at <= ?", (now - self.window,))
            return self._recent(peer)

    def succeeded(self, peer: str) -> None:
        with self._lock:  # a read first: nearly every login has nothing to forget, and a write locks the file
            if self._db.execute("SELECT 1 FROM auth_failures WHERE peer = ? LIMIT 1", (peer,)).fetchone():
                self._db.execute("DELETE FROM auth_failures WHERE peer = ?", (peer,))
