"""The relay's one settings object, loaded and validated once at start-up.

Defaults live on the dataclasses; the marshmallow schemas only say what a
value may be. An operator's typo is an error at start-up, never a silently
ignored key.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from runtime.bounce_settings import PoolBlockSchema, PoolBlockSettings, SuppressionSchema, SuppressionSettings
from runtime.config_fields import Duration, HostPort, StringList, WebUrl
from runtime.invoke_settings import InvokeSchema, InvokeSettings


class SettingsError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class ListenSettings:
    submission: tuple[str, int] = ("127.0.0.1", 2587)
    smtps: tuple[str, int] = ("127.0.0.1", 2465)
    mx: tuple[str, int] = ("127.0.0.1", 2525)
    http: tuple[str, int] = ("127.0.0.1", 8080)
    labeler: tuple[str, int] = ("127.0.0.1", 8081)


@dataclass(frozen=True)
class TlsSettings:
    certFile: str = ""
    keyFile: str = ""


@dataclass(frozen=True)
class DnsSettings:
    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 5.0


@dataclass(frozen=True)
class DeliverySettings:
    port: int = 25
    retryIntervals: tuple[float, ...] = (300, 600, 1200, 1800, 3600, 7200, 14400)
    maxAge: float = 5 * 86400
    concurrency: int = 32
    perDomainConcurrency: int = 4
    connectTimeout: float = 30.0
    commandTimeout: float = 120.0
    requireTls: bool = False


@dataclass(frozen=True)
class KafkaSettings:
    bootstrapServers: tuple[str, ...] = ()
    groupId: str = "atmos-relay"
    partitions: int = 4


@dataclass(frozen=True)
class HttpSettings:
    """Trusted proxies (their X-Forwarded-For is believed, no per-client cap) and what one client may hold."""

    trustedProxies: tuple[str, ...] = ()
    headerTimeout: float = 10.0
    bodyTimeout: float = 60.0
    maxConnections: int = 256
    maxConnectionsPerClient: int = 16
    maxFormSize: int = 64 * 1024


@dataclass(frozen=True)
class SmtpSettings:
    maxMessageSize: int = 10 * 1024 * 1024
    maxRecipients: int = 100
    sessionTimeout: float = 300.0
    authFailureLimit: int = 3
    authFailureWindow: float = 600.0
    authFailureDelay: float = 2.0
    authFailureMaxDelay: float = 30.0
    processes: int = 1
    maxConnectionsPerClient: int = 20
    maxConnections: int = 1000


@dataclass(frozen=True)
class LimitSettings:
    hourly: int = 200
    daily: int = 2000
    maxHold: float = 3600.0


@dataclass(frozen=True)
class AtprotoSettings:
    plcUrl: str = "https://plc.directory"
    timeout: float = 10.0
    allowPrivateAddresses: bool = False  # members' PDSes on loopback/private networks: tests, private deployments


@dataclass(frozen=True)
class PublicSmtpSettings:
    """Where members connect, as the enroll page prints it (a NAT or a port map may differ from `listen`)."""

    host: str = ""
    submissionPort: int = 0
    smtpsPort: int = 0


@dataclass(frozen=True)
class LabelerSettings:
    """The atproto labeler's identity: empty `did` is did:web:<hostname>, empty `publicUrl` https://<hostname>."""

    did: str = ""
    publicUrl: str = ""
    keyType: str = "secp256k1"


