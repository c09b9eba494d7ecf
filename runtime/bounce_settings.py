"""What bounces may do beyond a single report: `suppression.*` (soft bounces that repeat) and `poolBlocks.*`.

A full or suspended mailbox is no reason to stop writing to it once, but
one that keeps bouncing for days is: `softRepeats` bounces within
`softWindowDays` suppress the recipient (0: never). A provider refusing
the pool's mail is an operator alert, raised again at most once per
`alertInterval` while it lasts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, Schema, fields, post_load, validate

from runtime.config_fields import Duration


@dataclass(frozen=True)
class SuppressionSettings:
    softRepeats: int = 3
    softWindowDays: int = 7

    @property
    def window_seconds(self) -> float:
        return self.softWindowDays * 86400.0


@dataclass(frozen=True)
class PoolBlockSettings:
    alertInterval: float = 3600.0


class SuppressionSchema(Schema):
    class Meta:
        unknown = RAISE

    softRepeats = fields.Integer(validate=validate.Range(0, 1000))
    softWindowDays = fields.Integer(validate=validate.Range(1, 365))

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> SuppressionSettings:
        return SuppressionSettings(**data)


class PoolBlockSchema(Schema):
    class Meta:
        unknown = RAISE

    alertInterval = Duration(validate=validate.Range(min=1))

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> PoolBlockSettings:
        return PoolBlockSettings(**data)
