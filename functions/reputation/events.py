"""The relay's events: one marshmallow schema per action, sent in Osprey's envelope.

`emit` validates the data, wraps it as Osprey expects on
`osprey.actions_input` ({"send_time", "data": {"action_id", "action_name",
"data"}}) and appends it to the outbox in the caller's transaction, keyed by
the member's DID so each member's events stay in order on every partition.
"""
from __future__ import annotations

import secrets
import sqlite3
from datetime import datetime, timezone
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from runtime.context import LambdaContext

# Osprey's topics (docs/contract.md): what happened in, what the rules made of it out.
ACTIONS_TOPIC = "osprey.actions_input"
RESULTS_TOPIC = "osprey.execution_results"
# Ours: actions the stream apps could not read, kept whole for the operator (dead letters).
REJECTED_TOPIC = "osprey.actions_rejected"


class _Event(Schema):
    class Meta:
        unknown = INCLUDE

    sender_did = fields.String(required=True, validate=validate.Length(min=1))


class RelayAttempt(_Event):
    message_id = fields.String(required=True)
    queue_id = fields.String(load_default="")
    recipients = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    member_domain = fields.String(load_default="")
    size = fields.Integer(load_default=0)
    # Over a cap the message is held (issue 14): when the caps let it leave; None when it left at once.
    held_until = fields.Float(load_default=None, allow_none=True)


class RelayRejected(_Event):
    reject_reason = fields.String(required=True)
    detail = fields.String(load_default="")
    recipient = fields.String(load_default="")
    recipients = fields.List(fields.String(), load_default=list)


class DeliveryResult(_Event):
    message_id = fields.String(required=True)
    queue_id = fields.String(load_default="")
    recipient = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["delivered", "deferred", "failed", "expired"]))
    mx = fields.String(load_default="")
    smtp_code = fields.Integer(load_default=None, allow_none=True)
    smtp_status = fields.String(load_default="")
    smtp_text = fields.String(load_default="")
    attempt = fields.Integer(load_default=1)


class BounceReceived(_Event):
    recipient = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["hard", "soft"]))
    status = fields.String(required=True)
    reason = fields.String(load_default="")
    message_id = fields.String(load_default="")
    source = fields.String(load_default="dsn")


class ComplaintReceived(_Event):
    recipient = fields.String(required=True)
    feedback_type = fields.String(required=True)
    message_id = fields.String(load_default="")
    user_agent = fields.String(load_default="")


class MemberLifecycle(_Event):
    reason = fields.String(load_default="")
    actor = fields.String(load_default="")


class MemberSuspended(MemberLifecycle):
    rule = fields.String(load_default="")
    figures = fields.Dict(load_default=dict)


class LabelChanged(_Event):
    label = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["added", "removed"]))
    source = fields.String(load_default="")


class MemberAtCap(_Event):
    window = fields.String(required=True, validate=validate.OneOf(["hourly", "daily"]))
    cap = fields.Integer(load_default=0)
    used = fields.Integer(load_default=0)
    tier = fields.String(load_default="")
    outcome = fields.String(required=True, validate=validate.OneOf(["held", "refused"]))
    until = fields.Float(load_default=None, allow_none=True)


class QueuePurged(_Event):
    actor = fields.String(load_default="")
    queued = fields.Integer(load_default=0)
    held = fields.Integer(load_default=0)
    frozen = fields.Integer(load_default=0)


class DomainProof(_Event):
    domain = fields.String(required=True)
    reason = fields.String(load_default="")


class SuppressionRemoved(_Event):
    recipient = fields.String(required=True)
    reason = fields.String(load_default="")
    source = fields.String(load_default="")
    actor = fields.String(load_default="")


class PoolBlock(_Event):
    """A provider refusing the pool's mail (`sender_did`: the member whose mail it refused last)."""
    provider = fields.String(required=True)
    reason = fields.String(load_default="")
    status = fields.String(load_default="")
    reply = fields.String(load_default="")
    recipient = fields.String(load_default="")
    since = fields.Float(load_default=None, allow_none=True)
    source = fields.String(load_default="")


SCHEMAS: dict[str, type[Schema]] = {
    "relay_attempt": RelayAttempt,
    "relay_rejected": RelayRejected,
    "delivery_result": DeliveryResult,
    "bounce_received": BounceReceived,
    "complaint_received": ComplaintReceived,
    "member_enrolled": MemberLifecycle,
    "member_approved": MemberLifecycle,
    "member_suspended": MemberSuspended,
    "member_reactivated": MemberLifecycle,
    "member_keys_rotated": MemberLifecycle,
    "label_changed": LabelChanged,
    "member_at_cap": MemberAtCap,
    "queue_purged": QueuePurged,
    "domain_verified": DomainProof,
    "domain_unverified": DomainProof,
    "suppression_removed_by_member": SuppressionRemoved,
    "pool_blocked": PoolBlock,
    "pool_unblocked": PoolBlock,
}


