"""`replay`: actions from elsewhere (an Osprey deployment's history, a replay tool) onto our stream.

Each action must be an Osprey envelope naming the member (`sender_did`);
known action names are validated against our schemas. They are appended to
`osprey.actions_input` exactly as our own events are, so the same rules
count them; duplicates of an action id already counted are ignored there.
"""
from __future__ import annotations

from functions.reputation import events
from runtime import replies
from runtime.context import LambdaContext
from runtime.errors import RelayError


class ReplayRefused(RelayError):
    def __init__(self, message: str) -> None:
        super().__init__(replies.REPLAY_REFUSED.format(detail=message), detail=message)


def handler(event: dict, context: LambdaContext) -> dict:
    actions = event.get("actions")
    if not isinstance(actions, list):
        raise ReplayRefused("expected {\"actions\": [<Osprey action envelope>, ...]}")
    checked = []
    for index, envelope in enumerate(actions):
        try:
            action_id, name, data, send_time = events.parse_action(envelope)
        except events.EventError as exc:
            raise ReplayRefused(f"action {index}: {exc}") from None
        if not data.get("sender_did"):
            raise ReplayRefused(f"action {index} ({name}): data.sender_did is required")
        if name in events.SCHEMAS:
            try:
                events.envelope(name, data, 0, action_id)
            except events.EventError as exc:
                raise ReplayRefused(f"action {index}: {exc}") from None
        checked.append((str(data["sender_did"]), envelope))
    with context.store.transaction() as conn:
        for did, envelope in checked:
            context.bus.publish(conn, events.ACTIONS_TOPIC, did, envelope)
    return {"published": len(checked)}
