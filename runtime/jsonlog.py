"""One JSON object per line on stdout, each with an `event` an operator can grep.

Libraries that log through the standard `logging` module are folded into the
same stream, so journalctl shows one format.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO, Any

_write_lock = threading.Lock()


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class JsonLog:
    """A structured logger; `bind` returns a child carrying extra fields."""

    def __init__(self, stream: IO[str] | None = None, **bound: Any) -> None:
        self._stream = stream
        self._bound = bound

    @property
    def stream(self) -> IO[str]:
        return self._stream or sys.stdout

    def bind(self, **fields: Any) -> "JsonLog":
        return JsonLog(self._stream, **{**self._bound, **fields})

    def emit(self, level: str, event: str, **fields: Any) -> None:
        now = time.time()
        record = {
            "ts": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "event": event,
            **self._bound,
            **fields,
        }
        line = json.dumps(record, default=_default, separators=(",", ":"))
        with _write_lock:
            stream = self.stream
            stream.write(line + "\n")
            stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            self.emit("debug", event, **fields)


class StdlibBridge(logging.Handler):
    def __init__(self, log: JsonLog) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not kill us
            message = str(record.msg)
        fields: dict[str, Any] = {"logger": record.name, "message": message}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = repr(record.exc_info[1])
        self._log.emit(record.levelname.lower(), f"lib.{record.name}", **fields)


def install_stdlib_bridge(log: JsonLog, level: int = logging.WARNING) -> None:
    """Route `logging` records (aiosmtpd, aiokafka, faust …) into the JSON stream."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(StdlibBridge(log))
    root.setLevel(level)
    logging.getLogger("mail.log").setLevel(logging.ERROR)
