"""`rejected-actions`: dead letters of the stream apps kept in `rejected_actions`, and listed for the operator.

Stream trigger on `osprey.actions_rejected`: each record (written by the
embedded app or a Faust worker, see stream_apps/intake.py) is stored once,
keyed by where the action sat on its topic, so a worker that re-sends after a
crash adds nothing. `{"list": {"limit": N}}` (what `atmos-relay events
rejected` sends) returns the newest rows and how many are kept in all.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from functions.reputation import counting, events
from runtime.context import LambdaContext

DEFAULT_LIMIT, MAX_LIMIT = 20, 1000


def _letter(record: dict) -> dict[str, Any]:
    """A stored row from one Lambda Kafka record; one that is not our dead letter is kept as it came."""
    raw = base64.b64decode(record.get("value") or "").decode("utf-8", "replace")
    try:
        letter = json.loads(raw)
    except (ValueError, RecursionError):
        letter = None
    if not isinstance(letter, dict):
        letter = {"reason": "a record on the dead-letter topic that is not a dead letter", "raw": raw}
    fallback = f"{record.get('topic')}/{record.get('partition')}/{record.get('offset')}"
    action_id = letter.get("action_id")
    return {
        "origin": str(letter.get("origin") or fallback),
        "action_id": action_id if isinstance(action_id, int) and not isinstance(action_id, bool)
        and events.fits_int64(action_id) else None,
        "action_name": str(letter.get("action_name") or ""),
        "reason": str(letter.get("reason") or "no reason given"),
        "raw": str(letter.get("raw") or ""),
        "rejected_by": str(letter.get("rejected_by") or ""),
        "rejected_at": counting.event_time(letter.get("rejected_at"), 0.0),
    }


def _keep(event: dict, context: LambdaContext) -> dict:
    now = context.clock.now()
    kept = 0
    with context.store.transaction() as conn:
        for batch in (event.get("records") or {}).values():
            for record in batch:
                row = _letter(record)
                kept += conn.execute(
                    "INSERT OR IGNORE INTO rejected_actions (origin, action_id, action_name, reason, raw,"
                    " rejected_by, rejected_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (row["origin"], row["action_id"], row["action_name"], row["reason"], row["raw"],
                     row["rejected_by"], row["rejected_at"] or now, now)).rowcount
    if kept:
        context.logger.info("rejected_actions.kept", kept=kept)
    return {"kept": kept}


def _list(limit: Any, context: LambdaContext) -> dict:
    try:
        limit = min(max(int(limit or DEFAULT_LIMIT), 1), MAX_LIMIT)
    except (TypeError, ValueError):
        limit = DEFAULT_LIMIT
    conn = context.store.connection()
    total = conn.execute("SELECT COUNT(*) FROM rejected_actions").fetchone()[0]
    rows = conn.execute("SELECT * FROM rejected_actions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return {"count": total, "rejected": [dict(r) for r in rows]}


def handler(event: dict, context: LambdaContext) -> dict:
    if isinstance(event.get("list"), dict):
        return _list(event["list"].get("limit"), context)
    return _keep(event, context)
