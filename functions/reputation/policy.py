"""The cooperative's policy file: warm-up tiers and reputation rules, edited by the operator.

`rulesFile` in config.json names a YAML or JSON file; each top-level section
it defines (`warming`, `rules`) replaces the built-in default of that
section. The file is validated as a whole at start-up and a bad one stops
the relay with a message naming the rule and field.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from runtime.config_fields import Duration
from runtime.file_cache import FileCache

OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
       "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}

METRICS = (
    "sends_1h", "sends_24h", "sends_7d", "sends_30d",
    "deliveries_7d", "deliveries_30d",
    "hard_bounces_7d", "hard_bounces_30d", "soft_bounces_7d", "complaints_7d", "complaints_30d",
    "rejections_24h", "deferrals_24h",
    "complaint_rate_7d", "complaint_rate_30d", "hard_bounce_rate_7d", "bounce_rate_30d",
    "trailing_hourly_avg_7d", "burst_ratio", "days_active",
)


class PolicyError(Exception):
    pass


@dataclass(frozen=True)
class Tier:
    name: str
    maxAgeDays: float
    hourly: int
    daily: int
    maxHold: float | None = None


@dataclass(frozen=True)
class Warming:
    tiers: tuple[Tier, ...]
    burstFactor: float = 0.5
    trustedLabel: str = "highly_trusted"
    burstLabel: str = "burst_warming"


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float

    def holds(self, figures: dict[str, float]) -> bool:
        return OPS[self.op](figures.get(self.metric, 0), self.value)


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    events: tuple[str, ...]
    when: tuple[Condition, ...]
    verdict: str
    suspend: bool = False
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    unless_labels: tuple[str, ...] = ()
    if_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublicLabel:
    """A label the atproto labeler publishes, as `value`, with how apps should show it."""

    label: str
    value: str
    name: str
    description: str
    severity: str = "inform"
    blurs: str = "none"
    defaultSetting: str = "warn"


@dataclass(frozen=True)
class Policy:
    warming: Warming
    rules: tuple[Rule, ...]
    public_labels: tuple[PublicLabel, ...] = ()
    source: str = "built-in"
    raw: dict = field(default_factory=dict, compare=False)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class TierSchema(_Strict):
    name = fields.String(required=True)
    maxAgeDays = fields.Float(required=True, validate=validate.Range(0, 3650))
    hourly = fields.Integer(required=True, validate=validate.Range(0))
    daily = fields.Integer(required=True, validate=validate.Range(0))
    # How long over-cap mail of this tier may be held (else limits.maxHold); 0 refuses it instead.
    maxHold = Duration(load_default=None, validate=validate.Range(0, 30 * 86400))

    @post_load
    def make(self, data: dict, **_: Any) -> Tier:
        return Tier(**data)


class WarmingSchema(_Strict):
    tiers = fields.List(fields.Nested(TierSchema), required=True)
    burstFactor = fields.Float(load_default=0.5, validate=validate.Range(0, 1))
    trustedLabel = fields.String(load_default="highly_trusted")
    burstLabel = fields.String(load_default="burst_warming")

    @validates_schema
    def ordered(self, data: dict, **_: Any) -> None:
        ages = [t.maxAgeDays for t in data.get("tiers", [])]
        if ages != sorted(ages):
            raise ValidationError("tiers must be ordered by maxAgeDays", "tiers")

    @post_load
    def make(self, data: dict, **_: Any) -> Warming:
        return Warming(tiers=tuple(data["tiers"]), burstFactor=data["burstFactor"],
                       trustedLabel=data["trustedLabel"], burstLabel=data["burstLabel"])


class ConditionSchema(_Strict):
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    op = fields.String(required=True, validate=validate.OneOf(list(OPS)))
    value = fields.Float(required=True)

    @post_load
    def make(self, data: dict, **_: Any) -> Condition:
        return Condition(**data)


class RuleSchema(_Strict):
    name = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))
    description = fields.String(load_default="")
    events = fields.List(fields.String(), load_default=list)
    when = fields.List(fields.Nested(ConditionSchema), required=True, validate=validate.Length(min=1))
    verdict = fields.String(load_default=None)
    suspend = fields.Boolean(load_default=False)
    addLabels = fields.List(fields.String(), load_default=list)
    removeLabels = fields.List(fields.String(), load_default=list)
    unlessLabels = fields.List(fields.String(), load_default=list)
    ifLabels = fields.List(fields.String(), load_default=list)

    @validates_schema
    def does_something(self, data: dict, **_: Any) -> None:
        if not (data.get("suspend") or data.get("addLabels") or data.get("removeLabels") or data.get("verdict")):
            raise ValidationError("a rule must suspend, add or remove labels, or name a verdict")

    @post_load
    def make(self, data: dict, **_: Any) -> Rule:
        return Rule(name=data["name"], description=data["description"], events=tuple(data["events"]),
                    when=tuple(data["when"]), verdict=data["verdict"] or data["name"], suspend=data["suspend"],
                    add_labels=tuple(data["addLabels"]), remove_labels=tuple(data["removeLabels"]),
                    unless_labels=tuple(data["unlessLabels"]), if_labels=tuple(data["ifLabels"]))


class PublicLabelSchema(_Strict):
    label = fields.String(required=True, validate=validate.Length(1, 128))
    value = fields.String(load_default=None, validate=validate.Regexp(
        r"^[a-z][a-z-]{0,99}$", error="an atproto label value is lowercase letters and '-' (at most 100)"))
    name = fields.String(required=True, validate=validate.Length(1, 64))
    description = fields.String(required=True, validate=validate.Length(1, 10000))
    severity = fields.String(load_default="inform", validate=validate.OneOf(["inform", "alert", "none"]))
    blurs = fields.String(load_default="none", validate=validate.OneOf(["content", "media", "none"]))
    defaultSetting = fields.String(load_default="warn", validate=validate.OneOf(["ignore", "warn", "hide"]))

    @validates_schema
    def publishable(self, data: dict, **_: Any) -> None:
        if data.get("value") is None and not re.match(r"^[a-z][a-z-]{0,99}$", data.get("label", "")):
            raise ValidationError("this label is not a valid atproto label value; give `value`", "value")

    @post_load
    def make(self, data: dict, **_: Any) -> PublicLabel:
        return PublicLabel(**{**data, "value": data["value"] or data["label"]})


class LabelsSchema(_Strict):
    public = fields.List(fields.Nested(PublicLabelSchema), load_default=list)


class PolicySchema(_Strict):
    warming = fields.Nested(WarmingSchema)
    rules = fields.List(fields.Nested(RuleSchema))
    labels = fields.Nested(LabelsSchema)


DEFAULT: dict[str, Any] = {
    "warming": {
        "tiers": [
            {"name": "warming", "maxAgeDays": 7, "hourly": 5, "daily": 20},
            {"name": "ramping", "maxAgeDays": 14, "hourly": 20, "daily": 100},
        ],
        "burstFactor": 0.5,
    },
    "rules": [
        {"name": "suspend_complaint_rate", "events": ["complaint_received"],
         "description": "Gmail and Yahoo police 0.3% spam complaints; past 0.5% over 200 sends the pool suffers",
         "when": [{"metric": "complaint_rate_7d", "op": ">=", "value": 0.005},
                  {"metric": "sends_7d", "op": ">=", "value": 200}],
         "verdict": "suspend_member", "suspend": True},
        {"name": "suspend_hard_bounce_rate", "events": ["bounce_received", "delivery_result"],
         "description": "10% hard bounces means a bought or scraped list",
         "when": [{"metric": "hard_bounce_rate_7d", "op": ">=", "value": 0.10},
                  {"metric": "sends_7d", "op": ">=", "value": 50}],
         "verdict": "suspend_member", "suspend": True},
        {"name": "burst_detected", "events": ["relay_attempt"],
         "description": "an hour over 5x the member's trailing hourly average",
         "when": [{"metric": "burst_ratio", "op": ">", "value": 5},
                  {"metric": "sends_1h", "op": ">=", "value": 10}],
         "unlessLabels": ["burst_warming"], "verdict": "burst", "addLabels": ["burst_warming"]},
        {"name": "burst_over", "events": ["relay_attempt", "delivery_result"],
         "description": "the burst has passed",
         "when": [{"metric": "burst_ratio", "op": "<=", "value": 2}],
         "ifLabels": ["burst_warming"], "verdict": "burst_over", "removeLabels": ["burst_warming"]},
        {"name": "earn_highly_trusted", "events": ["delivery_result"],
         "description": "30 days active, 1000 deliveries, complaints under 0.05%, bounces under 2%",
         "when": [{"metric": "days_active", "op": ">=", "value": 30},
                  {"metric": "deliveries_30d", "op": ">=", "value": 1000},
                  {"metric": "complaint_rate_30d", "op": "<", "value": 0.0005},
                  {"metric": "bounce_rate_30d", "op": "<", "value": 0.02}],
         "unlessLabels": ["highly_trusted"], "verdict": "trusted", "addLabels": ["highly_trusted"]},
        {"name": "lose_highly_trusted", "events": ["complaint_received", "bounce_received"],
         "description": "trust is lost as it was earned",
         "when": [{"metric": "complaint_rate_30d", "op": ">=", "value": 0.001}],
         "ifLabels": ["highly_trusted"], "verdict": "untrusted", "removeLabels": ["highly_trusted"]},
    ],
    # Labels the atproto labeler publishes besides verified-mail-operator; all others stay internal.
    "labels": {"public": []},
}

def parse(raw: dict[str, Any], source: str) -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: the top level must be a mapping with 'warming' and/or 'rules'")
    merged = {**DEFAULT, **raw}
    try:
        data = PolicySchema().load(merged)
    except ValidationError as exc:
        raise PolicyError(f"{source}: invalid policy: {json.dumps(exc.messages)}") from exc
    names = [r.name for r in data["rules"]]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise PolicyError(f"{source}: rule names must be unique: {sorted(dupes)}")
    return Policy(warming=data["warming"], rules=tuple(data["rules"]), public_labels=tuple(data["labels"]["public"]),
                  source=source, raw=merged)


def _read(path: str) -> Policy:
    text = Path(path).read_text()
    try:
        raw = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot parse: {exc}") from exc
    return parse(raw or {}, path)


# Rules run for every event; the operator edits the file while the relay runs.
_files: FileCache[Policy] = FileCache(_read)


@functools.lru_cache(maxsize=1)
def _built_in() -> Policy:
    return parse({}, "built-in")


def load(path: str) -> Policy:
    """The policy at `path` ('' for the built-in one); re-read only when the file changes."""
    if not path:
        return _built_in()
    try:
        return _files.get(path)
    except FileNotFoundError:
        raise PolicyError(f"rules file not found: {path}") from None
