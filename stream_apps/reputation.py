"""A member's reputation as plain data: counters in hour and day buckets, folded from its events.

`apply` is a pure function (state, action) -> state, the same in the
in-process runner and in the Faust worker; time is the action's own
`send_time`, so replaying a stream gives the same answers as living it.
Recently seen action ids are kept so an event delivered twice (Kafka is at
least once) is counted once.
"""
from __future__ import annotations

from typing import Any

from functions.reputation import counting

HOURS_KEPT = 48
DAYS_KEPT = 31
SEEN_KEPT = 512


def empty(did: str) -> dict[str, Any]:
    return {"did": did, "status": "unknown", "approved_at": None, "labels": [], "hours": {}, "days": {},
            "seen": [], "first_event_at": None, "last_event_at": None}


def _bump(state: dict, when: float, counter: str, amount: int = 1) -> None:
    """Bucket dicts are replaced, never changed in place: they may be shared with the state we were given."""
    for scale, key in ((3600, "hours"), (86400, "days")):
        bucket = str(int(when // scale))
        slot = dict(state[key].get(bucket) or {})
        slot[counter] = slot.get(counter, 0) + amount
        state[key][bucket] = slot


def _trim(state: dict, when: float) -> None:
    oldest_hour, oldest_day = int(when // 3600) - HOURS_KEPT, int(when // 86400) - DAYS_KEPT
    state["hours"] = {k: v for k, v in state["hours"].items() if int(k) > oldest_hour}
    state["days"] = {k: v for k, v in state["days"].items() if int(k) > oldest_day}


def already_seen(state: dict, action_id: int) -> bool:
    return action_id in state.get("seen", ())


def apply(state: dict[str, Any], action_id: int, name: str, data: dict[str, Any], when: float) -> dict[str, Any]:
    """The state after one action; the input is not modified (only what changes is copied)."""
    state = {**state, "hours": dict(state.get("hours") or {}), "days": dict(state.get("days") or {})}
    state["seen"] = (state.get("seen", []) + [action_id])[-SEEN_KEPT:]
    state["last_event_at"] = max(when, state.get("last_event_at") or when)
    state["first_event_at"] = min(when, state.get("first_event_at") or when)
    for counter, amount in counting.tally(name, data).items():
        _bump(state, when, counter, amount)
    if name == "member_approved":
        state["status"] = "active"
        state["approved_at"] = state.get("approved_at") or when
    elif name == "member_reactivated":
        state["status"] = "active"
        state["approved_at"] = state.get("approved_at") or when
    elif name == "member_suspended":
        state["status"] = "suspended"
    elif name == "member_enrolled":
        state["status"] = state.get("status") if state.get("status") != "unknown" else "pending"
    elif name == "label_changed":
        labels = set(state.get("labels", []))
        (labels.add if data.get("status") == "added" else labels.discard)(str(data.get("label")))
        state["labels"] = sorted(labels)
    _trim(state, when)
    return state


def _window(buckets: dict[str, dict], current: int, span: int, counter: str, fraction: float) -> float:
    """Sliding-window estimate: the current `span` buckets, plus the share of the one before still in range."""
    total = 0.0
    for key, counts in buckets.items():  # only the buckets that exist: most members have a few
        age = current - int(key)
        if 0 <= age < span:
            total += counts.get(counter, 0)
        elif age == span:
            total += counts.get(counter, 0) * (1.0 - fraction)
    return total


def figures(state: dict[str, Any], now: float) -> dict[str, float]:
    """The metrics rules are written in (see functions/reputation/policy.py METRICS)."""
    hour, day = int(now // 3600), int(now // 86400)
    hour_frac, day_frac = (now % 3600) / 3600, (now % 86400) / 86400
    hours, days = state.get("hours", {}), state.get("days", {})

    def h(counter: str, span: int) -> float:
        return _window(hours, hour, span, counter, hour_frac)

    def d(counter: str, span: int) -> float:
        return _window(days, day, span, counter, day_frac)

    f: dict[str, float] = {
        "sends_1h": h("sends", 1), "sends_24h": h("sends", 24),
        "sends_7d": d("sends", 7), "sends_30d": d("sends", 30),
        "deliveries_7d": d("delivered", 7), "deliveries_30d": d("delivered", 30),
        "hard_bounces_7d": d("hard", 7), "hard_bounces_30d": d("hard", 30), "soft_bounces_7d": d("soft", 7),
        "complaints_7d": d("complaints", 7), "complaints_30d": d("complaints", 30),
        "rejections_24h": h("rejections", 24), "deferrals_24h": h("deferred", 24),
    }
    approved = state.get("approved_at")
    f["days_active"] = max(0.0, (now - approved) / 86400) if approved else 0.0
    f["complaint_rate_7d"] = f["complaints_7d"] / max(f["deliveries_7d"], 1.0)
    f["complaint_rate_30d"] = f["complaints_30d"] / max(f["deliveries_30d"], 1.0)
    f["hard_bounce_rate_7d"] = f["hard_bounces_7d"] / max(f["sends_7d"], 1.0)
    f["bounce_rate_30d"] = (f["hard_bounces_30d"] + d("soft", 30)) / max(f["sends_30d"], 1.0)
    since = min(t for t in (approved, state.get("first_event_at"), now) if t is not None)
    active_hours = min(7 * 24.0, max(1.0, (now - since) / 3600))
    f["trailing_hourly_avg_7d"] = f["sends_7d"] / active_hours
    f["burst_ratio"] = f["sends_1h"] / max(f["trailing_hourly_avg_7d"], 1.0)
    return {k: round(v, 6) for k, v in f.items()}
