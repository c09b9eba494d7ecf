"""The AUTH throttle's counting and turns, on its own SQLite file (fast; the relay-level cases are in
test_submission.py)."""
from __future__ import annotations

from runtime.auth_throttle import AuthThrottle, address_key, username_key

ADDR, VICTIM, MINE = address_key("192.0.2.7"), username_key("victim.example"), username_key("Mine.Example")


class Clock:
    """Time that passes only when a client waits its turn."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def throttle(tmp_path, limit=2, base=1.0, most=8.0, clock=None) -> AuthThrottle:
    return AuthThrottle(tmp_path / "auth-failures.sqlite", limit, 600.0, base, most, clock=clock or Clock())


def waited(clock: Clock, attempt):
    """A client that waits out its attempt's turn before the credentials are checked."""
    assert not attempt.refused
    clock.now += attempt.wait
    return attempt


def test_a_right_key_forgets_only_its_own_usernames_failures(tmp_path):
    clock = Clock()
    t = throttle(tmp_path, clock=clock)
    waits = []
    for _ in range(3):
        for _ in range(2):
            attempt = waited(clock, t.begin(ADDR, VICTIM))
            waits.append(attempt.wait)
            t.failed(attempt)
        t.succeeded(waited(clock, t.begin(ADDR, MINE)), reset=MINE)
    assert t.failures(ADDR) == 6 and t.failures(VICTIM) == 6 and t.failures(MINE) == 0
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0]  # the right key in between reset nothing of the address's
    assert t.delay_for(ADDR, VICTIM) == 8.0


def test_parallel_attempts_take_turns_and_the_queue_is_bounded(tmp_path):
    t = throttle(tmp_path)
    t.failed(t.begin(ADDR, VICTIM))
    attempts = [t.begin(address_key(f"198.51.100.{n}"), VICTIM) for n in range(10)]
    assert [(a.wait, a.refused) for a in attempts[:4]] == [(0.0, False), (1.0, False), (3.0, False), (7.0, False)]
    assert all(a.refused for a in attempts[4:]), [(a.wait, a.refused) for a in attempts]
    assert t.failures(VICTIM) == 5  # refused attempts were never checked and do not count


def test_a_fault_of_ours_does_not_count(tmp_path):
    t = throttle(tmp_path)
    t.abandon(t.begin(ADDR, VICTIM))
    assert t.failures(ADDR) == 0 and t.failures(VICTIM) == 0


def test_addresses_and_usernames_are_keyed_as_one_client_holds_them():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "addr:2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == ADDR
    assert username_key(" Mine.EXAMPLE ") == MINE


def test_failures_are_shared_through_the_file(tmp_path):
    one, other = throttle(tmp_path), throttle(tmp_path)
    one.record_failure(ADDR)
    other.failed(other.begin(ADDR, VICTIM))
    assert one.failures(ADDR) == 2 and one.failures(VICTIM) == 1
