"""A log line per interval for a fact that can repeat thousands of times a second.

A flood of connections makes the same failure or refusal happen on every
attempt; a line per attempt would fill the disk (one flood wrote 564,599
"Too many open files" lines in 100 s). The first occurrence of a key is
logged at once, later ones within `interval` are only counted, and the next
line says how many it stands for (`suppressed`).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from runtime.jsonlog import JsonLog

MAX_KEYS = 4096


class RepeatedEvent:
    def __init__(self, log: JsonLog, event: str, interval: float = 10.0, level: str = "warning",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.event = event
        self.interval = interval
        self.level = level
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def happened(self, key: str, **fields: Any) -> bool:
        """Note one occurrence; True when it was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= MAX_KEYS:
            self._forget_before(now - self.interval)
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        self.log.emit(self.level, self.event, **fields, suppressed=suppressed, interval=self.interval)
        return True

    def _forget_before(self, horizon: float) -> None:
        for key in [k for k, t in self._last.items() if t < horizon]:
            del self._last[key]
            self._suppressed.pop(key, None)
