"""When a member's caps let a message leave: the decision behind holding instead of refusing.

Each recipient counts once, in the `send_counters` buckets of the time
its message is released (a held message reserves its place in the
future). The hourly window at time t is the minute buckets in
(t - 60 min, t], the daily window the hour buckets in (t - 24 h, t], the
same windows `limits.standing` reads. A message is never released before
one that arrived earlier, so every reservation lies at or before the
release time being sought, and only the windows ending there can overflow.
"""
from __future__ import annotations

from dataclasses import dataclass

MINUTE, HOUR = 60, 3600
HOUR_MINUTES, DAY_HOURS = 60, 24


@dataclass
class Usage:
    """Recipients counted per minute bucket (last hour and later) and per hour bucket (last day and later)."""

    minutes: dict[int, int]
    hours: dict[int, int]

    def hour_at(self, t: float) -> int:
        top = int(t // MINUTE)
        return sum(n for bucket, n in self.minutes.items() if top - HOUR_MINUTES < bucket <= top)

    def day_at(self, t: float) -> int:
        top = int(t // HOUR)
        return sum(n for bucket, n in self.hours.items() if top - DAY_HOURS < bucket <= top)

    def add(self, t: float, count: int) -> None:
        for buckets, bucket in ((self.minutes, int(t // MINUTE)), (self.hours, int(t // HOUR))):
            buckets[bucket] = buckets.get(bucket, 0) + count

    def last_reserved(self, now: float) -> float:
        """The start of the latest minute holding a reservation after `now`, else `now`."""
        return max([now, *(bucket * MINUTE for bucket in self.minutes if bucket * MINUTE > now)])


def release_at(usage: Usage, hourly: int, daily: int, adding: int, now: float) -> float | None:
    """The earliest time >= now (and >= every reservation) at which `adding` recipients fit both caps.

    None when they never fit: more recipients than a cap allows at all.
    Candidates are the start and each moment a counted bucket leaves its
    window; between two candidates usage only grows, so no other time can
    be earlier and fit.
    """
    if adding > hourly or adding > daily:
        return None
    start = usage.last_reserved(now)
    candidates = {start}
    candidates.update((b + HOUR_MINUTES) * MINUTE for b in usage.minutes if (b + HOUR_MINUTES) * MINUTE > start)
    candidates.update((b + DAY_HOURS) * HOUR for b in usage.hours if (b + DAY_HOURS) * HOUR > start)
    for t in sorted(candidates):
        if usage.hour_at(t) + adding <= hourly and usage.day_at(t) + adding <= daily:
            return t
    return None


def plan(usage: Usage, hourly: int, daily: int, messages: list[int], now: float) -> list[float]:
    """Release times for messages (recipient counts, in arrival order), each reserved before the next.

    A message that can never fit under the present caps (they were lowered
    after it was accepted) leaves with the one before it: it got its 250.
    """
    times = []
    for count in messages:
        t = release_at(usage, hourly, daily, count, now)
        if t is None:
            t = usage.last_reserved(now)
        usage.add(t, count)
        times.append(t)
    return times
