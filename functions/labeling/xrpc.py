"""The com.atproto.label.* parameters as atproto defines them, read from an attacker's query string.

Errors are XRPC's: a status with {"error": <name>, "message": ...}.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

DEFAULT_LIMIT, MAX_LIMIT = 50, 250
MAX_PATTERNS = 50
_DID = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]{1,2040}$")


class XrpcError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


@dataclass(frozen=True)
class LabelQuery:
    exact: list[str]
    prefixes: list[str]
    sources: list[str]
    cursor: int
    limit: int


def _params(raw_query: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw_query or "", keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def _integer(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    raw = (params.get(name) or [""])[-1]
    if raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,15}", raw) or not low <= int(raw) <= high:
        raise XrpcError(400, "InvalidRequest", f"{name} must be an integer from {low} to {high}")
    return int(raw)


def label_query(raw_query: str) -> LabelQuery:
    """queryLabels: uriPatterns (exact, or a prefix ending in '*'), sources, limit, cursor."""
    params = _params(raw_query)
    patterns = [p for p in params.get("uriPatterns", []) if p]
    if not patterns:
        raise XrpcError(400, "InvalidRequest", "uriPatterns is required")
    if len(patterns) > MAX_PATTERNS:
        raise XrpcError(400, "InvalidRequest", f"at most {MAX_PATTERNS} uriPatterns")
    exact, prefixes = [], []
    for pattern in patterns:
        if len(pattern) > 8192:
            raise XrpcError(400, "InvalidRequest", "a uriPattern is too long")
        star = pattern.find("*")
        if star == -1:
            exact.append(pattern)
        elif star == len(pattern) - 1:
            prefixes.append(pattern[:-1])
        else:
            raise XrpcError(400, "InvalidRequest", "only a trailing '*' is supported in uriPatterns")
    sources = params.get("sources", [])
    if any(not _DID.match(s) for s in sources):
        raise XrpcError(400, "InvalidRequest", "sources must be DIDs")
    return LabelQuery(exact, prefixes, sources, _integer(params, "cursor", 0, 0, 2**53),
                      _integer(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))


def stream_cursor(raw_query: str) -> int | None:
    """subscribeLabels' optional cursor (None: live only)."""
    params = _params(raw_query)
    if not (params.get("cursor") or [""])[-1]:
        return None
    return _integer(params, "cursor", 0, 0, 2**53)
