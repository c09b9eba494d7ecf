"""The cooperative's rules over a member's reputation, and the Osprey execution result they produce.

`process` is the whole stream step as one pure function: fold the action
into the member's state, evaluate the policy's rules, and describe what
fired in Osprey's execution-result shape (`__verdicts`,
`__entity_label_mutations` as "MemberDid/<label>/<status>" with Osprey's
LabelStatus numbers, 0 added and 1 removed). The
in-process runner and the Faust worker both call it and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from functions.policy import Policy, Rule
from stream_apps import reputation

ENTITY = "MemberDid"
SUSPEND_VERDICT = "suspend_member"
ADDED, REMOVED = 0, 1  # osprey_shared.labels.LabelStatus


@dataclass
class Hit:
    rule: str
    verdict: str
    figures: dict[str, float]
    suspend: bool
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass
class Evaluation:
    hits: list[Hit] = field(default_factory=list)

    @property
    def verdicts(self) -> list[str]:
        return sorted({h.verdict for h in self.hits} | ({SUSPEND_VERDICT} if self.suspends else set()))

    @property
    def suspends(self) -> bool:
        return any(h.suspend for h in self.hits)

    @property
    def label_mutations(self) -> list[str]:
        out = []
        for hit in self.hits:
            out += [f"{ENTITY}/{label}/{ADDED}" for label in hit.add]
            out += [f"{ENTITY}/{label}/{REMOVED}" for label in hit.remove]
        return out


def _applies(rule: Rule, action_name: str, labels: set[str], status: str) -> bool:
    if rule.events and action_name not in rule.events:
        return False
    if any(label in labels for label in rule.unless_labels):
        return False
    if not all(label in labels for label in rule.if_labels):
        return False
    if rule.suspend and status == "suspended":
        return False
    return True


def evaluate(policy: Policy, state: dict[str, Any], action_name: str,
             now: float) -> tuple[Evaluation, dict[str, float], dict[str, Any]]:
    """Rules that fire on this state: the hits, the figures, and the state with their effects applied."""
    figures = reputation.figures(state, now)
    labels = set(state.get("labels", []))
    evaluation = Evaluation()
    for rule in policy.rules:
        if not _applies(rule, action_name, labels, state.get("status", "")):
            continue
        if all(cond.holds(figures) for cond in rule.when):
            add = tuple(lbl for lbl in rule.add_labels if lbl not in labels)
            remove = tuple(lbl for lbl in rule.remove_labels if lbl in labels)
            labels |= set(add)
            labels -= set(remove)
            evaluation.hits.append(Hit(rule.name, rule.verdict,
                                       {c.metric: figures.get(c.metric, 0.0) for c in rule.when},
                                       rule.suspend, add, remove))
    state = {**state, "labels": sorted(labels)}
    if evaluation.suspends:
        state["status"] = "suspended"
    return evaluation, figures, state


def timestamp(when: float) -> str:
    """As Osprey writes `__timestamp`: datetime.isoformat() of an aware UTC time."""
    return datetime.fromtimestamp(when, timezone.utc).isoformat()


def process(policy: Policy, state: dict[str, Any] | None, envelope: dict[str, Any],
            arrival: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(new state, execution result) for one action envelope; result None for a duplicate."""
    inner = envelope.get("data") or {}
    action_id = int(inner["action_id"])
    name = str(inner["action_name"])
    data = dict(inner.get("data") or {})
    did = str(data.get("sender_did") or "")
    when = reputation.parse_time(envelope.get("send_time"), arrival)
    state = state or reputation.empty(did)
    if reputation.already_seen(state, action_id):
        return state, None
    state = reputation.apply(state, action_id, name, data, when)
    evaluation, figures, state = evaluate(policy, state, name, when)
    verdicts = evaluation.verdicts
    fired = [h.rule for h in evaluation.hits]
    rule_figures = {h.rule: h.figures for h in evaluation.hits}
    if name == "member_suspended":
        # The suspension's own result names it, so "what suspended them" is one row (runbook).
        verdicts = sorted(set(verdicts) | {SUSPEND_VERDICT})
        rule = str(data.get("rule") or "")
        if rule and rule not in fired:
            fired.insert(0, rule)
            rule_figures[rule] = dict(data.get("figures") or {})
    result = {
        "__action_id": action_id,
        "__timestamp": timestamp(when),
        "__verdicts": verdicts,
        "__entity_label_mutations": evaluation.label_mutations,
        "__error_count": 0,
        "ActionName": name,
        "SenderDid": did,
        "MemberDid": did,
        "ActionData": data,
        "Figures": figures,
        "RulesFired": fired,
        "RuleFigures": rule_figures,
        "MemberStatus": state.get("status"),
        "MemberLabels": state.get("labels", []),
    }
    return state, result
