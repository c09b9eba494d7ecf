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
from functions.reputation import counting, events, verdicts
from runtime.context import LambdaContext


def records(event: dict, context: LambdaContext) -> list[dict[str, Any]]:
    """Decoded values of a Lambda Kafka-shaped batch; a value that is not a JSON object is logged and passed over."""
    out = []
    for batch in (event.get("records") or {}).values():
        for record in batch:
            try:
                value = json.loads(base64.b64decode(record.get("value") or ""))
            except (ValueError, RecursionError):
                value = None
            if isinstance(value, dict):
                out.append(value)
            else:
                context.logger.warning("results.malformed", topic=record.get("topic"),
                                       partition=record.get("partition"), offset=record.get("offset"))
    return out


def _strings(value: Any) -> list[str]:
    """A list of strings from a field another producer may have filled with anything."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _suspension_reason(result: dict) -> tuple[str, str, dict]:
    figures = result.get("RuleFigures")
    figures = figures if isinstance(figures, dict) else {}
    rule = next((r for r in _strings(result.get("RulesFired")) if r in figures), "")
    fired = figures.get(rule)
    fired = {str(k): v for k, v in fired.items() if isinstance(v, (int, float))} if isinstance(fired, dict) else {}
    shown = ", ".join(f"{k}={v:g}" for k, v in fired.items())
    return f"rule {rule or 'osprey'}: {shown}".strip(": "), rule, fired


def _count_daily(conn: sqlite3.Connection, did: str, name: str, data: dict, created: float) -> None:
    """The action's counts (functions/reputation/counting.py) onto the member's day for the activity chart."""
    columns = counting.daily_columns(counting.tally(name, data))
    if not did or not columns:
        return
    day = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%d")
    names = ", ".join(columns)
    sets = ", ".join(f"{col} = {col} + excluded.{col}" for col in columns)
    conn.execute(f"INSERT INTO member_daily_stats (did, day, {names}) VALUES (?, ?, {', '.join('?' * len(columns))})"
                 f" ON CONFLICT (did, day) DO UPDATE SET {sets}", (did, day, *columns.values()))


def apply(conn: sqlite3.Connection, context: LambdaContext, result: dict) -> bool:
    """Store one execution result and apply its effects; False when it was already applied."""
    try:
        action_id = int(result["__action_id"])
        if not events.fits_int64(action_id):
            raise ValueError("not an int64")
    except (KeyError, TypeError, ValueError, OverflowError):
        context.logger.warning("results.malformed", keys=sorted(result)[:20])
        return False
    data = result.get("ActionData")
    data = data if isinstance(data, dict) else {}
    did = str(result.get("SenderDid") or result.get("MemberDid") or data.get("sender_did") or "")
    name = str(result.get("ActionName") or result.get("action_name") or "")
    now = context.clock.now()
    created = counting.event_time(result.get("__timestamp"), now)
    result_verdicts = _strings(result.get("__verdicts"))
    mutations = _strings(result.get("__entity_label_mutations"))
    cur = conn.execute(
        "INSERT OR IGNORE INTO relay_events (action_id, sender_did, action_name, verdicts, label_mutations, raw,"
        " created_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (action_id, did, name, json.dumps(result_verdicts), json.dumps(mutations),
         json.dumps(result, separators=(",", ":"), sort_keys=True), created, now))
    if cur.rowcount == 0:
        return False
    _count_daily(conn, did, name, data, created)
    member = conn.execute("SELECT status FROM members WHERE did = ?", (did,)).fetchone() if did else None
    if member is None:
        return True
    for mutation in mutations:
        parsed = verdicts.parse_label_mutation(mutation)
        if parsed is None:
            continue
        label, add = parsed
        reason = f"rules: {', '.join(_strings(result.get('RulesFired'))) or 'osprey'}"
        if labels.apply(conn, did, label, add, "rules", reason, now):
            change = "added" if add else "removed"
            events.emit(conn, context, "label_changed",
                        {"sender_did": did, "label": label, "status": change, "source": "rules"})
            context.logger.info("label.changed", did=did, label=label, status=change, action_id=action_id)
            publish(conn, context, did, label, add)
    # A member_suspended result only records the suspension; acting on it again could undo a reactivation.
    if verdicts.SUSPEND_VERDICT in result_verdicts and member["status"] != "suspended" and name != "member_suspended":
        reason, rule, figures = _suspension_reason(result)
        registry.suspend(conn, context, did, reason, actor="rules", rule=rule, figures=figures)
        context.logger.warning("member.suspended_by_rule", did=did, rule=rule, figures=figures, action_id=action_id)
    return True


def handler(event: dict, context: LambdaContext) -> dict:
    applied = 0
    with context.store.transaction() as conn:
        for result in records(event, context):
            applied += apply(conn, context, result)
    return {"applied": applied}
