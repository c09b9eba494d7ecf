"""Append-only segment files holding the spooled messages' bytes.

One file per message cost an inode allocation, a rename, a directory fsync
and an unlink for every message; on ext4 without a journal each allocation
also walks past every inode freed in the last minute, so the cost grew with
the rate. A process appends records to its own open segment instead and
concurrent appends share one fdatasync.

Each process holds a shared flock on the segments it writes, and keeps it
until every record it placed there was committed to the store or abandoned.
A segment nobody holds and no spooled message points into is garbage:
`reap` deletes it. flocks die with their process, so a crashed writer's
segment becomes reapable on its own.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

SEGMENT_BYTES = 8 * 1024 * 1024
SEGMENT_SECONDS = 300.0
SUFFIX = ".seg"


class Placement(NamedTuple):
    segment: str
    offset: int
    length: int


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Segment:
    """An open segment of this process; closed once retired and no longer held."""

    def __init__(self, directory: Path, staging: Path) -> None:
        self.name = f"{int(time.time() * 1000):011X}-{os.getpid()}-{secrets.token_hex(3)}"
        staged = staging / f"{self.name}{SUFFIX}"
        self.fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Held before the name appears in segments/, so no reaper ever sees it unlocked.
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            os.rename(staged, directory / f"{self.name}{SUFFIX}")
            fsync_dir(directory)
        except BaseException:
            os.close(self.fd)
            raise
        self.opened = time.monotonic()
        self.size = 0
        self.holds = 0
        self.retired = False
        self._sync = threading.Condition()
        self._wanted = 0
        self._synced = 0
        self._busy = False

    def full(self) -> bool:
        return self.size >= SEGMENT_BYTES or (self.size and time.monotonic() - self.opened >= SEGMENT_SECONDS)

    def write(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def sync(self) -> None:
        """fdatasync covering this thread's finished write; writes finished before one starts share it."""
        with self._sync:
            self._wanted += 1
            mine = self._wanted
            while self._synced < mine:
                if self._busy:
                    self._sync.wait()
                    continue
                self._busy, covering, done = True, self._wanted, False
                self._sync.release()
                try:
                    os.fdatasync(self.fd)
                    done = True
                finally:
                    self._sync.acquire()
                    self._busy = False
                    if done:
                        self._synced = max(self._synced, covering)
                    self._sync.notify_all()


class SegmentFiles:
    def __init__(self, root: Path) -> None:
        self.directory = root / "segments"
        self.staging = root / "tmp"
        for d in (self.directory, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._active: _Segment | None = None
        self._held: dict[str, tuple[_Segment, Placement]] = {}

    def append(self, key: str, record: bytes) -> Placement:
        """Write `record` durably and hold its segment for `key` until `release(key)`."""
        with self._lock:
            if key in self._held:
                raise ValueError(f"{key} is already placed")
            segment = self._active
            if segment is None or segment.full():
                if segment is not None:
                    self._retire(segment)
                segment = self._active = _Segment(self.directory, self.staging)
            placement = Placement(segment.name, segment.size, len(record))
            segment.size += len(record)
            segment.holds += 1
            self._held[key] = (segment, placement)
        try:
            segment.write(record, placement.offset)
            segment.sync()
        except BaseException:
            self.release(key)
            raise
        return placement

    def placed(self, key: str) -> Placement | None:
        """Where `key`'s record went, while it is held (between `append` and `release`)."""
        with self._lock:
            held = self._held.get(key)
        return held[1] if held else None

    def release(self, key: str) -> None:
        """What was placed for `key` is now committed (or abandoned): its segment may close."""
        with self._lock:
            held = self._held.pop(key, None)
            if held is None:
                return
            segment = held[0]
            segment.holds -= 1
            if segment.retired and segment.holds == 0:
                os.close(segment.fd)

    def _retire(self, segment: _Segment) -> None:
        segment.retired = True
        if segment.holds == 0:
            os.close(segment.fd)

    def read(self, placement: Placement) -> bytes:
        fd = os.open(self.directory / f"{placement.segment}{SUFFIX}", os.O_RDONLY)
        try:
            data = os.pread(fd, placement.length, placement.offset)
        finally:
            os.close(fd)
        if len(data) != placement.length:
            raise FileNotFoundError(f"segment {placement.segment} is shorter than its records")
        return data

    def names(self) -> list[str]:
        return [p.name[:-len(SUFFIX)] for p in self.directory.iterdir() if p.name.endswith(SUFFIX)]

    def usage(self) -> tuple[int, int]:
        """(segments, bytes) on disk."""
        count = size = 0
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                size += path.stat().st_size
                count += 1
            except FileNotFoundError:
                pass
        return count, size

    def reap(self, referenced: Callable[[str], bool]) -> tuple[int, int]:
        """Delete segments no process holds and `referenced` says nothing points into; (count, bytes)."""
        count = size = 0
        for name in self.names():
            path = self.directory / f"{name}{SUFFIX}"
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if referenced(name):
                    continue
                size += os.fstat(fd).st_size
                path.unlink(missing_ok=True)
                count += 1
            finally:
                os.close(fd)
        return count, size

    def clear_staging(self) -> None:
        """Segments a crash left before their rename; never held by anyone alive (they die with their writer)."""
        stale = time.time() - 60
        for leftover in self.staging.iterdir():
            try:
                if leftover.stat().st_mtime > stale:
                    continue
                fd = os.open(leftover, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                leftover.unlink(missing_ok=True)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
