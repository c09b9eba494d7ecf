"""The value types config.json speaks in: durations, host:port pairs and lists given either way.

Kept apart from runtime.settings so the settings module holds only what the keys are.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from 300, "300", "5m", "2h" or "5d"."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use seconds or 30s, 5m, 2h, 5d)")
    return float(match.group(1)) * _UNIT[match.group(2)]


class Duration(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class HostPort(fields.Field):
    """"host:port", ":port" (loopback) or "[v6]:port"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or ":" not in value:
            raise ValidationError("expected host:port")
        host, _, port = value.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValidationError(f"bad port in {value!r}")
        return (host, int(port))


class StringList(fields.Field):
    """A list of strings, also accepted as one comma-separated string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
        raise ValidationError("expected a list of strings")


class WebUrl(fields.Field):
    """An http(s) URL with a host ("" too, meaning not set, when `allow_empty`). Not marshmallow's
    Url, whose Unicode-wide pattern took every process 45 ms to compile at import, for two keys."""

    def __init__(self, *, allow_empty: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_empty = allow_empty

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("expected a URL")
        if value == "" and self.allow_empty:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValidationError(f"not a URL: {value!r} ({exc})") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
            raise ValidationError(f"not an http(s) URL with a host: {value!r}")
        return value
