"""`labeler`: issue `verified-mail-operator` once a member's DKIM keys are in DNS and its attestation holds.

Runs every minute (runbook task 2: publish, and within 60 s the label
follows). A label is withdrawn only on a definite answer (a record missing
or replaced, an attestation gone); a DNS timeout or an unreachable PDS
leaves things as they are until the next run can tell. Each run first
checks the domain claims that are due (`domain_proof.verify_due`), so a
domain is proven, or loses its proof, on the same schedule.
"""
from __future__ import annotations

from functions.labeling.publication import publish
from functions.members import domain_proof, labels
from functions.reputation import events
from runtime.context import LambdaContext

LABEL = "verified-mail-operator"
SOURCE = "labeler"


def verdict(context: LambdaContext, did: str, domains: list) -> tuple[bool | None, str]:
    """True (verified), False (definitely not) or None (could not tell), with the reason.

    The same look-up that proves a domain (domain_proof.examine), over every domain the member claims.
    """
    undecided = ""
    for row in domains:
        finding = domain_proof.examine(context, row)
        if finding.outcome == "failed":
            return False, f"{row['domain']}: {finding.detail}"
        if finding.outcome != "proven":
            undecided = f"{row['domain']}: {finding.detail}"
    if undecided:
        return None, undecided
    return True, "DKIM keys published and attestation verified for " + ", ".join(r["domain"] for r in domains)


def handler(event: dict, context: LambdaContext) -> dict:
    conn = context.store.connection()
    only = str((event.get("detail") or {}).get("did") or event.get("did") or "")
    proofs = domain_proof.verify_due(context) if not only else {}
    members = conn.execute("SELECT did FROM members WHERE status != 'suspended' AND (? = '' OR did = ?)"
                           " ORDER BY did", (only, only)).fetchall()
    changed = {"added": [], "removed": [], "undecided": []}
    for member in members:
        did = member["did"]
        if context.timed_out:
            break
        domains = conn.execute("SELECT * FROM member_domains WHERE did = ? ORDER BY domain", (did,)).fetchall()
        if not domains:
            continue
        ok, reason = verdict(context, did, domains)
        if ok is None:
            changed["undecided"].append(did)
            continue
        with context.store.transaction() as tx:
            if labels.apply(tx, did, LABEL, ok, SOURCE, reason, context.clock.now()):
                events.emit(tx, context, "label_changed", {"sender_did": did, "label": LABEL,
                                                           "status": "added" if ok else "removed",
                                                           "source": SOURCE, "reason": reason})
                changed["added" if ok else "removed"].append(did)
                publish(tx, context, did, LABEL, ok)
                context.logger.info("labeler.label", did=did, label=LABEL, added=ok, reason=reason)
    return {"checked": len(members), **changed, **proofs}
