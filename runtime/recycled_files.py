"""Spool files are emptied and reused instead of deleted and created again.

ext4 does not hand out an inode freed in the last minute or so, and finds
one by walking the inode bitmap past every recently freed one; at a few
hundred messages a second, creating each message's file cost more CPU than
signing it. A delivered message's file is truncated (its content is gone
from disk at once) and renamed into `free/`; the next `put` renames one
back and writes into it, so in steady state no inode is freed or allocated.
Renames are atomic, so processes sharing the directory (the edge processes
take, the main process gives) never get the same file twice.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

KEEP_AT_MOST = 1024
COUNT_EVERY = 512


class RecycledFiles:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._seen_empty = -1  # mtime of the directory when it was last found empty
        self._given = 0

    def _next_name(self) -> str | None:
        with self._lock:
            if not self._names:
                changed = os.stat(self.dir).st_mtime_ns
                if changed == self._seen_empty:
                    return None
                self._names = [entry.name for entry in os.scandir(self.dir)]
                if not self._names:
                    self._seen_empty = changed
                    return None
            return self._names.pop()

    def take(self, dest: Path) -> int | None:
        """An empty file renamed to `dest` and opened for writing, or None when there is none."""
        while (name := self._next_name()) is not None:
            try:
                os.rename(self.dir / name, dest)
            except FileNotFoundError:
                continue  # another process took it
            fd = os.open(dest, os.O_WRONLY | os.O_TRUNC)
            os.fchmod(fd, 0o600)
            return fd
        return None

    def give(self, path: Path) -> None:
        """Empty `path` and keep it for reuse (or delete it when enough are kept)."""
        target = self.dir / path.name
        os.rename(path, target)
        os.truncate(target, 0)
        with self._lock:
            self._given += 1
            count = self._given % COUNT_EVERY == 0
        if count:
            self.trim()

    def trim(self, keep: int = KEEP_AT_MOST) -> int:
        """Delete what is kept beyond `keep` files (after a large queue drained); returns how many."""
        removed = 0
        for entry in list(os.scandir(self.dir))[keep:]:
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
        return removed
