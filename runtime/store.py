"""The SQLite store (`relay.sqlite`): connections, transactions, migrations.

One connection per thread, WAL journal, FULL sync: a commit that returned is
on disk. Other database files the app declares (serverless.yml
`store.attach`, e.g. labels.db) are attached to every connection under
their schema name. Writers take the lock up front (BEGIN IMMEDIATE) so a check-then-act
inside one transaction is exact even with many SMTP sessions at once.

Writers queue on a Python lock, then on an flock of `relay.sqlite.writer`,
before BEGIN IMMEDIATE. SQLite's own busy handler polls with sleeps of up
to 100 ms, so under many concurrent sessions a writer would sleep long
after the lock came free; the two locks hand over at once, within this
process and between the relay's processes (the edge processes, the CLI).

`group` is a transaction for the hot path (a message's spool rows, a
delivery outcome): work that threads hand in while a commit is running is
done together in the next transaction, each piece in its own savepoint,
and committed with one fsync (group commit, as Postfix-class MTAs and
databases do). Nobody returns before the commit that holds its work is on
disk.
"""
from __future__ import annotations

import contextvars
import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")

# Set by the invoker while a handler runs; a transaction refuses to commit
# once the handler's caller has already been told it timed out.
commit_guard: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "commit_guard", default=None)


@dataclass(eq=False)
class _Work:
    """One thread's piece of a group commit."""

    fn: Callable[[sqlite3.Connection], Any]
    guard: Callable[[], None] | None
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class _WriterLock:
    """A thread lock, then an exclusive flock shared by every process that opens the store."""

    def __init__(self, path: Path) -> None:
        self._thread = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def acquire(self) -> None:
        self._thread.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise

    def release(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def __enter__(self) -> "_WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def private_database(path: str | Path) -> Path:
    """Create `path` (or tighten it) to 0600 before SQLite opens it, and any -wal/-shm beside it.

    The store holds member DKIM private keys and the relay's secrets. SQLite
    creates -wal and -shm with the main file's mode, so a main file made
    0600 here keeps all three private; an older 0644 install is tightened.
    """
    path = Path(path)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if name.exists():
            os.chmod(name, 0o600)
    return path


class Store:
    def __init__(self, path: str | Path, attach: dict[str, Path] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.attached = dict(attach or {})
        for db_path in (self.path, *self.attached.values()):
            private_database(db_path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._writer = _WriterLock(self.path.with_name(self.path.name + ".writer"))
        self._group_lock = threading.Lock()
        self._waiting: list[_Work] = []
        self._leading = False
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
            conn.execute("PRAGMA mmap_size=268435456")
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
            self._writer.acquire()
            try:
                self._begin(conn)
            except BaseException:
                self._writer.release()
                raise
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
            if depth == 0:
                self._writer.release()

    def group(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` in a write transaction, like `with transaction() as conn: return fn(conn)`.

        The difference is that fn may run on another thread's connection, in
        one transaction with other threads' work: each fn in its own
        savepoint, so one that raises is rolled back alone and its exception
        is raised here. fn must only use the connection it is given.
        """
        self.connection()
        if self._local.depth:
            with self.transaction() as conn:
                return fn(conn)
        work = _Work(fn, commit_guard.get())
        with self._group_lock:
            self._waiting.append(work)
            if not self._leading:
                self._leading = work.lead = True
        if not work.lead:
            work.ready.wait()
        if not work.done:
            self._lead_group()
        if work.error is not None:
            raise work.error
        return work.result

    def _lead_group(self) -> None:
        """Run everything waiting as one transaction, then hand the lead to whoever queued meanwhile."""
        with self._group_lock:
            batch, self._waiting = self._waiting, []
        try:
            self._commit_group(batch)
        except BaseException as exc:
            for work in batch:
                if work.error is None:
                    work.error, work.result = exc, None
        finally:
            with self._group_lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].ready.set()
                else:
                    self._leading = False
            for work in batch:
                work.done = True
                work.ready.set()

    def _commit_group(self, batch: list[_Work]) -> None:
        """One BEGIN..COMMIT for the batch; raises (nothing committed) only if the transaction failed."""
        conn = self.connection()
        with self._writer:
            self._begin(conn)
            self._local.depth = 1
            try:
                for work in batch:
                    conn.execute("SAVEPOINT grp")
                    try:
                        work.result = work.fn(conn)
                        if work.guard is not None:
                            work.guard()
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO grp")
                        work.error, work.result = exc, None
                    conn.execute("RELEASE grp")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.depth = 0

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

    def migrate(self, component: str, migrations: Sequence[str]) -> None:
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
