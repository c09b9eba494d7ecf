"""The relay's clock, moved forward by a test (ATMOS_RELAY_CLOCK_FILE holds an offset in seconds)."""
from __future__ import annotations

import os
import time
from pathlib import Path


class ClockFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0.0
        self.path.write_text("0")

    @property
    def env(self) -> dict[str, str]:
        return {"ATMOS_RELAY_CLOCK_FILE": str(self.path)}

    def advance(self, seconds: float) -> None:
        self.set(self.offset + seconds)

    def set(self, offset: float) -> None:
        self.offset = offset
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(repr(offset))
        os.replace(tmp, self.path)
        # mtime has ns resolution but some filesystems round; make each change visible.
        stamp = time.time_ns()
        os.utime(self.path, ns=(stamp, stamp))

    def now(self) -> float:
        return time.time() + self.offset
