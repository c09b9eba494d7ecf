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
from typing import Any

from runtime import replies
from runtime.errors import RelayError


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
