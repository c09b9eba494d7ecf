"""Members at a cap now: the `member_at_cap` events of the window they were emitted in.

The event is emitted where a cap is met (the submission path holds or
refuses the message); this module only reads it back from `relay_events`,
where `apply-results` stores every action once, so the operator's member
list and the member's own page see the same facts whoever produced them.
An event counts while its window is the current one (an hourly cap the
last hour, a daily cap the last 24 hours, as `limits` counts them) or
until the time it names (held mail released, or sending resumed).
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

from functions.reputation.counting import event_time

WINDOWS = {"hourly": 3600.0, "daily": 86400.0}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def reading(data: Any, created_at: float) -> dict[str, Any] | None:
    """One event's data as shown, or None when it is not a member_at_cap we can read (any producer writes these).

    `outcome` is held or refused and `until` when the mail is released or sending resumes; the
    spellings `held_until` and `refused: true` are read as the same.
    """
    if not isinstance(data, dict) or data.get("window") not in WINDOWS:
        return None
    outcome = data.get("outcome")
    if outcome not in ("held", "refused"):
        outcome = "refused" if data.get("refused") is True else "held"
    until = event_time(data.get("until", data.get("held_until")), 0.0) or None
    return {"window": data["window"], "cap": _number(data.get("cap")), "used": _number(data.get("used")),
            "tier": str(data.get("tier") or "")[:64], "outcome": outcome,
            "until": until, "at": created_at}


def in_force(entry: dict[str, Any], now: float) -> bool:
    return entry["at"] > now - WINDOWS[entry["window"]] or (entry["until"] or 0.0) > now


def current(conn: sqlite3.Connection, now: float, did: str = "") -> dict[str, list[dict[str, Any]]]:
    """Per member, the latest cap event of each window still in force (hourly before daily)."""
    rows = conn.execute(
        "SELECT sender_did, json_extract(raw, '$.ActionData') AS data, created_at FROM relay_events"
        " WHERE action_name = 'member_at_cap' AND (? = '' OR sender_did = ?) AND created_at > ?"
        " ORDER BY id DESC LIMIT 10000", (did, did, now - 2 * WINDOWS["daily"])).fetchall()
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        try:
            entry = reading(json.loads(row["data"] or "null"), float(row["created_at"]))
        except ValueError:
            continue
        if entry is None or entry["window"] in found.get(row["sender_did"], {}):
            continue
        found.setdefault(row["sender_did"], {})[entry["window"]] = entry
    return {member: [e for w, e in sorted(windows.items(), key=lambda kv: kv[0] != "hourly") if in_force(e, now)]
            for member, windows in found.items()
            if any(in_force(e, now) for e in windows.values())}
