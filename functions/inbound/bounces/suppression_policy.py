"""Which bounces may put a recipient on a member's suppression list.

Only a reason about the address itself: it does not exist (userunknown,
hostunknown), it moved (hasmoved), its domain takes no mail (notaccept),
or it has been suspended again and again. Reasons about the pool or the
content (blocked, spamdetected, policyviolation, securityerror, ...) say
nothing about the address: they count in the figures and are shown to the
operator, never a suppression. A soft reason that repeats (a full mailbox
for days) may suppress after `repeats_to_suppress` bounces.
"""
from __future__ import annotations

ABOUT_THE_ADDRESS = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})
AFTER_REPEATS = frozenset({"suspend", "mailboxfull"})
ABOUT_THE_POOL = frozenset({"blocked", "spamdetected", "policyviolation", "securityerror", "rejected",
                            "filtered", "virusdetected", "contenterror", "norelaying", "toomanyconn", "speeding"})


def suppresses(reason: str, status: str = "", repeats: int = 1, repeats_to_suppress: int = 3) -> bool:
    """True when this bounce (the `repeats`-th of its kind for the recipient) should suppress the recipient."""
    if status.startswith("4."):
        return False
    if reason in ABOUT_THE_ADDRESS:
        return True
    return reason in AFTER_REPEATS and repeats >= repeats_to_suppress


def about_the_pool(reason: str) -> bool:
    """A reason the operator should see as an alert about the pool's standing at a provider."""
    return reason in ABOUT_THE_POOL
