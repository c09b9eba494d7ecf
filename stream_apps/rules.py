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

from functions.reputation.counting import event_time
from functions.reputation.policy import Policy, Rule
from functions.reputation.verdicts import SUSPEND_VERDICT, label_mutation
from stream_apps import reputation

EFFECTS_KEPT = 64


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
            out += [label_mutation(label, True) for label in hit.add]
            out += [label_mutation(label, False) for label in hit.remove]
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


def _remember(state: dict[str, Any], action_id: int, effects: dict[str, Any]) -> dict[str, Any]:
    """Keep what an action did, for the last EFFECTS_KEPT actions that did anything."""
    kept = dict(state.get("effects") or {})
    kept[str(action_id)] = effects
    return {**state, "effects": dict(list(kept.items())[-EFFECTS_KEPT:])}


def process(policy: Policy, state: dict[str, Any] | None, envelope: dict[str, Any],
            arrival: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(new state, execution result) for one action envelope.

    An action seen before still gets its result, with the effects remembered for it: Kafka
    delivers at least once, and a worker can die after its state was saved but before its
    result was sent. apply-results keeps the first result of an action id, so nothing is
    applied twice.
    """
    inner = envelope.get("data") or {}
    action_id = int(inner["action_id"])
    name = str(inner["action_name"])
    data = dict(inner.get("data") or {})
    did = str(data.get("sender_did") or "")
    when = event_time(envelope.get("send_time"), arrival)
    state = state or reputation.empty(did)
    if reputation.already_seen(state, action_id):
        effects = (state.get("effects") or {}).get(str(action_id)) or {}
        return state, _result(action_id, when, name, did, data, reputation.figures(state, when), state,
                              effects, replayed=True)
    state = reputation.apply(state, action_id, name, data, when)
    evaluation, figures, state = evaluate(policy, state, name, when)
    effects = {"verdicts": evaluation.verdicts, "mutations": evaluation.label_mutations,
               "rules": [h.rule for h in evaluation.hits], "rule_figures": {h.rule: h.figures for h in evaluation.hits}}
    if name == "member_suspended":
        # The suspension's own result names it, so "what suspended them" is one row (runbook).
        effects["verdicts"] = sorted(set(effects["verdicts"]) | {SUSPEND_VERDICT})
        rule = str(data.get("rule") or "")
        if rule and rule not in effects["rules"]:
            effects["rules"].insert(0, rule)
            effects["rule_figures"][rule] = dict(data.get("figures") or {})
    if effects["verdicts"] or effects["mutations"] or effects["rules"]:
        state = _remember(state, action_id, effects)
    return state, _result(action_id, when, name, did, data, figures, state, effects)


def _result(action_id: int, when: float, name: str, did: str, data: dict[str, Any], figures: dict[str, float],
            state: dict[str, Any], effects: dict[str, Any], replayed: bool = False) -> dict[str, Any]:
    result = {
        "__action_id": action_id,
        "__timestamp": timestamp(when),
        "__verdicts": list(effects.get("verdicts") or []),
        "__entity_label_mutations": list(effects.get("mutations") or []),
        "__error_count": 0,
        "ActionName": name,
        "SenderDid": did,
        "MemberDid": did,
        "ActionData": data,
        "Figures": figures,
        "RulesFired": list(effects.get("rules") or []),
        "RuleFigures": dict(effects.get("rule_figures") or {}),
        "MemberStatus": state.get("status"),
        "MemberLabels": state.get("labels", []),
    }
    if replayed:
        result["Replayed"] = True
    return result
