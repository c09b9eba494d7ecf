"""The delivery spool: accepted messages on disk, their recipients' state in SQLite.

A message is one record in a segment file under `<stateDir>/queue/segments/`
(see spool_segments): a JSON envelope on the first line, the message bytes
after it. `placing` appends it and fdatasyncs; inside that block the
caller's transaction `register`s a row for the message and one per
recipient; the SMTP 250 comes after the block. So a record without rows
was never acknowledged (its bytes are reclaimed with their segment), and a
message with rows is always on disk: its segment is held by the writer
until the block ends and afterwards kept for as long as a row points into
it. Leases keep two deliveries of one recipient from
overlapping; a lease left by a crash simply runs out.

Each row may name an `owner` (whoever the caller says the mail belongs
to). A caller can `freeze` an owner's queued rows (never due, never leased
until thawed) or `purge` them; registering with a later `not_before`
holds a row back. What makes mail held or frozen is the caller's business.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from runtime.clock import Clock
from runtime.jsonlog import JsonLog
from runtime.spool_segments import Placement, SegmentFiles
from runtime.store import Store

FINAL_STATES = ("delivered", "failed", "expired")
# How a row is shown: queued ones split into frozen, held (by the caller, until a time not yet come) and
# queued. A row put back after a failed run is not held, whatever its due time. One `?`: now.
SHOWN_STATE = ("CASE WHEN state = 'queued' AND frozen = 1 THEN 'frozen'"
               " WHEN state = 'queued' AND held_until > ? THEN 'held' ELSE state END")
SHOWN_STATES = ("queued", "held", "frozen") + FINAL_STATES


class Due(NamedTuple):
    queue_id: str
    recipient: str
    route: str
    attempts: int
    created_at: float


class SpoolError(Exception):
    pass


class Placing:
    """A message on disk that is not deliverable yet (see `Spool.placing`)."""

    def __init__(self, queue_id: str, place: Placement) -> None:
        self.queue_id = queue_id
        self.place = place
        self.registered = False

    def register(self, conn: sqlite3.Connection, recipients: Iterable[tuple[str, str]], now: float,
                 not_before: float | None = None, owner: str | None = None) -> None:
        """Rows for the message and each (recipient, route), in the caller's transaction, due at `not_before`.

        A `not_before` later than now holds the rows until then (shown `held`).
        """
        conn.execute("INSERT INTO spool_messages (queue_id, segment, position, length, created_at)"
                     " VALUES (?, ?, ?, ?, ?)", (self.queue_id, *self.place, now))
        due = not_before or now
        held_until = due if due > now else None
        conn.executemany(
            "INSERT INTO spool_recipients (queue_id, recipient, route, state, attempts, next_attempt_at,"
            " created_at, updated_at, owner, held_until) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?)",
            [(self.queue_id, rcpt, route, due, now, now, owner, held_until) for rcpt, route in recipients])
        self.registered = True


def new_queue_id() -> str:
    """Time-ordered and unique: 11 hex digits of milliseconds, 8 random."""
    return f"{int(time.time() * 1000):011X}{secrets.token_hex(4).upper()}"


class Spool:
    def __init__(self, root: str | Path, store: Store, log: JsonLog, clock: Clock) -> None:
        self.clock = clock
        self.root = Path(root)
        self.store = store
        self.log = log
        self.segments = SegmentFiles(self.root)
        self._wakeups: list = []

    @contextmanager
    def placing(self, envelope: dict, message: bytes, queue_id: str | None = None) -> Iterator[Placing]:
        """Write the message durably, then let the caller `register` it inside its own transaction.

        The segment stays held for the whole block, so the bytes cannot be
        reaped before the caller's commit; leaving the block lets it go, and
        wakes delivery when the message was registered. A block that raises,
        or never registers, leaves a record without rows: never acknowledged,
        reclaimed with its segment.
        """
        queue_id = queue_id or new_queue_id()
        if not queue_id.isalnum():
            raise SpoolError(f"bad queue id {queue_id!r}")
        header = json.dumps({**envelope, "queue_id": queue_id}, separators=(",", ":")).encode()
        if b"\n" in header:
            raise SpoolError("envelope must serialise to one line")
        placing = Placing(queue_id, self.segments.append(queue_id, header + b"\n" + message))
        try:
            yield placing
        finally:
            self.segments.release(queue_id)
        if placing.registered:
            self.wake()

    def load(self, queue_id: str) -> tuple[dict, bytes]:
        row = self.store.query_one(
            "SELECT segment, position, length FROM spool_messages WHERE queue_id = ?", (queue_id,))
        if row is None:
            raise FileNotFoundError(f"no spooled message {queue_id}")
        header, _, message = self.segments.read(Placement(*row)).partition(b"\n")
        envelope = json.loads(header)
        if envelope.get("queue_id") != queue_id:
            raise SpoolError(f"segment {row[0]} at {row[1]} holds {envelope.get('queue_id')}, not {queue_id}")
        return envelope, message

    def on_wake(self, callback) -> None:
        self._wakeups.append(callback)

    def wake(self) -> None:
        for callback in self._wakeups:
            callback()

    def due(self, now: float, limit: int, skip_routes: Iterable[str] = ()) -> list[Due]:
        """Queued recipients whose time has come, oldest first; none of `skip_routes` (they are busy)."""
        skip = list(skip_routes)
        rows = self.store.query(
            "SELECT queue_id, recipient, route, attempts, created_at FROM spool_recipients"
            " WHERE state = 'queued' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
            f" AND frozen = 0 AND route NOT IN ({','.join('?' * len(skip))}) ORDER BY next_attempt_at, queue_id"
            " LIMIT ?",
            (now, now, *skip, limit))
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
                " WHERE +state = 'queued' AND frozen = 0 AND (lease_until IS NULL OR lease_until < ?)"
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
        """Record one attempt's outcome inside the caller's transaction.

        When the last recipient of a message is final, the message's row goes in
        the same transaction, and with the last row pointing into a segment the
        segment becomes reapable.
        """
        if state not in ("queued",) + FINAL_STATES:
            raise SpoolError(f"unknown recipient state {state!r}")
        cur = conn.execute(
            "UPDATE spool_recipients SET state = ?, attempts = attempts + 1, next_attempt_at = COALESCE(?, next_attempt_at),"
            " last_code = ?, last_text = ?, lease_until = NULL, lease_token = NULL, updated_at = ?"
            " WHERE queue_id = ? AND recipient = ?",
            (state, next_attempt_at, code, text[:1000], now, queue_id, recipient))
        if cur.rowcount != 1:
            raise SpoolError(f"no spooled recipient {recipient} in {queue_id}")
        if state != "queued" and conn.execute(
                "SELECT 1 FROM spool_recipients WHERE queue_id = ? AND state = 'queued' LIMIT 1",
                (queue_id,)).fetchone() is None:
            conn.execute("DELETE FROM spool_messages WHERE queue_id = ?", (queue_id,))

    def freeze(self, conn: sqlite3.Connection, owner: str, frozen: bool = True) -> int:
        """Stop (or, with frozen=False, resume) attempts at an owner's queued rows, in the caller's transaction."""
        return conn.execute("UPDATE spool_recipients SET frozen = ? WHERE owner = ? AND state = 'queued'"
                            " AND frozen = ?", (int(frozen), owner, int(not frozen))).rowcount

    def pending(self, conn: sqlite3.Connection, owner: str, now: float, frozen: bool | None = None,
                untried: bool = False) -> list[sqlite3.Row]:
        """An owner's queued rows in arrival order, each with its shown state (queued, held, frozen)."""
        return conn.execute(
            f"SELECT queue_id, recipient, attempts, next_attempt_at, created_at, held_until, {SHOWN_STATE} AS shown"
            " FROM spool_recipients WHERE owner = ? AND state = 'queued' AND (? IS NULL OR frozen = ?)"
            " AND (? = 0 OR attempts = 0) ORDER BY created_at, queue_id",
            (now, owner, frozen, frozen, int(untried))).fetchall()

    def frozen_before(self, conn: sqlite3.Connection, created_before: float, limit: int = 1000) -> list[sqlite3.Row]:
        """Frozen rows spooled before a time (to be expired: freezing does not stop the clock)."""
        return conn.execute("SELECT queue_id, recipient, owner, attempts FROM spool_recipients WHERE state = 'queued'"
                            " AND frozen = 1 AND created_at <= ? ORDER BY created_at LIMIT ?",
                            (created_before, limit)).fetchall()

    def postpone(self, conn: sqlite3.Connection, queue_id: str, not_before: float) -> None:
        """Move a message's untried rows to a new due time (a held message planned again)."""
        conn.execute("UPDATE spool_recipients SET next_attempt_at = ?, held_until = ? WHERE queue_id = ?"
                     " AND state = 'queued' AND attempts = 0", (not_before, not_before, queue_id))

    def purge(self, conn: sqlite3.Connection, owner: str, now: float) -> dict[str, int]:
        """Delete an owner's queued rows (never to be attempted) and the messages left without rows."""
        counts = {state: n for state, n in conn.execute(
            f"SELECT {SHOWN_STATE}, COUNT(*) FROM spool_recipients WHERE owner = ? AND state = 'queued'"
            " GROUP BY 1", (now, owner))}
        queue_ids = [r[0] for r in conn.execute(
            "DELETE FROM spool_recipients WHERE owner = ? AND state = 'queued' RETURNING queue_id", (owner,))]
        for queue_id in set(queue_ids):
            if conn.execute("SELECT 1 FROM spool_recipients WHERE queue_id = ? AND state = 'queued' LIMIT 1",
                            (queue_id,)).fetchone() is None:
                conn.execute("DELETE FROM spool_messages WHERE queue_id = ?", (queue_id,))
        return {state: counts.get(state, 0) for state in ("queued", "held", "frozen")}

    def reap(self) -> dict[str, int]:
        """Delete segments that no writer holds and no spooled message points into."""
        def referenced(segment: str) -> bool:
            return self.store.query_one("SELECT 1 FROM spool_messages WHERE segment = ? LIMIT 1",
                                        (segment,)) is not None
        count, size = self.segments.reap(referenced)
        if count:
            self.log.info("spool.reaped", segments=count, bytes=size)
        return {"segments_reaped": count, "bytes_reaped": size}

    def recover(self) -> dict[str, int]:
        """Put the spool back in order after any stop, clean or not."""
        stats = {"leases_cleared": 0, "legacy_moved": 0, "missing_files": 0, "queued": 0}
        self.segments.clear_staging()
        with self.store.transaction() as conn:
            stats["leases_cleared"] = conn.execute(
                "UPDATE spool_recipients SET lease_until = NULL, lease_token = NULL WHERE lease_until IS NOT NULL"
            ).rowcount
        stats["legacy_moved"] = self._move_legacy_files()
        stats.update(self.reap())
        present = set(self.segments.names())
        missing = [r["queue_id"] for r in self.store.query(
            "SELECT DISTINCT r.queue_id FROM spool_recipients r LEFT JOIN spool_messages m USING (queue_id)"
            " WHERE r.state = 'queued' AND (m.segment IS NULL OR m.segment NOT IN (%s))"
            % ",".join("?" * len(present)), sorted(present))]
        for queue_id in missing:
            stats["missing_files"] += 1
            self.log.error("spool.file_missing", queue_id=queue_id)
            now = self.clock.now()
            with self.store.transaction() as conn:
                conn.execute(
                    "UPDATE spool_recipients SET state = 'failed', last_text = 'spool file missing', updated_at = ?"
                    " WHERE queue_id = ? AND state = 'queued'", (now, queue_id))
                conn.execute("DELETE FROM spool_messages WHERE queue_id = ?", (queue_id,))
        row = self.store.query_one("SELECT COUNT(*) AS n FROM spool_recipients WHERE state = 'queued'")
        stats["queued"] = int(row["n"]) if row else 0
        return stats

    def _move_legacy_files(self) -> int:
        """Messages spooled one file each (`queue/messages/<id>.msg`, before segments) move into a segment."""
        legacy = self.root / "messages"
        if not legacy.is_dir():
            return 0
        moved = 0
        for path in sorted(legacy.glob("*.msg")):
            queue_id = path.stem
            wanted = self.store.query_one(
                "SELECT 1 FROM spool_recipients r WHERE r.queue_id = ? AND r.state = 'queued' AND NOT EXISTS"
                " (SELECT 1 FROM spool_messages m WHERE m.queue_id = r.queue_id)", (queue_id,))
            if wanted is not None:
                header, _, message = path.read_bytes().partition(b"\n")
                # The recipients' rows are there already; only the message's place is new.
                with self.placing(json.loads(header), message, queue_id) as placing:
                    with self.store.transaction() as conn:
                        placing.register(conn, [], self.clock.now())
                moved += 1
            path.unlink()
        if not any(legacy.iterdir()):
            legacy.rmdir()
        return moved

    def stats(self) -> dict[str, int]:
        """Live messages and the segment files holding them (and not yet reaped garbage)."""
        row = self.store.query_one("SELECT COUNT(*) AS n FROM spool_messages")
        count, size = self.segments.usage()
        return {"messages": int(row["n"]) if row else 0, "segments": count, "segment_bytes": size}

    def summary(self, now: float | None = None) -> dict:
        """Rows per shown state (queued, held, frozen, and the final ones)."""
        rows = self.store.query(f"SELECT {SHOWN_STATE} AS shown, COUNT(*) AS n FROM spool_recipients GROUP BY 1",
                                (self.clock.now() if now is None else now,))
        return {r["shown"]: r["n"] for r in rows}

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
    """
    CREATE TABLE spool_messages (
        queue_id TEXT PRIMARY KEY,
        segment TEXT NOT NULL,
        position INTEGER NOT NULL,
        length INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX spool_messages_segment ON spool_messages (segment);
    """,
    # 3: whose mail a row is, and whether that owner's mail is frozen (issue 14)
    """
    ALTER TABLE spool_recipients ADD COLUMN owner TEXT;
    ALTER TABLE spool_recipients ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX spool_owner ON spool_recipients (owner, state);
    """,
    # 4: until when the caller holds a row (held is told apart from a row put back after a failed run)
    """
    ALTER TABLE spool_recipients ADD COLUMN held_until REAL;
    UPDATE spool_recipients SET held_until = next_attempt_at WHERE state = 'queued' AND attempts = 0
        AND next_attempt_at > updated_at;
    """,
]
