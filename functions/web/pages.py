"""HTML pages of the enroll wizard and the dashboard, rendered from `functions/templates`.

Jinja2 autoescapes everything, so a DID, a domain or a suspension reason
typed by someone else can never become markup. Pages carry no scripts and
load nothing from elsewhere (the gateway's CSP forbids both).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from functions.web import http_api

_env = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: float | None) -> str:
    if not value:
        return "—"
    return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


_env.filters["when"] = _when


def render(template: str, **values: Any) -> str:
    return _env.get_template(template).render(**values)


def page(http_status: int, template: str, cookies: list[str] | None = None, **values: Any) -> dict:
    return http_api.html_response(http_status, render(template, **values), cookies=cookies)
