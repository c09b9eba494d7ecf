"""The delivery spool: accepted messages on disk, their recipients' state in SQLite.

A message is one file under `<stateDir>/queue/messages/`: a JSON envelope on
the first line, the message bytes after it. `put` writes it to `tmp/`,
fsyncs, renames and fsyncs the directory. `register` then adds one row per
recipient inside the caller's transaction; the SMTP 250 follows that commit.
So a message without rows was never acknowledged (recovery discards it and
the client's retry brings it back), and a message with rows is always on
disk. Leases keep two deliveries of one recipient from overlapping; a lease
left by a crash simply runs out.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, NamedTuple

from runtime.clock import Clock
from runtime.jsonlog import JsonLog
from runtime.store import Store

FINAL_STATES = ("delivered", "failed", "expired")


class Due(NamedTuple):
    queue_id: str
    recipient: str
    route: str
    attempts: int
    created_at: float


class SpoolError(Exception):
    pass


def new_queue_id() -> str:
    """Time-ordered and unique: 11 hex digits of milliseconds, 8 random."""
    return f"{int(time.time() * 1000):011X}{secrets.token_hex(4).upper()}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, root: str | Path, store: Store, log: JsonLog, clock: Clock) -> None:
        self.clock = clock
        self.root = Path(root)
        self.messages = self.root / "messages"
        self.tmp = self.root / "tmp"
        self.store = store
        self.log = log
        for d in (self.messages, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._wakeups: list = []
        # Group fsync of messages/: renames done before an fsync starts are covered by it.
        self._dir_sync = threading.Condition()
        self._dir_wanted = 0
        self._dir_synced = 0
        self._dir_busy = False

    def path_of(self, queue_id: str) -> Path:
        if not queue_id.isalnum():
            raise SpoolError(f"bad queue id {queue_id!r}")
        return self.messages / f"{queue_id}.msg"

    def put(self, envelope: dict, message: bytes, queue_id: str | None = None) -> str:
        """Write the message durably; nothing is acknowledged yet."""
        queue_id = queue_id or new_queue_id()
        header = json.dumps({**envelope, "queue_id": queue_id}, separators=(",", ":")).encode()
        if b"\n" in header:
            raise SpoolError("envelope must serialise to one line")
        tmp = self.tmp / f"{queue_id}.msg"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(header + b"\n" + message)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.path_of(queue_id))
        self._sync_messages_dir()
        return queue_id

    def _sync_messages_dir(self) -> None:
        """fsync messages/ after a rename; puts that rename while one fsync runs share the next one."""
        with self._dir_sync:
            self._dir_wanted += 1
            mine = self._dir_wanted
            while self._dir_synced < mine:
                if self._dir_busy:
                    self._dir_sync.wait()
                    continue
                self._dir_busy, covering, done = True, self._dir_wanted, False
                self._dir_sync.release()
                try:
                    _fsync_dir(self.messages)
                    done = True
                finally:
                    self._dir_sync.acquire()
                    self._dir_busy = False
                    if done:
                        self._dir_synced = max(self._dir_synced, covering)
                    self._dir_sync.notify_all()

    def register(self, conn: sqlite3.Connection, queue_id: str, recipients: Iterable[tuple[str, str]],
                 now: float, not_before: float | None = None) -> None:
        """Make the spooled message deliverable, inside the caller's transaction; `wake()` after its commit."""
        conn.executemany(
            "INSERT INTO spool_recipients (queue_id, recipient, route, state, attempts, next_attempt_at,"
            " created_at, updated_at) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?)",
            [(queue_id, rcpt, route, not_before or now, now, now) for rcpt, route in recipients])

    def discard(self, queue_id: str) -> None:
        try:
            self.path_of(queue_id).unlink()
        except FileNotFoundError:
            pass

    def load(self, queue_id: str) -> tuple[dict, bytes]:
        data = self.path_of(queue_id).read_bytes()
        header, _, message = data.partition(b"\n")
        return json.loads(header), message

    def on_wake(self, callback) -> None:
        self._wakeups.append(callback)

    def wake(self) -> None:
        for callback in self._wakeups:
            callback()

    def due(self, now: float, limit: int) -> list[Due]:
        rows = self.store.query(
            "SELECT queue_id, recipient, route, attempts, created_at FROM spool_recipients"
            " WHERE state = 'queued' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
            " ORDER BY next_attempt_at LIMIT ?", (now, now, limit))
        return [Due(*row) for row in rows]

    def lease(self, items: list[Due], until: float, token: str) -> list[Due]:
        """Claim items for one delivery run; returns those not claimed by someone else meanwhile."""
        if not items:
            return []
        now = self.clock.now()
        # One statement for the batch (each key an index search; `+state` keeps the planner off spool_due).
        keys = " OR ".join(["(queue_id = ? AND recipient = ?)"] * len(items))
        params: list = [until, token, now]
        for item in items:
            params += (item.queue_id, item.recipient)

        def claim(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            return {(r[0], r[1]) for r in conn.execute(
                "UPDATE spool_recipients SET lease_until = ?, lease_token = ?"
                " WHERE +state = 'queued' AND (lease_until IS NULL OR lease_until < ?)"
                f" AND ({keys}) RETURNING queue_id, recipient", params).fetchall()}

        taken = self.store.group(claim)
        return [item for item in items if (item.queue_id, item.recipient) in taken]

    def release(self, token: str, retry_at: float) -> int:
        """Give back what a run left unsettled (its handler failed), to be tried at `retry_at`."""
        # Usually the run settled everything: a read says so without taking the write lock.
        if self.store.query_one("SELECT 1 FROM spool_recipients WHERE lease_token = ? AND state = 'queued'"
                                " LIMIT 1", (token,)) is None:
            return 0
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE spool_recipients SET lease_until = NULL, lease_token = NULL, next_attempt_at = ?"
                " WHERE lease_token = ? AND state = 'queued'", (retry_at, token))
            return cur.rowcount

    def settle(self, conn: sqlite3.Connection, queue_id: str, recipient: str, *, state: str,
               next_attempt_at: float | None, code: int | None, text: str, now: float) -> None:
        """Record one attempt's outcome inside the caller's transaction."""
        if state not in ("queued",) + FINAL_STATES:
            raise SpoolError(f"unknown recipient state {state!r}")
        cur = conn.execute(
            "UPDATE spool_recipients SET state = ?, attempts = attempts + 1, next_attempt_at = COALESCE(?, next_attempt_at),"
            " last_code = ?, last_text = ?, lease_until = NULL, lease_token = NULL, updated_at = ?"
            " WHERE queue_id = ? AND recipient = ?",
            (state, next_attempt_at, code, text[:1000], now, queue_id, recipient))
        if cur.rowcount != 1:
            raise SpoolError(f"no spooled recipient {recipient} in {queue_id}")

    @staticmethod
    def open_count(conn: sqlite3.Connection, queue_id: str) -> int:
        """Recipients of `queue_id` not yet final; 0 after a commit means the file can go."""
        row = conn.execute(
            "SELECT COUNT(*) FROM spool_recipients WHERE queue_id = ? AND state = 'queued'", (queue_id,)).fetchone()
        return int(row[0])

    def remove_if_done(self, queue_id: str) -> bool:
        """Delete the file once every recipient is final; call after the settling commit."""
        row = self.store.query_one(
            "SELECT COUNT(*) AS open FROM spool_recipients WHERE queue_id = ? AND state = 'queued'", (queue_id,))
        if row and row["open"] == 0:
            self.discard(queue_id)
            return True
        return False

    def recover(self) -> dict[str, int]:
        """Put the spool back in order after any stop, clean or not."""
        stats = {"orphans_discarded": 0, "finished_removed": 0, "missing_files": 0, "leases_cleared": 0, "queued": 0}
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        with self.store.transaction() as conn:
            stats["leases_cleared"] = conn.execute(
                "UPDATE spool_recipients SET lease_until = NULL, lease_token = NULL WHERE lease_until IS NOT NULL"
            ).rowcount
        open_ids = {r["queue_id"] for r in self.store.query(
            "SELECT DISTINCT queue_id FROM spool_recipients WHERE state = 'queued'")}
        known_ids = {r["queue_id"] for r in self.store.query("SELECT DISTINCT queue_id FROM spool_recipients")}
        on_disk = {p.stem for p in self.messages.glob("*.msg")}
        for queue_id in on_disk - known_ids:
            self.discard(queue_id)
            stats["orphans_discarded"] += 1
            self.log.warning("spool.orphan_discarded", queue_id=queue_id,
                             reason="spooled but never acknowledged (stopped before commit)")
        for queue_id in (on_disk & known_ids) - open_ids:
            self.discard(queue_id)
            stats["finished_removed"] += 1
        for queue_id in open_ids - on_disk:
            stats["missing_files"] += 1
            self.log.error("spool.file_missing", queue_id=queue_id)
            now = self.clock.now()
            with self.store.transaction() as conn:
                conn.execute(
                    "UPDATE spool_recipients SET state = 'failed', last_text = 'spool file missing', updated_at = ?"
                    " WHERE queue_id = ? AND state = 'queued'", (now, queue_id))
        row = self.store.query_one("SELECT COUNT(*) AS n FROM spool_recipients WHERE state = 'queued'")
        stats["queued"] = int(row["n"]) if row else 0
        return stats

    def summary(self) -> dict:
        rows = self.store.query("SELECT state, COUNT(*) AS n FROM spool_recipients GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    def prune_settled(self, older_than: float) -> int:
        with self.store.transaction() as conn:
            return conn.execute(
                "DELETE FROM spool_recipients WHERE state IN ('delivered','failed','expired') AND updated_at < ?",
                (older_than,)).rowcount


MIGRATIONS = [
    """
    CREATE TABLE spool_recipients (
        queue_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        route TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued','delivered','failed','expired')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_until REAL,
        lease_token TEXT,
        last_code INTEGER,
        last_text TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (queue_id, recipient)
    );
    CREATE INDEX spool_due ON spool_recipients (state, next_attempt_at);
    CREATE INDEX spool_lease ON spool_recipients (lease_token);
    """,
]
