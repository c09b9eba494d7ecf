"""Fast checks of outbound decisions: when to retry, what a VERP address says, how an MX reply reads."""
from __future__ import annotations

import pytest

from functions.outbound import retry_policy, verp
from functions.outbound.smtp_session import split_reply

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
INTERVALS = (5 * MINUTE, 30 * MINUTE, 2 * HOUR)


@pytest.mark.parametrize("attempts_done, wait", [(0, 5 * MINUTE), (1, 5 * MINUTE), (2, 30 * MINUTE),
                                                 (3, 2 * HOUR), (9, 2 * HOUR)])
def test_intervals_grow_as_configured_and_the_last_repeats(attempts_done, wait):
    assert retry_policy.next_attempt(attempts_done, 0.0, 100.0, INTERVALS, 5 * DAY) == 100.0 + wait


def test_the_last_attempt_is_made_at_the_deadline_then_the_message_expires():
    deadline = 5 * DAY
    assert retry_policy.next_attempt(4, 0.0, deadline - MINUTE, INTERVALS, 5 * DAY) == deadline
    assert retry_policy.next_attempt(5, 0.0, deadline, INTERVALS, 5 * DAY) is None
    assert retry_policy.next_attempt(5, 0.0, deadline + 1, INTERVALS, 5 * DAY) is None


KEY = bytes(range(32))
QUEUE_ID = "0123456789ABCDEF012"


def test_a_verp_address_names_its_message_and_recipient():
    addr = verp.address(KEY, QUEUE_ID, 3, "atmos.test")
    assert addr.startswith(f"bounces+{QUEUE_ID}.3-") and addr.endswith("@atmos.test")
    assert verp.parse(KEY, addr, "atmos.test") == (QUEUE_ID, 3)
    local = addr.split("@")[0]
    assert verp.parse(KEY, f"<{local}@ATMOS.TEST>", "atmos.test") == (QUEUE_ID, 3)  # as a DSN may write it


@pytest.mark.parametrize("forged", [
    "bounces+0123456789ABCDEF012.3-0000000000@atmos.test",   # wrong MAC
    "bounces+0123456789ABCDEF012.4-{mac}@atmos.test",        # another recipient under this one's MAC
    "bounces+0123456789ABCDEF012.3-{mac}@elsewhere.test",    # another domain
    "bounces+short.3-{mac}@atmos.test",                      # not a queue id
    "postmaster@atmos.test", "", "@", "bounces+@atmos.test",
])
def test_a_forged_or_foreign_bounce_address_is_not_ours(forged):
    mac = verp.address(KEY, QUEUE_ID, 3, "atmos.test").split("-", 1)[1].split("@")[0]
    assert verp.parse(KEY, forged.format(mac=mac), "atmos.test") is None


def test_another_key_does_not_verify():
    addr = verp.address(KEY, QUEUE_ID, 0, "atmos.test")
    assert verp.parse(bytes(32), addr, "atmos.test") is None


@pytest.mark.parametrize("code, raw, expected", [
    (550, b"5.1.1 <x@y>: Recipient address rejected", ("5.1.1", "<x@y>: Recipient address rejected")),
    (250, "2.0.0 Ok:\n  queued as 12", ("2.0.0", "Ok: queued as 12")),
    (451, b"Try later", ("4.0.0", "Try later")),
    (554, b"5.7.1", ("5.7.1", "")),
    (421, b"4.x.y not a status", ("4.0.0", "4.x.y not a status")),
    (550, b"\xff\xfe bad bytes", ("5.0.0", "\ufffd\ufffd bad bytes")),
    (999, b"", ("4.0.0", "")),
])
def test_an_mx_reply_splits_into_status_and_text(code, raw, expected):
    assert split_reply(code, raw) == expected
