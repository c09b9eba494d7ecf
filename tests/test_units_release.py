"""When the caps let held mail leave (functions/reputation/release.py): pure decisions, no relay."""
from __future__ import annotations

from functions.reputation.limits import resume_text
from functions.reputation.release import Usage, plan, release_at

# 2026-11-30 10:00:00 UTC, a whole hour.
T0 = 1_796_032_800.0
assert T0 % 3600 == 0


def usage() -> Usage:
    return Usage({}, {})


def test_under_the_caps_a_message_leaves_now():
    u = usage()
    u.add(T0, 3)
    assert release_at(u, 5, 20, 2, T0 + 10) == T0 + 10


def test_over_the_hourly_cap_it_waits_until_the_first_send_leaves_the_window():
    u = usage()
    for minute in range(5):
        u.add(T0 + minute * 60, 1)
    assert release_at(u, 5, 20, 1, T0 + 300) == T0 + 3600
    assert release_at(u, 5, 20, 2, T0 + 300) == T0 + 3600 + 60


def test_held_mail_is_released_in_arrival_order_and_never_more_than_the_cap_per_hour():
    u = usage()
    times = plan(u, 5, 100, [1] * 12, T0)
    assert times == [T0] * 5 + [T0 + 3600] * 5 + [T0 + 7200] * 2
    assert times == sorted(times)
    for t in times:
        assert u.hour_at(t) <= 5


def test_a_later_small_message_does_not_overtake_an_earlier_held_one():
    u = usage()
    u.add(T0, 4)
    first = release_at(u, 5, 20, 3, T0 + 60)
    assert first == T0 + 3600
    u.add(first, 3)
    assert release_at(u, 5, 20, 1, T0 + 120) == T0 + 3600


def test_the_daily_cap_holds_until_an_hour_bucket_leaves_the_day():
    u = usage()
    for hour in range(4):
        u.add(T0 + hour * 3600, 5)
    now = T0 + 4 * 3600
    assert release_at(u, 5, 20, 1, now) == T0 + 24 * 3600


def test_more_recipients_than_a_cap_never_fit():
    assert release_at(usage(), 5, 20, 6, T0) is None
    assert release_at(usage(), 50, 20, 21, T0) is None
    assert release_at(usage(), 0, 20, 1, T0) is None


def test_a_raised_cap_releases_held_mail_sooner_when_planned_again():
    held = [1] * 5
    before = plan(_full_hour(), 5, 100, held, T0 + 600)
    after = plan(_full_hour(), 10, 100, held, T0 + 600)
    assert before == [T0 + 3600] * 5
    assert after == [T0 + 600] * 5


def test_mail_that_no_longer_fits_a_lowered_cap_leaves_with_the_one_before_it():
    assert plan(usage(), 2, 100, [1, 3], T0) == [T0, T0]


def test_resume_time_names_the_day_only_when_it_is_not_today():
    assert resume_text(T0 + 3600, T0) == "11:00 UTC"
    assert resume_text(T0 + 86400, T0) == "2026-12-01 10:00 UTC"


def _full_hour() -> Usage:
    u = usage()
    u.add(T0, 5)
    return u
