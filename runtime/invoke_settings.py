"""The invoke API's credentials in config.json: `invoke.accessKeyId` / `secretAccessKey` and `invoke.keys`.

Several keys let serverless.yml give each caller only the functions it
needs (`invoke: {api: true, accessKeys: [...]}`); the single pair stays so
existing configs keep working.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from runtime.errors import ManifestError


@dataclass(frozen=True)
class InvokeKey:
    accessKeyId: str
    secretAccessKey: str


@dataclass(frozen=True)
class InvokeSettings:
    accessKeyId: str = ""
    secretAccessKey: str = ""
    region: str = "us-east-1"
    keys: tuple[InvokeKey, ...] = ()

    def credentials(self) -> dict[str, str]:
        """Every configured access key id with its secret; empty = the invoke API is off."""
        pairs = {k.accessKeyId: k.secretAccessKey for k in self.keys}
        if self.accessKeyId and self.secretAccessKey:
            pairs[self.accessKeyId] = self.secretAccessKey
        return pairs


def require_configured_callers(invoke: InvokeSettings, functions: Mapping[str, Any]) -> None:
    """Refuse a serverless.yml whose `invoke.accessKeys` names a key config.json does not have.

    Such a list would silently lock its function away from everyone (or
    from the caller the operator meant), so the relay stops at start-up
    and a deploy fails instead.
    """
    configured = set(invoke.credentials())
    for name, spec in sorted(functions.items()):
        unknown = [key for key in spec.invokeKeys if key not in configured]
        if unknown:
            raise ManifestError(
                f"function {name}: invoke.accessKeys names {', '.join(unknown)}, not configured in config.json "
                f"(invoke.accessKeyId or invoke.keys; configured: {', '.join(sorted(configured)) or 'none'})")


class InvokeKeySchema(Schema):
    class Meta:
        unknown = RAISE

    accessKeyId = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9_.-]{1,128}$", error="not an access key id (1-128 of A-Z a-z 0-9 _ . -)"))
    secretAccessKey = fields.String(required=True, validate=validate.Length(min=1))

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> InvokeKey:
        return InvokeKey(**data)


class InvokeSchema(Schema):
    class Meta:
        unknown = RAISE

    accessKeyId = fields.String()
    secretAccessKey = fields.String()
    region = fields.String()
    keys = fields.List(fields.Nested(InvokeKeySchema))

    @validates_schema
    def _unique_ids(self, data: dict, **kwargs: Any) -> None:
        seen = {data["accessKeyId"]} if data.get("accessKeyId") else set()
        for key in data.get("keys", []):
            if key.accessKeyId in seen:
                raise ValidationError(f"access key id {key.accessKeyId!r} is configured twice", "keys")
            seen.add(key.accessKeyId)

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> InvokeSettings:
        if "keys" in data:
            data["keys"] = tuple(data["keys"])
        return InvokeSettings(**data)
