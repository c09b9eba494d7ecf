"""serverless.yml: which functions exist, what triggers them, how long they may run.

The file follows the Serverless Framework's shape (`functions.<name>.handler`,
`timeout`, `events`) with triggers for what a mail relay is woken by: an SMTP
hook, an HTTP route, a stream topic, a schedule, or the delivery spool.
Two gates: `invoke: {api: true}` lets the Lambda-compatible invoke API call
a function (default: internal only; never an SMTP hook), and `authorizer:
<function>` puts that function in front of every HTTP route of this one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from runtime.errors import ManifestError

SMTP_LISTENERS = ("submission", "smtps", "mx")
SMTP_HOOKS = ("auth", "mail", "rcpt", "data")
WEBSOCKET_LISTENERS = ("labeler",)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "ANY")
_RATE = re.compile(r"^rate\((\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# libyaml's safe loader when PyYAML was built with it: ten times faster, read by every process at start.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class SmtpTrigger:
    listeners: tuple[str, ...]
    hook: str


@dataclass(frozen=True)
class HttpTrigger:
    method: str
    path: str


@dataclass(frozen=True)
class StreamTrigger:
    topic: str
    batchSize: int = 100
    startingPosition: str = "TRIM_HORIZON"


@dataclass(frozen=True)
class ScheduleTrigger:
    every: float
    input: dict = field(default_factory=dict)
    expression: str = ""


@dataclass(frozen=True)
class SpoolTrigger:
    batchSize: int = 50


@dataclass(frozen=True)
class StartupTrigger:
    """Run once when `atmos-relay serve` starts, before the listeners open."""


@dataclass(frozen=True)
class WebSocketTrigger:
    """A WebSocket path on its own listener; the function is polled for the frames to send (runtime.websocket_edge)."""

    listener: str
    path: str
    pollInterval: float = 0.5
    maxConnections: int = 100


Trigger = SmtpTrigger | HttpTrigger | StreamTrigger | ScheduleTrigger | SpoolTrigger | StartupTrigger | WebSocketTrigger


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    timeout: float
    memorySize: int
    reservedConcurrency: int
    description: str
    events: tuple[Trigger, ...]
    invokeApi: bool = False
    authorizer: str = ""
    invokeKeys: tuple[str, ...] = ()

    def invocable_by(self, access_key_id: str) -> bool:
        """Exposed, and to this key: no `accessKeys` list means every configured key."""
        return self.invokeApi and (not self.invokeKeys or access_key_id in self.invokeKeys)

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def attribute(self) -> str:
        return self.handler.rpartition(".")[2]

    def triggers(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass(frozen=True)
class Manifest:
    service: str
    path: Path
    functions: dict[str, FunctionSpec]
    reload_packages: tuple[str, ...]
    migrations: str
    attach: dict[str, str]
    stream_apps: dict[str, dict[str, str]]

    def smtp_binding(self, listener: str, hook: str) -> FunctionSpec | None:
        for spec in self.functions.values():
            for trig in spec.triggers(SmtpTrigger):
                if trig.hook == hook and listener in trig.listeners:
                    return spec
        return None


def _rate_seconds(expr: str) -> float:
    match = _RATE.match(expr.strip())
    if not match:
        raise ValidationError(f"schedule must look like rate(5 minutes), got {expr!r}")
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    if amount < 1:
        raise ValidationError("schedule rate must be at least 1")
    return amount * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class SmtpTriggerSchema(_Strict):
    listeners = fields.List(fields.String(validate=validate.OneOf(SMTP_LISTENERS)), required=True,
                            validate=validate.Length(min=1))
    hook = fields.String(required=True, validate=validate.OneOf(SMTP_HOOKS))


class HttpTriggerSchema(_Strict):
    method = fields.String(required=True, validate=validate.OneOf(HTTP_METHODS))
    path = fields.String(required=True, validate=validate.Regexp(r"^/[^\s]*$"))


class StreamTriggerSchema(_Strict):
    topic = fields.String(required=True, validate=validate.Length(min=1))
    batchSize = fields.Integer(load_default=100, validate=validate.Range(1, 10000))
    startingPosition = fields.String(load_default="TRIM_HORIZON", validate=validate.OneOf(["TRIM_HORIZON", "LATEST"]))


class ScheduleTriggerSchema(_Strict):
    rate = fields.String(required=True)
    input = fields.Dict(load_default=dict)


class SpoolTriggerSchema(_Strict):
    batchSize = fields.Integer(load_default=50, validate=validate.Range(1, 1000))


class InvokeSchema(_Strict):
    api = fields.Boolean(load_default=False)
    accessKeys = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)


class WebSocketTriggerSchema(_Strict):
    listener = fields.String(required=True, validate=validate.OneOf(WEBSOCKET_LISTENERS))
    path = fields.String(required=True, validate=validate.Regexp(r"^/[^\s?#]*$"))
    pollInterval = fields.Float(load_default=0.5, validate=validate.Range(0.05, 60))
    maxConnections = fields.Integer(load_default=100, validate=validate.Range(1, 100000))


class FunctionSchema(_Strict):
    handler = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z_][\w./]*\.[A-Za-z_]\w*$"))
    description = fields.String(load_default="")
    timeout = fields.Float(load_default=None, validate=validate.Range(0.1, 900))
    memorySize = fields.Integer(load_default=256, validate=validate.Range(64, 10240))
    reservedConcurrency = fields.Integer(load_default=None, validate=validate.Range(1, 1024))
    events = fields.List(fields.Dict(), load_default=list)
    invoke = fields.Nested(InvokeSchema, load_default=lambda: {"api": False, "accessKeys": []})
    authorizer = fields.String(load_default="", validate=validate.Regexp(r"^$|^[A-Za-z0-9_-]{1,64}$"))

    @validates_schema
    def _events(self, data: dict, **kwargs: Any) -> None:
        for i, event in enumerate(data.get("events", [])):
            if len(event) != 1:
                raise ValidationError(f"event {i} must have exactly one trigger key", "events")


class ManifestSchema(Schema):
    class Meta:
        unknown = RAISE

    service = fields.String(required=True)
    frameworkVersion = fields.Raw()
    provider = fields.Dict(load_default=dict)
    package = fields.Dict(load_default=dict)
    store = fields.Dict(load_default=dict)
    streamApps = fields.Dict(load_default=dict)
    custom = fields.Dict(load_default=dict)
    functions = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)


def _trigger(raw: dict) -> Trigger:
    (kind, body), = raw.items()
    if kind == "smtp":
        data = SmtpTriggerSchema().load(body)
        return SmtpTrigger(tuple(data["listeners"]), data["hook"])
    if kind in ("httpApi", "http"):
        if isinstance(body, str):
            method, _, path = body.partition(" ")
            body = {"method": method.upper(), "path": path.strip()}
        data = HttpTriggerSchema().load(body)
        return HttpTrigger(data["method"], data["path"])
    if kind == "stream":
        data = StreamTriggerSchema().load(body if isinstance(body, dict) else {"topic": body})
        return StreamTrigger(**data)
    if kind == "schedule":
        data = ScheduleTriggerSchema().load(body if isinstance(body, dict) else {"rate": body})
        return ScheduleTrigger(_rate_seconds(data["rate"]), data["input"], data["rate"])
    if kind == "spool":
        data = SpoolTriggerSchema().load(body or {})
        return SpoolTrigger(**data)
    if kind == "startup":
        return StartupTrigger()
    if kind == "websocket":
        return WebSocketTrigger(**WebSocketTriggerSchema().load(body or {}))
    raise ValidationError(f"unknown trigger {kind!r} (smtp, httpApi, stream, schedule, spool, startup, websocket)")


def _check_gates(path: Path, functions: dict[str, FunctionSpec]) -> None:
    """An SMTP hook is never callable from the invoke API; an authorizer is a function that needs none."""
    for name, spec in functions.items():
        if spec.invokeApi and spec.triggers(SmtpTrigger):
            raise ManifestError(f"{path}: function {name}: an smtp hook cannot be exposed with invoke: {{api: true}}")
        if spec.invokeKeys and not spec.invokeApi:
            raise ManifestError(f"{path}: function {name}: invoke.accessKeys needs invoke: {{api: true}}")
        if not spec.authorizer:
            continue
        gate = functions.get(spec.authorizer)
        if gate is None:
            raise ManifestError(f"{path}: function {name}: authorizer {spec.authorizer!r} is not a function")
        if gate.authorizer or gate.events:
            raise ManifestError(f"{path}: function {name}: authorizer {spec.authorizer!r} must have no"
                                " authorizer or events of its own")
        if not spec.triggers(HttpTrigger):
            raise ManifestError(f"{path}: function {name}: an authorizer guards httpApi routes; it has none")


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate serverless.yml; every problem names its function."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    try:
        doc = ManifestSchema().load(raw or {})
    except ValidationError as exc:
        raise ManifestError(f"{path}: {exc.messages}") from exc
    provider = doc["provider"]
    default_timeout = float(provider.get("timeout", 6))
    default_concurrency = int(provider.get("reservedConcurrency", 16))
    functions: dict[str, FunctionSpec] = {}
    smtp_seen: dict[tuple[str, str], str] = {}
    for name, body in doc["functions"].items():
        if not _NAME.match(name):
            raise ManifestError(f"{path}: function name {name!r} must be 1-64 of A-Z a-z 0-9 _ -")
        try:
            data = FunctionSchema().load(body or {})
            events = tuple(_trigger(e) for e in data["events"])
        except ValidationError as exc:
            raise ManifestError(f"{path}: function {name}: {exc.messages}") from exc
        handler = data["handler"].replace("/", ".")
        for trig in events:
            if isinstance(trig, SmtpTrigger):
                for listener in trig.listeners:
                    other = smtp_seen.setdefault((listener, trig.hook), name)
                    if other != name:
                        raise ManifestError(
                            f"{path}: smtp {listener}/{trig.hook} is bound to both {other} and {name}")
        functions[name] = FunctionSpec(
            name=name,
            handler=handler,
            timeout=data["timeout"] or default_timeout,
            memorySize=data["memorySize"],
            reservedConcurrency=data["reservedConcurrency"] or default_concurrency,
            description=data["description"],
            events=events,
            invokeApi=data["invoke"]["api"],
            invokeKeys=tuple(data["invoke"].get("accessKeys", ())),
            authorizer=data["authorizer"],
        )
    _check_gates(path, functions)
    reload_packages = tuple(doc["package"].get("reload", [])) or tuple(
        sorted({spec.handler.split(".")[0] for spec in functions.values()}))
    return Manifest(
        service=doc["service"],
        path=path.resolve(),
        functions=functions,
        reload_packages=reload_packages,
        migrations=str(doc["store"].get("migrations", "")),
        attach={str(k): str(v) for k, v in (doc["store"].get("attach") or {}).items()},
        stream_apps={k: dict(v) for k, v in doc["streamApps"].items()},
    )
