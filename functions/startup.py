"""`startup`: what must hold before the relay accepts mail.

Operator DKIM keys exist (generated and announced on first boot) and the
policy file parses; a bad policy stops the relay here, with the reason.
The labeler's key exists and its signed labels match the labels members
hold under the policy now in force.
"""
from __future__ import annotations

from functions.dkim import operator_keys
from functions.labeling.publication import labeler_key, reconcile
from functions.reputation import policy
from runtime.context import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    settings = context.settings
    pol = policy.load(settings.rulesFile)
    doc, created = operator_keys.ensure(settings.stateDir, context.clock.now())
    records = operator_keys.records(doc, settings.operatorDomain)
    if created:
        context.logger.warning("operator_dkim.first_boot", domain=settings.operatorDomain, records=records,
                               path=str(operator_keys.path_for(settings.stateDir)),
                               note="publish these TXT records; keep the old ones 48h after a rotation")
    labeler_key(context)
    with context.store.transaction() as conn:
        reconcile(conn, context)
    return {"policy": pol.source, "rules": [r.name for r in pol.rules],
            "operator_selectors": [k["selector"] for k in doc["keys"]], "generated": created}
