"""subscribeLabels, one poll at a time: backfill from the subscriber's cursor, then whatever is new.

The platform keeps the connection and hands back the `state` this
returned last (the seq sent so far). As the event-stream spec says: a
cursor past the latest seq is a `FutureCursor` error and the connection
closes; a cursor older than the oldest label kept gets `#info
OutdatedCursor` and the stream starts at the oldest.
"""
from __future__ import annotations

import base64
import sqlite3
from typing import Any

from functions.labeling import label_records, signed_labels
from functions.labeling.xrpc import XrpcError, stream_cursor

BATCH = 200


def _frames(frames: list[bytes]) -> list[str]:
    return [base64.b64encode(f).decode() for f in frames]


def opening(conn: sqlite3.Connection, raw_query: str) -> dict[str, Any]:
    """The first poll of a connection: check the cursor, then the first batch."""
    try:
        cursor = stream_cursor(raw_query)
    except XrpcError as exc:
        return {"frames": _frames([label_records.error_frame(exc.error, exc.message)]), "close": True}
    oldest, latest = signed_labels.bounds(conn)
    if cursor is None:
        return {"frames": [], "state": {"cursor": latest}}
    if cursor > latest:
        return {"frames": _frames([label_records.error_frame("FutureCursor", f"cursor {cursor} is ahead of the"
                                                             f" latest seq {latest}")]), "close": True}
    if oldest and cursor < oldest - 1:
        head = label_records.info_frame("OutdatedCursor", f"cursor {cursor} is older than the oldest label kept"
                                                          f" ({oldest}); starting there")
        result = following(conn, oldest - 1)
        return {**result, "frames": _frames([head]) + result["frames"]}
    return following(conn, cursor)


def following(conn: sqlite3.Connection, cursor: int) -> dict[str, Any]:
    """Every label after `cursor`, one #labels message per seq; `more` when the batch was full."""
    rows = signed_labels.after(conn, cursor, BATCH)
    frames = [label_records.labels_frame(r["seq"], [label_records.from_row(r)]) for r in rows]
    return {"frames": _frames(frames), "state": {"cursor": rows[-1]["seq"] if rows else cursor},
            "more": len(rows) == BATCH}
