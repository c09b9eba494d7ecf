"""Fast checks of how a failure reads: hard only when the address itself is bad (only that suppresses)."""
from __future__ import annotations

import pytest

from functions.inbound.bounce_reasons import classify


@pytest.mark.parametrize("status, text, code, kind, reason", [
    ("5.1.1", "", None, "hard", "userunknown"),
    ("5.1.2", "", None, "hard", "hostunknown"),
    ("5.2.1", "", None, "soft", "suspend"),
    ("5.2.2", "", None, "soft", "mailboxfull"),
    ("5.7.1", "Message rejected as spam", None, "soft", "spamdetected"),
    ("5.7.26", "", None, "soft", "blocked"),
    ("4.2.2", "mailbox full", None, "soft", "mailboxfull"),
    ("4.4.7", "", None, "soft", "expired"),
    ("4.0.0", "User unknown", None, "hard", "userunknown"),  # Sisimai reads the reason; a 4xx still never suppresses
    ("4.0.0", "", None, "soft", "onhold"),
])
def test_the_status_code_decides_first(status, text, code, kind, reason):
    verdict = classify(status, text, code)
    assert (verdict.kind, verdict.reason, verdict.status) == (kind, reason, status)


@pytest.mark.parametrize("status, text, kind, reason", [
    ("5.0.0", "550 User unknown in virtual mailbox table", "hard", "userunknown"),
    ("5.0.0", "Recipient address rejected: mailbox unavailable", "hard", "userunknown"),
    ("5.0.0", "Host or domain name not found", "hard", "hostunknown"),
    ("5.0.0", "mailbox is full / over quota", "soft", "mailboxfull"),
    ("5.0.0", "listed on a block list", "soft", "blocked"),
    ("5.0.0", "", "soft", "onhold"),
    ("5.1.0", "no such user here", "hard", "userunknown"),
    ("5.1.0", "", "soft", "undefined"),
])
def test_generic_codes_read_the_text(status, text, kind, reason):
    verdict = classify(status, text)
    assert (verdict.kind, verdict.reason) == (kind, reason)


def test_a_reply_without_an_enhanced_status_takes_its_class_from_the_code():
    assert classify("", "mailbox unavailable", 550) == classify("5.0.0", "mailbox unavailable")
    assert classify("", "mailbox unavailable", 550).status == "5.0.0"
    assert classify("", "try again", 451).kind == "soft"


@pytest.mark.parametrize("status", ["", "garbage", "9.9.9", "5", "5.1", "...."])
def test_a_nonsense_status_is_a_soft_failure_not_a_crash(status):
    verdict = classify(status, "")
    assert verdict.kind == "soft" and verdict.reason
