"""Connections per client address counted across the edge processes, in one small shared table.

With `smtp.processes: N` the kernel hands a client's connections to
whichever edge process accepts first, so a cap counted per process would let
one address hold N times its share. The edges count in one file mapped into
each of them (`<stateDir>/smtp-connections.table`): a row per listener and
client address with a column per edge, each column written only by its own
process, the check and the update done under an flock held for
microseconds. A process that dies loses nothing here that matters: the
kernel closed its connections with it and releases its flock, and the edge
started in its place clears that column before it accepts, so no client
stays counted for connections that are gone.

Rows are found by a 64-bit hash of listener and address (open addressing,
linear probing, a row deleted when its count falls to zero by shifting its
successors back). A row copied but not yet cleared when a process was
killed mid-delete is merged away when the table is rebuilt at an edge's
start.
"""
from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
from pathlib import Path

FILE_NAME = "smtp-connections.table"
_MAGIC = b"ATMC"
_HEADER = struct.Struct("<4sII")  # magic, columns (edge processes), rows
_TAG = struct.Struct("<Q")
MAX_ROWS = 1 << 16


def rows_for(processes: int, max_connections: int) -> int:
    """Room for every connection the edges could hold at once, each from another address, at most half full."""
    wanted = 2 * 2 * processes * max_connections  # two listeners, load factor 1/2
    rows = 64
    while rows < min(wanted, MAX_ROWS):
        rows *= 2
    return rows


def create(path: Path, processes: int, rows: int) -> None:
    """A fresh, empty table for `processes` edges (the main process, before any edge starts)."""
    size = _HEADER.size + rows * (_TAG.size + 4 * processes)
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as f:
        f.write(_HEADER.pack(_MAGIC, processes, rows))
        f.truncate(size)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class TableFull(Exception):
    pass


class ClientConnectionTable:
    """One edge process's view of the shared counts; `column` is its slot among the edges."""

    def __init__(self, path: Path, column: int) -> None:
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, 0)
        magic, self.columns, self.rows = _HEADER.unpack_from(self._map, 0)
        if magic != _MAGIC or not 0 <= column < self.columns:
            raise ValueError(f"{path}: not a connection table for edge {column}")
        self.column = column
        self._row_size = _TAG.size + 4 * self.columns
        self._lock = threading.Lock()
        with self._locked():
            self._clear_column()

    def take(self, listener: str, key: str, cap: int) -> bool:
        """Count one more connection of `key` here, unless all edges together already hold `cap`."""
        tag = _tag(listener, key)
        with self._locked():
            row = self._find(tag)
            if row is None:
                row = self._insert(tag)
            elif sum(self._counts(row)) >= cap:
                return False
            self._add(row, 1)
            return True

    def give_back(self, listener: str, key: str) -> None:
        tag = _tag(listener, key)
        with self._locked():
            row = self._find(tag)
            if row is None or self._count(row) == 0:
                return
            self._add(row, -1)
            if not any(self._counts(row)):
                self._delete(row)

    def held(self, listener: str, key: str) -> int:
        """Connections of `key` on `listener` in every edge together."""
        with self._locked():
            row = self._find(_tag(listener, key))
            return sum(self._counts(row)) if row is not None else 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    # --- the table itself, always under the lock -------------------------------------------------

    def _locked(self) -> "_Locked":
        return _Locked(self._lock, self._fd)

    def _offset(self, row: int) -> int:
        return _HEADER.size + row * self._row_size

    def _tag_at(self, row: int) -> int:
        return _TAG.unpack_from(self._map, self._offset(row))[0]

    def _counts(self, row: int) -> tuple[int, ...]:
        return struct.unpack_from(f"<{self.columns}I", self._map, self._offset(row) + _TAG.size)

    def _count(self, row: int) -> int:
        return struct.unpack_from("<I", self._map, self._offset(row) + _TAG.size + 4 * self.column)[0]

    def _add(self, row: int, n: int) -> None:
        struct.pack_into("<I", self._map, self._offset(row) + _TAG.size + 4 * self.column, self._count(row) + n)

    def _find(self, tag: int) -> int | None:
        row = tag % self.rows
        for _ in range(self.rows):
            found = self._tag_at(row)
            if found == tag:
                return row
            if found == 0:
                return None
            row = (row + 1) % self.rows
        return None

    def _insert(self, tag: int) -> int:
        row = tag % self.rows
        for _ in range(self.rows):
            if self._tag_at(row) == 0:
                start = self._offset(row)
                self._map[start:start + self._row_size] = bytes(self._row_size)
                _TAG.pack_into(self._map, start, tag)
                return row
            row = (row + 1) % self.rows
        raise TableFull(f"all {self.rows} rows of the connection table are in use")

    def _delete(self, hole: int) -> None:
        """Empty `hole` and shift back the rows after it that would no longer be found past it."""
        row = hole
        while True:
            row = (row + 1) % self.rows
            tag = self._tag_at(row)
            if tag == 0:
                break
            home = tag % self.rows
            if (row - home) % self.rows >= (row - hole) % self.rows:
                self._copy(row, hole)
                hole = row
        start = self._offset(hole)
        self._map[start:start + self._row_size] = bytes(self._row_size)

    def _copy(self, source: int, target: int) -> None:
        src, dst = self._offset(source), self._offset(target)
        self._map[dst:dst + self._row_size] = self._map[src:src + self._row_size]

    def _clear_column(self) -> None:
        """Forget what a dead predecessor in this column held, and rebuild the table without empty rows."""
        live: dict[int, list[int]] = {}
        for row in range(self.rows):
            tag = self._tag_at(row)
            if tag:
                counts = list(self._counts(row))
                counts[self.column] = 0
                merged = live.setdefault(tag, [0] * self.columns)
                live[tag] = [max(a, b) for a, b in zip(merged, counts)]
        self._map[_HEADER.size:] = bytes(len(self._map) - _HEADER.size)
        for tag, counts in live.items():
            if any(counts):
                row = self._insert(tag)
                struct.pack_into(f"<{self.columns}I", self._map, self._offset(row) + _TAG.size, *counts)


class _Locked:
    """The process's thread lock, then the flock every edge shares."""

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self.lock, self.fd = lock, fd

    def __enter__(self) -> None:
        self.lock.acquire()
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.lock.release()


def _tag(listener: str, key: str) -> int:
    tag = _TAG.unpack(hashlib.blake2b(f"{listener} {key}".encode(), digest_size=8).digest())[0]
    return tag or 1
