"""Warm-up tiers and sending limits, checked at RCPT and enforced exactly at DATA.

A member's caps are its own hourly/daily limits, lowered by the tier its
age since approval puts it in (runbook section 5: tier caps compose with
min() and never raise a member's limit). `highly_trusted` skips the tiers;
`burst_warming` halves the hourly cap. Usage is counted in
`send_counters` (minute buckets for the last hour, hour buckets for the last
day) inside the same transaction that adds the new message, so concurrent
sessions cannot overshoot and a restart forgets nothing.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from functions.reputation import policy
from runtime.context import LambdaContext


@dataclass(frozen=True)
class Caps:
    tier: str
    hourly: int
    daily: int
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    window: str
    cap: int
    used: int
    tier: str

    @property
    def text(self) -> str:
        return (f"{self.window} sending limit reached ({self.used}/{self.cap}, tier {self.tier}); "
                "try again later")


def caps_for(member: sqlite3.Row, member_labels: set[str], pol: policy.Policy, default_hourly: int,
             default_daily: int, now: float) -> Caps:
    own_hourly = member["hourly_limit"] if member["hourly_limit"] is not None else default_hourly
    own_daily = member["daily_limit"] if member["daily_limit"] is not None else default_daily
    warming = pol.warming
    tier_name, hourly, daily = "warmed", own_hourly, own_daily
    if warming.trustedLabel not in member_labels:
        age_days = (now - (member["approved_at"] or now)) / 86400
        for tier in warming.tiers:
            if age_days < tier.maxAgeDays:
                tier_name, hourly, daily = tier.name, min(tier.hourly, own_hourly), min(tier.daily, own_daily)
                break
    else:
        tier_name = "trusted"
    if warming.burstLabel in member_labels:
        hourly = int(hourly * warming.burstFactor)
    return Caps(tier_name, hourly, daily, tuple(sorted(member_labels)))


def record(conn: sqlite3.Connection, did: str, recipients: int, now: float) -> None:
    for granularity, bucket in (("m", int(now // 60)), ("h", int(now // 3600))):
        conn.execute(
            "INSERT INTO send_counters (did, granularity, bucket, count) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (did, granularity, bucket) DO UPDATE SET count = count + excluded.count",
            (did, granularity, bucket, recipients))


def prune(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute(
        "DELETE FROM send_counters WHERE (granularity = 'm' AND bucket <= ?) OR (granularity = 'h' AND bucket <= ?)",
        (int(now // 60) - 61, int(now // 3600) - 25)).rowcount


# Caps and usage in one statement: check runs at every RCPT and again inside the DATA
# transaction, and each statement is a round trip through SQLite for the session's thread.
_STANDING = (
    "SELECT m.hourly_limit, m.daily_limit, m.approved_at,"
    " (SELECT group_concat(val, char(31)) FROM labels.member_labels WHERE uri = m.did) AS labels,"
    " (SELECT COALESCE(SUM(count), 0) FROM send_counters"
    "  WHERE did = m.did AND granularity = 'm' AND bucket > ?) AS hour,"
    " (SELECT COALESCE(SUM(count), 0) FROM send_counters"
    "  WHERE did = m.did AND granularity = 'h' AND bucket > ?) AS day"
    " FROM members m WHERE m.did = ?")


def standing(conn: sqlite3.Connection, context: LambdaContext, did: str) -> tuple[Caps, int, int] | None:
    """The member's caps now, and recipients accepted in the last 60 minutes and 24 hours."""
    now = context.clock.now()
    row = conn.execute(_STANDING, (int(now // 60) - 60, int(now // 3600) - 24, did)).fetchone()
    if row is None:
        return None
    settings = context.settings
    member_labels = set(row["labels"].split("\x1f")) if row["labels"] else set()
    caps = caps_for(row, member_labels, policy.load(settings.rulesFile), settings.limits.hourly,
                    settings.limits.daily, now)
    return caps, int(row["hour"]), int(row["day"])


def check(conn: sqlite3.Connection, context: LambdaContext, did: str, adding: int) -> Verdict | None:
    """None when `adding` more recipients fit in the member's caps, else what was exceeded."""
    found = standing(conn, context, did)
    if found is None:
        return None
    caps, hour, day = found
    if hour + adding > caps.hourly:
        return Verdict("hourly", caps.hourly, hour, caps.tier)
    if day + adding > caps.daily:
        return Verdict("daily", caps.daily, day, caps.tier)
    return None
