"""Build the platform once: settings → state dir → store → services → deployment.

`serve`, `worker`, `invoke` and the member commands all start here, so a
command run from a shell sees exactly the store and functions the running
relay sees.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from runtime import bus as bus_module
from runtime import spool as spool_module
from runtime.bus import EventBus
from runtime.clock import Clock
from runtime.context import Services
from runtime.invoker import FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import load_manifest
from runtime.settings import Settings
from runtime.spool import Spool
from runtime.store import Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Platform:
    settings: Settings
    services: Services
    runtime: FunctionRuntime


def manifest_path(settings: Settings) -> Path:
    if settings.manifest:
        return Path(settings.manifest)
    env = os.environ.get("ATMOS_RELAY_MANIFEST")
    if env:
        return Path(env)
    return PROJECT_ROOT / "serverless.yml"


def admin_token(settings: Settings, log: JsonLog, announce: bool) -> str:
    """The configured token, else the one generated into stateDir on first start."""
    if settings.adminToken:
        return settings.adminToken
    path = settings.state_path / "admin-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    if announce:
        log.warning("admin_token.generated", admin_token=token, path=str(path),
                    note="shown once; set adminToken in config.json to choose your own")
    return token


def build(settings: Settings, log: JsonLog, *, announce_token: bool = False, eager: bool = True,
          preloaded: dict[str, float] | None = None) -> Platform:
    """`preloaded`: the fingerprint of handlers this process already imported (runtime/edge_forkserver.py)."""
    state = settings.state_path
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    settings = settings.with_changes(adminToken=admin_token(settings, log, announce_token))
    manifest = load_manifest(manifest_path(settings))
    store = Store(state / "relay.sqlite", attach={k: state / v for k, v in manifest.attach.items()})
    store.migrate("runtime.bus", bus_module.MIGRATIONS)
    store.migrate("runtime.spool", spool_module.MIGRATIONS)
    clock = Clock.from_environment()
    services = Services(settings=settings, log=log, store=store, bus=EventBus(store),
                        spool=Spool(state / "queue", store, log, clock), clock=clock)
    runtime = FunctionRuntime(services, manifest_path(settings), preloaded)
    deployment = runtime.load(eager=eager)
    if deployment.manifest.migrations:
        migrations = deployment.resolve(deployment.manifest.migrations)
        store.migrate(deployment.manifest.migrations.partition(":")[0], migrations)
    return Platform(settings, services, runtime)
