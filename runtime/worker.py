"""`atmos-relay worker`: run the manifest's Faust stream apps as one worker process.

Several workers with the same config form one consumer group and share the
partitions; the app module reads config.json from $ATMOS_RELAY_CONFIG, so
this command exports --config before importing it.
"""
from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from runtime.bootstrap import manifest_path
from runtime.jsonlog import JsonLog, StdlibBridge
from runtime.manifest import load_manifest
from runtime.settings import Settings


def run_worker(settings: Settings, log: JsonLog) -> int:
    if not settings.kafka.bootstrapServers:
        log.error("worker.no_kafka", note="set kafka.bootstrapServers in config.json; without Kafka the "
                                          "stream apps run inside `atmos-relay serve`")
        return 2
    if settings.source != "built-in defaults":
        os.environ["ATMOS_RELAY_CONFIG"] = str(Path(settings.source).resolve())
    manifest = load_manifest(manifest_path(settings))
    apps = [entry["faust"] for entry in manifest.stream_apps.values() if entry.get("faust")]
    if len(apps) != 1:
        log.error("worker.apps", note="expected exactly one Faust app in serverless.yml streamApps", found=apps)
        return 2
    module_name, _, attribute = apps[0].partition(":")
    try:
        app = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # a bad policy or config: say why and stop
        log.error("worker.startup_failed", app=apps[0], error=str(exc))
        return 2
    from faust.worker import Worker

    log.info("worker.starting", app=apps[0], servers=list(settings.kafka.bootstrapServers), pid=os.getpid())
    app.conf.loghandlers = [StdlibBridge(log)]
    worker = Worker(app, loglevel=logging.INFO, logfile=os.devnull, quiet=True, override_logging=True,
                    redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
