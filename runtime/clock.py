"""Wall-clock time for everything that is dated: warm-up age, buckets, retries.

An operator replaying history, or a test that needs a member to be thirty
days old, points `ATMOS_RELAY_CLOCK_FILE` at a file holding an offset in
seconds; the offset is re-read when the file changes, so a running relay
moves forward without a restart. Timeouts and leases use real time.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path


class Clock:
    def __init__(self, offset_file: str | None = None) -> None:
        self._file = Path(offset_file) if offset_file else None
        self._offset = 0.0
        self._mtime: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> "Clock":
        return cls(os.environ.get("ATMOS_RELAY_CLOCK_FILE") or None)

    @property
    def offset(self) -> float:
        if self._file is None:
            return 0.0
        try:
            mtime = self._file.stat().st_mtime_ns
        except FileNotFoundError:
            return self._offset
        if mtime != self._mtime:
            with self._lock:
                try:
                    self._offset = float(self._file.read_text().strip() or 0)
                except ValueError:
                    pass
                self._mtime = mtime
        return self._offset

    def now(self) -> float:
        return time.time() + self.offset
