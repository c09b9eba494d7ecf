"""When to try a deferred recipient again, and when to give up (`delivery.retryIntervals`, `maxAge`)."""
from __future__ import annotations


def next_attempt(attempts_done: int, created_at: float, now: float, intervals: tuple[float, ...],
                 max_age: float) -> float | None:
    """Time of the next attempt after `attempts_done` failures, or None when the message has expired.

    Intervals grow as configured and the last repeats; the final attempt is
    made at the deadline itself rather than skipped.
    """
    deadline = created_at + max_age
    if now >= deadline:
        return None
    interval = intervals[min(max(attempts_done, 1), len(intervals)) - 1]
    return min(now + interval, deadline)
