"""Message bytes in function events and results.

In-process calls (the SMTP edge to a hook, a handler to another) pass
`bytes` as they are. Where a payload crosses a JSON boundary (the invoke
API, `atmos-relay invoke`) bytes travel as base64 strings: `as_bytes`
accepts either form on the way in, `to_json` writes bytes as base64 on the
way out.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from runtime import replies
from runtime.errors import RelayError

_ESCAPE = re.compile(rb"\\.", re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, counted without parsing it (strings are skipped).

    Python's parser recurses per level, so a caller's nesting must be bounded before it parses.
    """
    depth = deepest = 0
    for outside in _ESCAPE.sub(b"", raw).split(b'"')[::2]:
        for bracket in _BRACKET.findall(outside):
            depth += 1 if bracket in (b"[", b"{") else -1
            deepest = max(deepest, depth)
    return deepest


class PayloadError(RelayError):
    """A JSON caller sent something else where message bytes belong."""


def as_bytes(value: Any) -> bytes:
    """Bytes given in-process, or the base64 string a JSON caller sent."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value)
        except binascii.Error as exc:
            raise PayloadError(replies.MESSAGE_MALFORMED.format(detail="not base64"), detail=str(exc)) from None
    raise PayloadError(replies.MESSAGE_MALFORMED.format(detail=f"bytes expected, not {type(value).__name__}"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    # A timestamp or Path in a result is not an error.
    return str(value)


def to_json(value: Any, **kwargs: Any) -> str:
    """A function's result as JSON, bytes as base64."""
    return json.dumps(value, default=_jsonable, **kwargs)
