"""What each event counts for: the one definition the reputation state and the activity chart share.

The stream apps fold these counters into a member's hour and day buckets
(the figures the rules are written in); `apply-results` adds the same
counters, under the chart's column names, to `member_daily_stats`. An
operator who reads "soft bounces" on one and "bounced" on the other is
reading the same counts.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

COUNTERS = ("sends", "delivered", "deferred", "failed", "hard", "soft", "complaints", "rejections")

# The chart's columns of member_daily_stats and the counters each one adds up.
DAILY_COLUMNS: dict[str, tuple[str, ...]] = {
    "sent": ("sends",), "delivered": ("delivered",), "deferred": ("deferred",), "failed": ("failed",),
    "bounced": ("hard", "soft"), "complained": ("complaints",), "rejected": ("rejections",),
}

_DELIVERY = {
    "delivered": {"delivered": 1},
    "deferred": {"deferred": 1},
    "failed": {"failed": 1},
    # The relay gave up on temporary failures: no bounce report will come for it, so it is also the soft bounce.
    "expired": {"failed": 1, "soft": 1},
}


def tally(action_name: str, data: dict[str, Any]) -> dict[str, int]:
    """The counters one action adds (empty for actions that count nothing).

    Total over any data: results from other producers reach `apply-results` unchecked.
    """
    if action_name == "relay_attempt":
        recipients = data.get("recipients")
        return {"sends": max(1, len(recipients)) if isinstance(recipients, list) else 1}
    if action_name == "delivery_result":
        return dict(_DELIVERY.get(str(data.get("status")), {}))
    if action_name == "bounce_received":
        return {"hard" if data.get("kind") == "hard" else "soft": 1}
    if action_name == "complaint_received":
        return {"complaints": 1}
    if action_name == "relay_rejected":
        return {"rejections": 1}
    return {}


def daily_columns(counts: dict[str, int]) -> dict[str, int]:
    """The same counts under member_daily_stats' column names (columns with nothing to add left out)."""
    out = {column: sum(counts.get(c, 0) for c in counters) for column, counters in DAILY_COLUMNS.items()}
    return {column: n for column, n in out.items() if n}


def event_time(value: Any, default: float) -> float:
    """Seconds since the epoch of an event's stamp: RFC 3339, or a number of seconds or milliseconds.

    Producers other than ours write either; a stamp we cannot read is the default (the arrival time).
    """
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return float(value) / (1000 if value > 1e11 else 1)
    if not value:
        return default
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
