"""Schedule triggers: invoke a function every `rate(...)`, the first time shortly after start.

Runs do not overlap: a function still busy when its next tick comes skips
that tick. The scheduler holds each running task until it ends: asyncio keeps
only a weak reference, and a run collected mid-flight would never clear its
busy mark, so that schedule would stop for good. Schedules are read from the current deployment each tick, so a
deploy that adds or removes one takes effect without a restart.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from runtime.invoker import FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import ScheduleTrigger

FIRST_RUN_DELAY = 2.0


class Scheduler:
    def __init__(self, runtime: FunctionRuntime, log: JsonLog) -> None:
        self.runtime = runtime
        self.log = log
        self._next: dict[tuple[str, str], float] = {}
        self._busy: set[tuple[str, str]] = set()
        self._running: set[asyncio.Task] = set()

    async def run(self, stop: asyncio.Event) -> None:
        start = time.monotonic()
        while not stop.is_set():
            deployment = self.runtime.require()
            now = time.monotonic()
            for spec in deployment.manifest.functions.values():
                for trigger in spec.triggers(ScheduleTrigger):
                    key = (spec.name, trigger.expression)
                    due = self._next.setdefault(key, start + FIRST_RUN_DELAY)
                    if now < due or key in self._busy:
                        continue
                    self._next[key] = now + trigger.every
                    self._busy.add(key)
                    task = asyncio.create_task(self._fire(deployment, spec.name, trigger, key))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass

    async def _fire(self, deployment, name: str, trigger: ScheduleTrigger, key) -> None:
        event = {
            "version": "0", "source": "atmos.scheduler", "detail-type": "Scheduled Event",
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [f"schedule:{trigger.expression}"], "detail": dict(trigger.input),
        }
        try:
            await self.runtime.invoke_async(name, event, deployment=deployment)
        except Exception as exc:
            self.log.error("schedule.failed", function=name, schedule=trigger.expression, error=repr(exc))
        finally:
            self._busy.discard(key)
