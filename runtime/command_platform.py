"""What every `atmos-relay` command stands on: its platform, its errors, its JSON output.

A one-shot command imports only the handlers it invokes (`eager=False`);
`serve` and `deploy` import all of them up front.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from runtime.bootstrap import Platform, build
from runtime.errors import FunctionNotFound, RelayError
from runtime.jsonlog import JsonLog, install_stdlib_bridge
from runtime.payload import to_json
from runtime.settings import load_settings


class CliError(Exception):
    """A command's failure as the operator reads it on stderr, with the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def platform_for(args: argparse.Namespace, *, eager: bool = False) -> Platform:
    """A one-shot command's platform; its log goes to stderr, its answer to stdout."""
    settings = load_settings(args.config)
    log = JsonLog(sys.stderr)
    install_stdlib_bridge(log)
    return build(settings, log, eager=eager)


def print_json(value: Any) -> None:
    print(to_json(value, indent=2))


def invoke(platform: Platform, name: str, event: dict) -> Any:
    try:
        return platform.runtime.invoke(name, event)
    except RelayError as exc:
        raise CliError(exc.reply.text if exc.reply.code >= 400 else str(exc)) from exc
    except FunctionNotFound as exc:
        raise CliError(str(exc)) from exc
