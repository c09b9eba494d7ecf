"""`subscribe-labels`: com.atproto.label.subscribeLabels, polled by the platform's WebSocket listener.

Each call gets the connection's query string and the `state` the previous
call returned, and answers the frames to send next (see
functions/labeling/label_stream.py).
"""
from __future__ import annotations

from functions.labeling import label_stream
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    conn = context.store.connection()
    state = event.get("state")
    if not isinstance(state, dict) or not isinstance(state.get("cursor"), int):
        return label_stream.opening(conn, event.get("rawQueryString") or "")
    return label_stream.following(conn, state["cursor"])
