"""`apply-results`: the rules' verdicts come home (stream trigger on `osprey.execution_results`).

Each result is stored once in `relay_events` (idempotent on `__action_id`,
whoever produced it: our stream apps, an Osprey deployment, a replay) and
its effects applied in the same transaction: label mutations, a
`suspend_member` verdict, and the member's daily activity counters that the
admin pages chart.
"""
from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

from functions.labeling.publication import publish
from functions.members import labels, registry
from functions.reputation import events
from runtime.context import LambdaContext

SUSPEND_VERDICT = "suspend_member"
# Osprey's LabelStatus: 0 added, 1 removed, 2 manually added, 3 manually removed; words accepted too.
_LABEL_STATUS = {"0": True, "2": True, "added": True, "1": False, "3": False, "removed": False}
_STAT_COLUMNS = {"sent", "delivered", "deferred", "failed", "bounced", "complained", "rejected"}


def records(event: dict) -> list[dict[str, Any]]:
    """Decoded values of a Lambda Kafka-shaped batch."""
    out = []
    for batch in (event.get("records") or {}).values():
        for record in batch:
            raw = base64.b64decode(record.get("value") or "")
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _epoch(stamp: Any, default: float) -> float:
    if isinstance(stamp, (int, float)):
        return float(stamp) / (1000 if stamp > 1e11 else 1)
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _stat_increments(name: str, data: dict) -> dict[str, int]:
    if name == "relay_attempt":
        return {"sent": max(1, len(data.get("recipients") or []))}
    if name == "delivery_result" and data.get("status") in ("delivered", "deferred", "failed", "expired"):
        return {"failed" if data["status"] == "expired" else data["status"]: 1}
    if name == "bounce_received":
        return {"bounced": 1}
    if name == "complaint_received":
        return {"complained": 1}
    if name == "relay_rejected":
        return {"rejected": 1}
    return {}


def _suspension_reason(result: dict) -> tuple[str, str, dict]:
    figures = result.get("RuleFigures") or {}
    rule = next((r for r in result.get("RulesFired") or [] if r in figures), "")
    shown = ", ".join(f"{k}={v:g}" for k, v in (figures.get(rule) or {}).items())
    return f"rule {rule or 'osprey'}: {shown}".strip(": "), rule, figures.get(rule) or {}


def apply(conn: sqlite3.Connection, context: LambdaContext, result: dict) -> bool:
    """Store one execution result and apply its effects; False when it was already applied."""
    try:
        action_id = int(result["__action_id"])
    except (KeyError, TypeError, ValueError):
        context.logger.warning("results.malformed", keys=sorted(result)[:20])
        return False
    data = result.get("ActionData") or {}
    did = str(result.get("SenderDid") or result.get("MemberDid") or data.get("sender_did") or "")
    name = str(result.get("ActionName") or result.get("action_name") or "")
    now = context.clock.now()
    created = _epoch(result.get("__timestamp"), now)
    verdicts = [str(v) for v in result.get("__verdicts") or []]
    mutations = [str(m) for m in result.get("__entity_label_mutations") or []]
    cur = conn.execute(
        "INSERT OR IGNORE INTO relay_events (action_id, sender_did, action_name, verdicts, label_mutations, raw,"
        " created_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (action_id, did, name, json.dumps(verdicts), json.dumps(mutations),
         json.dumps(result, separators=(",", ":"), sort_keys=True), created, now))
    if cur.rowcount == 0:
        return False
    increments = _stat_increments(name, data)
    if did and increments:
        day = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%d")
        sets = ", ".join(f"{col} = {col} + excluded.{col}" for col in increments if col in _STAT_COLUMNS)
        cols = ", ".join(increments)
        conn.execute(f"INSERT INTO member_daily_stats (did, day, {cols}) VALUES (?, ?, {', '.join('?' * len(increments))})"
                     f" ON CONFLICT (did, day) DO UPDATE SET {sets}", (did, day, *increments.values()))
    member = conn.execute("SELECT status FROM members WHERE did = ?", (did,)).fetchone() if did else None
    if member is None:
        return True
    for mutation in mutations:
        entity, _, rest = mutation.partition("/")
        label, _, status = rest.rpartition("/")
        if entity != "MemberDid" or not label or status not in _LABEL_STATUS:
            continue
        add = _LABEL_STATUS[status]
        reason = f"rules: {', '.join(result.get('RulesFired') or []) or 'osprey'}"
        if labels.apply(conn, did, label, add, "rules", reason, now):
            change = "added" if add else "removed"
            events.emit(conn, context, "label_changed",
                        {"sender_did": did, "label": label, "status": change, "source": "rules"})
            context.logger.info("label.changed", did=did, label=label, status=change, action_id=action_id)
            publish(conn, context, did, label, add)
    # A member_suspended result only records the suspension; acting on it again could undo a reactivation.
    if SUSPEND_VERDICT in verdicts and member["status"] != "suspended" and name != "member_suspended":
        reason, rule, figures = _suspension_reason(result)
        registry.suspend(conn, context, did, reason, actor="rules", rule=rule, figures=figures)
        context.logger.warning("member.suspended_by_rule", did=did, rule=rule, figures=figures, action_id=action_id)
    return True


def handler(event: dict, context: LambdaContext) -> dict:
    applied = 0
    with context.store.transaction() as conn:
        for result in records(event):
            applied += apply(conn, context, result)
    return {"applied": applied}
