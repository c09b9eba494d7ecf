"""The words the rules answer in, shared by the stream apps that write them and `apply-results` that reads them.

Osprey writes label mutations as "<entity>/<label>/<LabelStatus>"; its
LabelStatus numbers are 0 added, 1 removed, 2 manually added, 3 manually
removed. Other producers write the words "added" and "removed"; we accept
both and write the numbers.
"""
from __future__ import annotations

SUSPEND_VERDICT = "suspend_member"
ENTITY = "MemberDid"
ADDED, REMOVED = 0, 1

_STATUS_ADDS = {"0": True, "2": True, "added": True, "1": False, "3": False, "removed": False}


def label_mutation(label: str, add: bool) -> str:
    return f"{ENTITY}/{label}/{ADDED if add else REMOVED}"


def parse_label_mutation(mutation: str) -> tuple[str, bool] | None:
    """(label, added?) of a member label mutation; None for another entity or a status we do not know."""
    entity, _, rest = mutation.partition("/")
    label, _, status = rest.rpartition("/")
    if entity != ENTITY or not label or status not in _STATUS_ADDS:
        return None
    return label, _STATUS_ADDS[status]