@dataclass(frozen=True)
class Settings:
    hostname: str = "localhost.localdomain"
    operatorDomain: str = "atmos.test"
    stateDir: str = "./state"
    manifest: str = ""
    adminToken: str = ""
    operatorForwardTo: str = ""
    listen: ListenSettings = field(default_factory=ListenSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    invoke: InvokeSettings = field(default_factory=InvokeSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    atproto: AtprotoSettings = field(default_factory=AtprotoSettings)
    publicSmtp: PublicSmtpSettings = field(default_factory=PublicSmtpSettings)
    labeler: LabelerSettings = field(default_factory=LabelerSettings)
    rulesFile: str = ""
    suppressionTtl: float = 90 * 86400
    rejectedActionsRetention: float = 30 * 86400
    suppression: SuppressionSettings = field(default_factory=SuppressionSettings)
    poolBlocks: PoolBlockSettings = field(default_factory=PoolBlockSettings)
    source: str = "built-in defaults"

    @property
    def state_path(self) -> Path:
        return Path(self.stateDir)

    def with_changes(self, **changes: Any) -> "Settings":
        values = {f.name: getattr(self, f.name) for f in dc_fields(self)}
        values.update(changes)
        return Settings(**values)


def _section(schema_cls: type[Schema], target: type) -> fields.Nested:
    return fields.Nested(schema_cls, load_default=target, unknown=RAISE)


class _Base(Schema):
    class Meta:
        unknown = RAISE

    target: type = object

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> Any:
        return self.target(**data)


class ListenSchema(_Base):
    target = ListenSettings
    submission = HostPort()
    smtps = HostPort()
    mx = HostPort()
    http = HostPort()
    labeler = HostPort()


class TlsSchema(_Base):
    target = TlsSettings
    certFile = fields.String()
    keyFile = fields.String()


class DnsSchema(_Base):
    target = DnsSettings
    nameservers = StringList()
    port = fields.Integer(validate=validate.Range(1, 65535))
    timeout = Duration()

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> DnsSettings:
        if "nameservers" in data:
            data["nameservers"] = tuple(data["nameservers"])
        return DnsSettings(**data)


class DeliverySchema(_Base):
    target = DeliverySettings
    port = fields.Integer(validate=validate.Range(1, 65535))
    retryIntervals = fields.List(Duration(), validate=validate.Length(min=1))
    maxAge = Duration()
    concurrency = fields.Integer(validate=validate.Range(1, 1024))
    perDomainConcurrency = fields.Integer(validate=validate.Range(1, 256))
    connectTimeout = Duration()
    commandTimeout = Duration()
    requireTls = fields.Boolean()

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> DeliverySettings:
        if "retryIntervals" in data:
            data["retryIntervals"] = tuple(data["retryIntervals"])
        return DeliverySettings(**data)


class KafkaSchema(_Base):
    target = KafkaSettings
    bootstrapServers = StringList()
    groupId = fields.String(validate=validate.Length(min=1))
    partitions = fields.Integer(validate=validate.Range(1, 1024))

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> KafkaSettings:
        if "bootstrapServers" in data:
            data["bootstrapServers"] = tuple(data["bootstrapServers"])
        return KafkaSettings(**data)


def _network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError(f"not an address or CIDR: {value!r}") from exc


class HttpSchema(_Base):
    target = HttpSettings
    trustedProxies = fields.List(fields.String(validate=_network))
    headerTimeout = Duration(validate=validate.Range(min=0.5))
    bodyTimeout = Duration(validate=validate.Range(min=0.5))
    maxConnections = fields.Integer(validate=validate.Range(8, 65536))
    maxConnectionsPerClient = fields.Integer(validate=validate.Range(1, 65536))
    maxFormSize = fields.Integer(validate=validate.Range(1024, 1 << 30))

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> HttpSettings:
        if "trustedProxies" in data:
            data["trustedProxies"] = tuple(data["trustedProxies"])
        return HttpSettings(**data)


class SmtpSchema(_Base):
    target = SmtpSettings
    maxMessageSize = fields.Integer(validate=validate.Range(1024, 1 << 31))
    maxRecipients = fields.Integer(validate=validate.Range(1, 10000))
    sessionTimeout = Duration()
    authFailureLimit = fields.Integer(validate=validate.Range(1, 1000))
    authFailureWindow = Duration()
    authFailureDelay = Duration()
    authFailureMaxDelay = Duration()
    processes = fields.Integer(validate=validate.Range(0, 64))
    maxConnectionsPerClient = fields.Integer(validate=validate.Range(1, 100_000))
    maxConnections = fields.Integer(validate=validate.Range(1, 1_000_000))

    @validates_schema
    def _room_for_others(self, data: dict, **kwargs: Any) -> None:
        per_client = data.get("maxConnectionsPerClient", SmtpSettings.maxConnectionsPerClient)
        if per_client >= data.get("maxConnections", SmtpSettings.maxConnections):
            raise ValidationError("must leave room for other clients: above maxConnectionsPerClient",
                                  "maxConnections")


class LimitSchema(_Base):
    target = LimitSettings
    hourly = fields.Integer(validate=validate.Range(0, 10_000_000))
    daily = fields.Integer(validate=validate.Range(0, 100_000_000))
    maxHold = Duration(validate=validate.Range(0, 30 * 86400))


class AtprotoSchema(_Base):
    target = AtprotoSettings
    plcUrl = WebUrl()
    timeout = Duration()
    allowPrivateAddresses = fields.Boolean()


class PublicSmtpSchema(_Base):
    target = PublicSmtpSettings
    host = fields.String()
    submissionPort = fields.Integer(validate=validate.Range(0, 65535))
    smtpsPort = fields.Integer(validate=validate.Range(0, 65535))


class LabelerSchema(_Base):
    target = LabelerSettings
    did = fields.String(validate=validate.Regexp(
        r"^$|^did:plc:[a-z2-7]{24}$|^did:web:[a-z0-9.-]+(%3A[0-9]{1,5})?$",
        error="a did:plc:<24 base32 characters> or did:web:<host> (empty: did:web:<hostname>)"))
    publicUrl = WebUrl(allow_empty=True)
    keyType = fields.String(validate=validate.OneOf(["secp256k1", "p256"]))


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", re.I)


class SettingsSchema(_Base):
    target = Settings
    hostname = fields.String(validate=validate.Regexp(_HOSTNAME, error="not a host name"))
    operatorDomain = fields.String(validate=validate.Regexp(_HOSTNAME, error="not a domain"))
    stateDir = fields.String(validate=validate.Length(min=1))
    manifest = fields.String()
    adminToken = fields.String()
    operatorForwardTo = fields.String(
        validate=validate.Regexp(r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$", error="not an email address"))
    listen = _section(ListenSchema, ListenSettings)
    tls = _section(TlsSchema, TlsSettings)
    dns = _section(DnsSchema, DnsSettings)
    delivery = _section(DeliverySchema, DeliverySettings)
    kafka = _section(KafkaSchema, KafkaSettings)
    invoke = _section(InvokeSchema, InvokeSettings)
    http = _section(HttpSchema, HttpSettings)
    smtp = _section(SmtpSchema, SmtpSettings)
    limits = _section(LimitSchema, LimitSettings)
    atproto = _section(AtprotoSchema, AtprotoSettings)
    publicSmtp = _section(PublicSmtpSchema, PublicSmtpSettings)
    labeler = _section(LabelerSchema, LabelerSettings)
    rulesFile = fields.String()
    suppressionTtl = Duration()
    rejectedActionsRetention = Duration()
    suppression = _section(SuppressionSchema, SuppressionSettings)
    poolBlocks = _section(PoolBlockSchema, PoolBlockSettings)


def _flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        out: list[str] = []
        for key, value in errors.items():
            out.extend(_flatten_errors(value, f"{prefix}{key}." if not isinstance(key, int) else f"{prefix}[{key}]."))
        return out
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [f"{prefix.rstrip('.')}: {'; '.join(errors)}"]
    return [f"{prefix.rstrip('.')}: {errors}"]


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read --config, else $ATMOS_RELAY_CONFIG, else the development defaults.

    Relative paths inside a config file are taken from the file's directory,
    so a unit file and a shell in another directory see the same relay.
    """
    path = path or os.environ.get("ATMOS_RELAY_CONFIG") or None
    raw: dict[str, Any] = {}
    base = Path.cwd()
    source = "built-in defaults"
    if path:
        config_path = Path(path)
        try:
            raw = json.loads(config_path.read_text())
        except FileNotFoundError as exc:
            raise SettingsError(f"config file not found: {config_path}") from exc
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{config_path}: not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"{config_path}: the top level must be a JSON object")
        base = config_path.resolve().parent
        source = str(config_path)
    try:
        settings: Settings = SettingsSchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(_flatten_errors(exc.messages))
        raise SettingsError(f"{source}: invalid configuration: {problems}") from exc

    def resolve(p: str) -> str:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    tls = TlsSettings(certFile=resolve(settings.tls.certFile), keyFile=resolve(settings.tls.keyFile))
    return settings.with_changes(
        stateDir=resolve(settings.stateDir),
        manifest=resolve(settings.manifest),
        rulesFile=resolve(settings.rulesFile),
        tls=tls,
        source=source,
    )
