"""The SQLite store (`relay.sqlite`): connections, transactions, migrations.

One connection per thread, WAL journal, FULL sync: a commit that returned is
on disk. Other database files the app declares (serverless.yml
`store.attach`, e.g. labels.db) are attached to every connection under
their schema name. Writers take the lock up front (BEGIN IMMEDIATE) so a check-then-act
inside one transaction is exact even with many SMTP sessions at once.
"""
from __future__ import annotations

import contextvars
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

# Set by the invoker while a handler runs; a transaction refuses to commit
# once the handler's caller has already been told it timed out.
commit_guard: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "commit_guard", default=None)


class Store:
    def __init__(self, path: str | Path, attach: dict[str, Path] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.attached = dict(attach or {})
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self.connection()
        conn.execute("PRAGMA journal_mode=WAL")
        for name in self.attached:
            conn.execute(f"PRAGMA {name}.journal_mode=WAL")

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            for name, db_path in self.attached.items():
                conn.execute("ATTACH DATABASE ? AS " + name, (str(db_path),))
                conn.execute(f"PRAGMA {name}.synchronous=FULL")
            self._local.conn = conn
            self._local.depth = 0
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls become savepoints of the outer one."""
        conn = self.connection()
        depth = self._local.depth
        if depth == 0:
            self._begin(conn)
        else:
            conn.execute(f"SAVEPOINT sp{depth}")
        self._local.depth = depth + 1
        try:
            yield conn
            if depth == 0:
                guard = commit_guard.get()
                if guard is not None:
                    guard()
                conn.execute("COMMIT")
            else:
                conn.execute(f"RELEASE sp{depth}")
        except BaseException:
            if depth == 0:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO sp{depth}")
                conn.execute(f"RELEASE sp{depth}")
            raise
        finally:
            self._local.depth = depth

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        # busy_timeout covers most contention; this loop covers the rest
        # (a WAL checkpoint holding the lock past the timeout).
        for attempt in range(20):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def query(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Row | None:
        return self.connection().execute(sql, params).fetchone()

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Apply the not-yet-applied statements of `component`, in order, once."""
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL,"
                " applied_at REAL NOT NULL, PRIMARY KEY (component, version))")
            row = conn.execute(
                "SELECT MAX(version) FROM schema_migrations WHERE component = ?", (component,)).fetchone()
            current = row[0] or 0
            for version, script in enumerate(migrations, start=1):
                if version <= current:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (component, version, time.time()))
            return len(migrations)

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


def _statements(script: str) -> list[str]:
    parts, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts
