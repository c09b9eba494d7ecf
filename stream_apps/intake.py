"""What the stream apps take from `osprey.actions_input`, and the dead letter of an action they cannot read.

Any producer may write the topic (an Osprey deployment, a replay tool, a
buggy client), so a record is read as attacker-written: an action that is not
JSON, not an Osprey envelope, or not what our schema says its name carries is
refused with the reason. Both apps keep the refused record whole on
`osprey.actions_rejected`, which `rejected-actions` stores for the operator:
dropping it would lose the only trace of what the producer sent.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from functions.reputation import events
from functions.reputation.policy import Policy
from stream_apps import rules

RAW_KEPT = 64 * 1024


class Rejected(Exception):
    def __init__(self, reason: str, action_id: int | None = None, action_name: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.action_id = action_id
        self.action_name = action_name


def _decoded(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # nesting deep enough to exhaust the parser's stack is not JSON to us
        raise Rejected(f"not JSON: {exc!r}"[:500]) from None


def _named(value: Any) -> tuple[int | None, str]:
    """Whatever action id and name can be read from a record that failed the checks, for the operator."""
    inner = value.get("data") if isinstance(value, dict) else None
    if not isinstance(inner, dict):
        return None, ""
    try:
        action_id = int(inner.get("action_id"))
    except (TypeError, ValueError, OverflowError):
        action_id = None
    if action_id is not None and not events.fits_int64(action_id):
        action_id = None
    name = inner.get("action_name")
    return action_id, name if isinstance(name, str) else ""


def process(policy: Policy, raw: bytes | str, state_of: Callable[[str], dict | None],
            arrival: float) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(member DID, new state, execution result) of one raw action; `Rejected` says why there is none."""
    value = _decoded(raw)
    try:
        events.admit(value)
    except events.EventError as exc:
        raise Rejected(str(exc), *_named(value)) from None
    did = value["data"]["data"]["sender_did"]
    try:
        state, result = rules.process(policy, state_of(did), value, arrival)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Rejected(f"the rules could not read it: {exc!r}", *_named(value)) from None
    return did, state, result


def dead_letter(raw: bytes | str, rejected: Rejected, origin: str, rejected_by: str, when: float) -> dict[str, Any]:
    """The record kept on `osprey.actions_rejected`: the reason and the action as it arrived."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return {"reason": rejected.reason, "action_id": rejected.action_id, "action_name": rejected.action_name,
            "raw": text[:RAW_KEPT], "truncated": len(text) > RAW_KEPT, "origin": origin,
            "rejected_by": rejected_by, "rejected_at": events.rfc3339(when)}
