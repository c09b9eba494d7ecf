"""Which bounces may put a recipient on a member's suppression list, and which are an alert about the pool.

Only a reason about the address itself suppresses: it does not exist
(userunknown, hostunknown), it moved (hasmoved), its domain takes no mail
(notaccept). A full or suspended mailbox suppresses only once it keeps
bouncing (`suppression.softRepeats` within `softWindowDays`). Reasons
about the pool or the content (blocked, spamdetected, policyviolation,
securityerror, ...) say nothing about the address: they count in the
figures, never as a suppression; those about the pool's standing at a
provider are an operator alert (`pool_blocks`).
"""
from __future__ import annotations

ABOUT_THE_ADDRESS = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})
AFTER_REPEATS = frozenset({"suspend", "mailboxfull"})
ABOUT_THE_POOL = frozenset({"blocked", "spamdetected", "policyviolation", "toomanyconn", "speeding"})


def suppresses(reason: str, status: str = "", repeats: int = 1, repeats_to_suppress: int = 3) -> bool:
    """True when this bounce (the `repeats`-th of its kind for the recipient) should suppress the recipient.

    A repeat counts whatever its status class: only final failures are
    recorded, and a DSN that gave up on a full mailbox says 4.2.2.
    """
    if reason in AFTER_REPEATS:
        return 0 < repeats_to_suppress <= repeats
    return reason in ABOUT_THE_ADDRESS and not status.startswith("4.")


def about_the_pool(reason: str) -> bool:
    """A reason the operator should see as an alert about the pool's standing at a provider."""
    return reason in ABOUT_THE_POOL
