"""atproto labels and event-stream frames as bytes and JSON: the wire forms, nothing stored.

A label is signed over the DAG-CBOR encoding of every field but `sig`,
with `neg` present only on a negation (as Ozone and the atproto spec do),
so any atproto implementation re-encoding it gets the same bytes.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any, Callable

import libipld


def timestamp(now: float) -> str:
    """atproto datetime: UTC, milliseconds, Z."""
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unsigned(src: str, uri: str, val: str, neg: bool, cts: str) -> dict[str, Any]:
    label: dict[str, Any] = {"ver": 1, "src": src, "uri": uri, "val": val, "cts": cts}
    if neg:
        label["neg"] = True
    return label


def signed(label: dict[str, Any], sign: Callable[[bytes], bytes]) -> dict[str, Any]:
    return {**label, "sig": sign(libipld.encode_dag_cbor(label))}


def from_row(row: Any) -> dict[str, Any]:
    """A stored label (a `labels.signed_labels` row) with `sig` as bytes."""
    label = unsigned(row["src"], row["uri"], row["val"], bool(row["neg"]), row["cts"])
    if row["exp"]:
        label["exp"] = row["exp"]
    label["sig"] = bytes(row["sig"])
    return label


def as_json(label: dict[str, Any]) -> dict[str, Any]:
    """atproto's JSON form: bytes as {"$bytes": base64 without padding}."""
    return {**label, "sig": {"$bytes": base64.b64encode(label["sig"]).decode().rstrip("=")}}


def message_frame(kind: str, body: dict[str, Any]) -> bytes:
    """An event-stream message: header {op: 1, t: "#kind"} then the body, both DAG-CBOR."""
    return libipld.encode_dag_cbor({"op": 1, "t": f"#{kind}"}) + libipld.encode_dag_cbor(body)


def labels_frame(seq: int, labels: list[dict[str, Any]]) -> bytes:
    return message_frame("labels", {"seq": seq, "labels": labels})


def info_frame(name: str, message: str) -> bytes:
    return message_frame("info", {"name": name, "message": message})


def error_frame(error: str, message: str) -> bytes:
    """An event-stream error: header {op: -1}; the server closes the connection after it."""
    return libipld.encode_dag_cbor({"op": -1}) + libipld.encode_dag_cbor({"error": error, "message": message})
