"""Osprey action envelopes, as another producer (a replay tool, an Osprey deployment) would write them."""
from __future__ import annotations

import itertools
import json
import random
from datetime import datetime, timezone
from pathlib import Path

_ids = itertools.count(random.randrange(1, 1 << 40) << 20)


def action(name: str, did: str, when: float, **data) -> dict:
    stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"send_time": stamp, "data": {"action_id": next(_ids), "action_name": name,
                                         "data": {"sender_did": did, **data}}}


def history(did: str, start: float, end: float, sends: int, delivered_share: float = 1.0,
            recipient_domain: str = "recipient.test") -> list[dict]:
    """`sends` single-recipient sends spread evenly over [start, end), each delivered (by share)."""
    out = []
    step = (end - start) / max(sends, 1)
    for i in range(sends):
        t = start + i * step
        rcpt = f"h{i}@{recipient_domain}"
        out.append(action("relay_attempt", did, t, message_id=f"<h{i}@replay>", recipients=[rcpt]))
        if i < sends * delivered_share:
            out.append(action("delivery_result", did, t + 1, message_id=f"<h{i}@replay>", recipient=rcpt,
                              status="delivered"))
    return out


def write_jsonl(path: Path, actions: list[dict]) -> Path:
    path.write_text("".join(json.dumps(a) + "\n" for a in actions))
    return path


def plc_did(n: int, prefix: str = "member") -> str:
    """A well-formed did:plc for test member number n (24 chars of a-z and 2-7)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digits = ""
    for _ in range(6):
        digits = alphabet[n % 32] + digits
        n //= 32
    return "did:plc:" + (prefix * 4)[:18] + digits