# One instance per action: building a schema costs more than loading an event with it, and load() keeps no state.
_LOADERS: dict[str, Schema] = {name: schema() for name, schema in SCHEMAS.items()}


class EventError(ValueError):
    pass


def new_action_id(when: float) -> int:
    """Snowflake-style: milliseconds in the high bits, 22 random bits below; fits int64."""
    return (int(when * 1000) << 22) | secrets.randbits(22)


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(action_name: str, data: dict[str, Any], when: float, action_id: int | None = None) -> dict[str, Any]:
    loader = _LOADERS.get(action_name)
    if loader is None:
        raise EventError(f"no schema for action {action_name!r}")
    try:
        clean = loader.load(data)
    except ValidationError as exc:
        raise EventError(f"{action_name}: {exc.messages}") from exc
    return {
        "send_time": rfc3339(when),
        "data": {"action_id": action_id or new_action_id(when), "action_name": action_name, "data": clean},
    }


def emit(conn: sqlite3.Connection, context: LambdaContext, action_name: str, data: dict[str, Any],
         when: float | None = None) -> int:
    """Validate and append one action to the outbox inside the caller's transaction."""
    when = context.clock.now() if when is None else when
    message = envelope(action_name, data, when)
    context.bus.publish(conn, ACTIONS_TOPIC, data["sender_did"], message)
    return message["data"]["action_id"]


def parse_action(value: dict[str, Any]) -> tuple[int, str, dict[str, Any], str]:
    """(action_id, action_name, data, send_time) of an envelope from any producer."""
    try:
        inner = value["data"]
        action_id = int(inner["action_id"])
        name = str(inner["action_name"])
        data = dict(inner.get("data") or {})
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise EventError(f"not an Osprey action envelope: {exc!r}") from exc
    if not fits_int64(action_id):
        raise EventError(f"action_id {action_id} is not a 64-bit integer")
    return action_id, name, data, str(value.get("send_time") or "")


def fits_int64(number: int) -> bool:
    """Osprey's action ids are int64, and so are SQLite's integers: a bigger one would fail every insert."""
    return -(1 << 63) <= number < (1 << 63)


def admit(value: Any) -> tuple[int, str, dict[str, Any], str]:
    """`parse_action`, then the checks the rules rely on: a sender, and our schema for the actions we know.

    Actions come from any producer on the topic; one the rules cannot read is refused here, with
    the reason, instead of failing somewhere inside them.
    """
    if not isinstance(value, dict):
        raise EventError(f"not an Osprey action envelope: a JSON {type(value).__name__}")
    action_id, name, data, send_time = parse_action(value)
    if not isinstance(data.get("sender_did"), str) or not data["sender_did"]:
        raise EventError(f"{name}: data.sender_did must be a non-empty string")
    loader = _LOADERS.get(name)
    if loader is not None and not _plainly_valid(_PLAIN_CHECKS.get(name), data):
        try:
            loader.load(data)
        except ValidationError as exc:
            raise EventError(f"{name}: {exc.messages}") from exc
    return action_id, name, data, send_time


# Loading with marshmallow costs more than the rules' whole step for an action, and every action on the topic
# is checked. Data that plainly satisfies the schema (exact JSON types, choices, minimum lengths) skips the
# load; anything else, or a schema using more than that, gets the full load and its messages.
_JSON_TYPES = {fields.String: str, fields.Integer: int, fields.Dict: dict, fields.List: list}


def _plain_checks(schema: Schema) -> tuple | None:
    checks = []
    for name, field in schema.fields.items():
        kind = _JSON_TYPES.get(type(field))
        inner = _JSON_TYPES.get(type(field.inner)) if isinstance(field, fields.List) else None
        if kind is None or (isinstance(field, fields.List) and inner is None):
            return None
        choices, min_length = None, None
        for validator in field.validators:
            if isinstance(validator, validate.OneOf):
                choices = frozenset(validator.choices)
            elif isinstance(validator, validate.Length) and validator.max is None and validator.equal is None:
                min_length = validator.min or 0
            else:
                return None
        checks.append((field.data_key or name, field.required, field.allow_none, kind, inner, choices, min_length))
    return tuple(checks)


def _plainly_valid(checks: tuple | None, data: dict[str, Any]) -> bool:
    if checks is None:
        return False
    for key, required, allow_none, kind, inner, choices, min_length in checks:
        if key not in data:
            if required:
                return False
            continue
        value = data[key]
        if value is None:
            if not allow_none:
                return False
            continue
        if type(value) is not kind or (inner is not None and any(type(v) is not inner for v in value)):
            return False
        if (choices is not None and value not in choices) or (min_length is not None and len(value) < min_length):
            return False
    return True


_PLAIN_CHECKS: dict[str, tuple | None] = {name: _plain_checks(loader) for name, loader in _LOADERS.items()}
