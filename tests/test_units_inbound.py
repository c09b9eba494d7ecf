"""Fast checks of how a failure reads: hard only when the address itself is bad (only that suppresses)."""
from __future__ import annotations

import pytest

from functions.inbound.bounce_reasons import classify
from functions.inbound.bounces.pool_blocks import provider_of
from functions.inbound.bounces.suppression_policy import about_the_pool, suppresses


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


@pytest.mark.parametrize("mx, recipient, provider", [
    ("gmail-smtp-in.l.google.com", "ann@gmail.com", "google.com"),
    ("example-com.mail.protection.outlook.com.", "bob@example.com", "outlook.com"),
    ("mx1.mail.example.co.uk", "cat@example.co.uk", "example.co.uk"),
    ("[192.0.2.7]", "dog@Example.ORG", "example.org"),
    ("", "eve@example.net", "example.net"),
])
def test_a_block_belongs_to_the_provider_that_runs_the_mx(mx, recipient, provider):
    assert provider_of(mx, recipient) == provider


def test_full_and_suspended_mailboxes_suppress_only_once_they_repeat():
    assert [suppresses("mailboxfull", "5.2.2", n, 3) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert suppresses("suspend", "4.2.1", 2, 2)  # a DSN that gave up on it says 4.x.x: still a final failure
    assert not suppresses("mailboxfull", "5.2.2", 50, 0)  # softRepeats 0: never
    assert not suppresses("userunknown", "4.1.1") and suppresses("userunknown", "5.1.1")
    for reason in ("blocked", "spamdetected", "policyviolation", "toomanyconn", "speeding"):
        assert about_the_pool(reason) and not suppresses(reason, "5.7.1", 10, 3)
    assert not about_the_pool("userunknown") and not about_the_pool("mailboxfull")
