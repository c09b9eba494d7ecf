"""Warm-up tiers and sending limits, checked at RCPT and enforced exactly at DATA.

A member's caps are its own hourly/daily limits, lowered by the tier its
age since approval puts it in (runbook section 5: tier caps compose with
min() and never raise a member's limit). `highly_trusted` skips the tiers;
`burst_warming` halves the hourly cap. Usage is counted in
`send_counters` (minute buckets for the last hour, hour buckets for the last
day) inside the same transaction that adds the new message, so concurrent
sessions cannot overshoot and a restart forgets nothing.

Over a cap a message is held, not refused (issue 14): it is counted in the
buckets of the time the caps let it leave (functions/reputation/release.py)
and refused only when that is further away than the tier's `maxHold`
(`limits.maxHold` by default), or never.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from functions.reputation import policy
from functions.reputation.release import Usage, release_at
from runtime import replies
from runtime.context import LambdaContext
from runtime.replies import Reply


@dataclass(frozen=True)
class Caps:
    tier: str
    hourly: int
    daily: int
    labels: tuple[str, ...]
    max_hold: float = 0.0


@dataclass(frozen=True)
class Verdict:
    window: str
    cap: int
    used: int
    tier: str

    @property
    def reached(self) -> str:
        return f"{self.window} sending limit reached ({self.used}/{self.cap}, tier {self.tier})"

    @property
    def text(self) -> str:
        return f"{self.reached}; try again later"


def caps_for(member: sqlite3.Row, member_labels: set[str], pol: policy.Policy, default_hourly: int,
             default_daily: int, now: float, default_max_hold: float = 0.0) -> Caps:
    own_hourly = member["hourly_limit"] if member["hourly_limit"] is not None else default_hourly
    own_daily = member["daily_limit"] if member["daily_limit"] is not None else default_daily
    warming = pol.warming
    tier_name, hourly, daily, max_hold = "warmed", own_hourly, own_daily, default_max_hold
    if warming.trustedLabel not in member_labels:
        age_days = (now - (member["approved_at"] or now)) / 86400
        for tier in warming.tiers:
            if age_days < tier.maxAgeDays:
                tier_name, hourly, daily = tier.name, min(tier.hourly, own_hourly), min(tier.daily, own_daily)
                max_hold = default_max_hold if tier.maxHold is None else tier.maxHold
                break
    else:
        tier_name = "trusted"
    if warming.burstLabel in member_labels:
        hourly = int(hourly * warming.burstFactor)
    return Caps(tier_name, hourly, daily, tuple(sorted(member_labels)), max_hold)


def record(conn: sqlite3.Connection, did: str, recipients: int, when: float) -> None:
    """Count recipients in the buckets of `when`, the time they are released (now, or later when held)."""
    for granularity, bucket in (("m", int(when // 60)), ("h", int(when // 3600))):
        conn.execute(
            "INSERT INTO send_counters (did, granularity, bucket, count) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (did, granularity, bucket) DO UPDATE SET count = count + excluded.count",
            (did, granularity, bucket, recipients))


def unrecord(conn: sqlite3.Connection, did: str, recipients: int, when: float) -> None:
    """Give back a reservation that will not be sent then (frozen, purged, or planned again)."""
    for granularity, bucket in (("m", int(when // 60)), ("h", int(when // 3600))):
        conn.execute("UPDATE send_counters SET count = MAX(count - ?, 0)"
                     " WHERE did = ? AND granularity = ? AND bucket = ?", (recipients, did, granularity, bucket))


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
    "  WHERE did = m.did AND granularity = 'm' AND bucket > ? AND bucket <= ?) AS hour,"
    " (SELECT COALESCE(SUM(count), 0) FROM send_counters"
    "  WHERE did = m.did AND granularity = 'h' AND bucket > ? AND bucket <= ?) AS day"
    " FROM members m WHERE m.did = ?")


def _caps(row: sqlite3.Row, context: LambdaContext, now: float) -> Caps:
    settings = context.settings
    member_labels = set(row["labels"].split("\x1f")) if row["labels"] else set()
    return caps_for(row, member_labels, policy.load(settings.rulesFile), settings.limits.hourly,
                    settings.limits.daily, now, settings.limits.maxHold)


def standing(conn: sqlite3.Connection, context: LambdaContext, did: str) -> tuple[Caps, int, int] | None:
    """The member's caps now, and recipients released in the last 60 minutes and 24 hours (held ones not yet)."""
    now = context.clock.now()
    minute, hour = int(now // 60), int(now // 3600)
    row = conn.execute(_STANDING, (minute - 60, minute, hour - 24, hour, did)).fetchone()
    if row is None:
        return None
    return _caps(row, context, now), int(row["hour"]), int(row["day"])


_MEMBER = ("SELECT m.hourly_limit, m.daily_limit, m.approved_at,"
           " (SELECT group_concat(val, char(31)) FROM labels.member_labels WHERE uri = m.did) AS labels"
           " FROM members m WHERE m.did = ?")


def usage_of(conn: sqlite3.Connection, did: str, now: float) -> Usage:
    """Every count of the last hour and day, reservations of held mail included."""
    minutes, hours = {}, {}
    for row in conn.execute(
            "SELECT granularity, bucket, count FROM send_counters WHERE did = ? AND count > 0 AND"
            " ((granularity = 'm' AND bucket > ?) OR (granularity = 'h' AND bucket > ?))",
            (did, int(now // 60) - 60, int(now // 3600) - 24)):
        (minutes if row["granularity"] == "m" else hours)[row["bucket"]] = row["count"]
    return Usage(minutes, hours)


def caps_of(conn: sqlite3.Connection, context: LambdaContext, did: str, now: float) -> Caps | None:
    row = conn.execute(_MEMBER, (did,)).fetchone()
    return None if row is None else _caps(row, context, now)


@dataclass(frozen=True)
class Decision:
    """What the caps say about `adding` more recipients: release now, hold until `release_at`, or refuse."""

    now: float
    release_at: float | None
    verdict: Verdict | None
    reply: Reply | None = None

    @property
    def held(self) -> bool:
        return self.reply is None and self.release_at is not None and self.release_at > self.now


def resume_text(when: float, now: float) -> str:
    moment = datetime.fromtimestamp(when, timezone.utc)
    same_day = moment.date() == datetime.fromtimestamp(now, timezone.utc).date()
    return moment.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def _binding(usage: Usage, caps: Caps, adding: int, now: float, when: float | None) -> Verdict:
    """The cap that keeps the message from leaving now: the hourly one when it alone gives the same wait."""
    hour, day = sum(usage.minutes.values()), sum(usage.hours.values())
    if when is None:
        hourly = adding > caps.hourly
    else:
        hourly = release_at(usage, caps.hourly, adding + day, adding, now) == when
    if hourly:
        return Verdict("hourly", caps.hourly, hour, caps.tier)
    return Verdict("daily", caps.daily, day, caps.tier)


def decide(conn: sqlite3.Connection, context: LambdaContext, did: str, adding: int) -> Decision:
    """Release now, hold, or refuse (only when holding is impossible or longer than the tier's maxHold)."""
    now = context.clock.now()
    caps = caps_of(conn, context, did, now)
    if caps is None:
        return Decision(now, now, None)
    usage = usage_of(conn, did, now)
    when = release_at(usage, caps.hourly, caps.daily, adding, now)
    if when == now:
        return Decision(now, now, None)
    verdict = _binding(usage, caps, adding, now, when)
    if when is not None and when - now <= caps.max_hold:
        return Decision(now, when, verdict)
    if caps.max_hold <= 0:
        hour, day = sum(usage.minutes.values()), sum(usage.hours.values())
        old = (Verdict("hourly", caps.hourly, hour, caps.tier) if hour + adding > caps.hourly
               else Verdict("daily", caps.daily, day, caps.tier))
        reply = replies.RATE_LIMITED.format(detail=old.text)
    elif when is None:
        reply = replies.CAP_BELOW_MESSAGE.format(window=verdict.window, cap=verdict.cap, tier=caps.tier)
    else:
        reply = replies.RATE_LIMITED_UNTIL.format(window=verdict.window, cap=verdict.cap, tier=caps.tier,
                                                  resume=resume_text(when, now))
    return Decision(now, when, verdict, reply)
