"""A file's parsed form, kept while the file stays the same.

Files the operator edits or rotates while the relay runs (the policy file,
the operator DKIM keys) are read for every message or rule; parsing them
each time costs more than the work they serve. A file counts as changed
when its inode, mtime or size differs, so an in-place edit and an atomic
replace (write, rename) are both seen at the next `get`.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class FileCache(Generic[T]):
    def __init__(self, parse: Callable[[str], T]) -> None:
        self._parse = parse
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int, int], T]] = {}

    def get(self, path: str | Path) -> T:
        """`parse(path)`, from the cache unless the file changed; FileNotFoundError when it is gone."""
        key = str(path)
        st = os.stat(key)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        value = self._parse(key)
        with self._lock:
            self._entries[key] = (stamp, value)
        return value
