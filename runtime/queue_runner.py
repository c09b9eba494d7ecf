"""The spool trigger: hand due recipients to the function bound to `spool`, in batches per route.

A batch holds recipients of one route (the recipient domain), so the
handler can reuse one connection for all of them. At most
`delivery.perDomainConcurrency` batches per route and
`delivery.concurrency` in all are in flight. Items are leased for the run;
whatever a failed run leaves unsettled goes back to the queue after a pause.

Under load a route that already has batches in flight gets another only
when enough fresh mail has gathered to fill it (BATCH_FILL per batch in
flight) or the oldest waiting item is HOLD_AT_MOST old: one transaction and
one hand-off per batch instead of per message, with a bounded wait.

Every REAP_EVERY seconds the runner also deletes spool segments nothing
points into any more (Spool.reap).
"""
from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

from runtime.clock import Clock
from runtime.invoker import FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import SpoolTrigger
from runtime.settings import Settings
from runtime.spool import Due, Spool

FAILED_RUN_PAUSE = 60.0
BATCH_FILL = 4
HOLD_AT_MOST = 0.5
RECHECK_HOLD = 0.02
REAP_EVERY = 30.0


def worth_waiting(busy: int, items: list[Due], batch_size: int, now: float) -> bool:
    """Whether a route with `busy` batches in flight should let a few fresh items gather before another."""
    if not busy or len(items) >= min(batch_size, BATCH_FILL * busy):
        return False
    return now - min(item.created_at for item in items) < HOLD_AT_MOST


def take_batch(items: list[Due], size: int) -> tuple[list[Due], list[Due]]:
    """Up to `size` recipients, never splitting one message's recipients across batches needlessly."""
    ordered = sorted(items, key=lambda d: (d.queue_id, d.recipient))
    return ordered[:size], ordered[size:]


class QueueRunner:
    def __init__(self, settings: Settings, runtime: FunctionRuntime, spool: Spool, clock: Clock,
                 log: JsonLog) -> None:
        self.settings = settings
        self.runtime = runtime
        self.spool = spool
        self.clock = clock
        self.log = log
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[str, int] = defaultdict(int)
        self._total = 0
        self._tasks: set[asyncio.Task] = set()
        self._held: asyncio.TimerHandle | None = None
        self._holding = False
        spool.on_wake(self.wake)

    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _binding(self):
        deployment = self.runtime.require()
        for spec in deployment.manifest.functions.values():
            for trigger in spec.triggers(SpoolTrigger):
                return deployment, spec, trigger
        return deployment, None, None

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        reap_at = self._loop.time() + REAP_EVERY
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._dispatch()
                if self._loop.time() >= reap_at:
                    reap_at = self._loop.time() + REAP_EVERY
                    await asyncio.to_thread(self.spool.reap)
            except Exception as exc:
                self.log.error("spool.runner_error", error=repr(exc))
            if self._holding:
                # Each arrival wakes us; while holding, count again only after a few more came in.
                await asyncio.sleep(RECHECK_HOLD)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    async def _dispatch(self) -> None:
        deployment, spec, trigger = self._binding()
        if spec is None:
            return
        self._holding = False
        delivery = self.settings.delivery
        capacity = delivery.concurrency - self._total
        if capacity <= 0:
            return
        # Routes already at their concurrency could take nothing: their items stay in SQLite.
        full = [route for route, n in self._in_flight.items() if n >= delivery.perDomainConcurrency]
        due = await asyncio.to_thread(self.spool.due, self.clock.now(), capacity * trigger.batchSize, full)
        by_route: dict[str, list[Due]] = defaultdict(list)
        for item in due:
            by_route[item.route].append(item)
        now = self.clock.now()
        for route, items in by_route.items():
            while items and self._in_flight[route] < delivery.perDomainConcurrency and self._total < delivery.concurrency:
                if worth_waiting(self._in_flight.get(route, 0), items, trigger.batchSize, now):
                    self._holding = True
                    self._hold_wake()
                    break
                batch, items = take_batch(items, trigger.batchSize)
                token = uuid.uuid4().hex
                lease_until = self.clock.now() + spec.timeout + 30
                claimed = await asyncio.to_thread(self.spool.lease, batch, lease_until, token)
                if not claimed:
                    continue
                self._in_flight[route] += 1
                self._total += 1
                task = asyncio.create_task(self._run_batch(deployment, spec.name, route, claimed, token))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _hold_wake(self) -> None:
        """Come back when the hold expires even if no batch finishes and no mail arrives."""
        if self._loop is None:
            return
        if self._held is None or self._held.cancelled() or self._held.when() <= self._loop.time():
            self._held = self._loop.call_later(HOLD_AT_MOST, self._wake.set)

    async def _run_batch(self, deployment, function: str, route: str, items: list[Due], token: str) -> None:
        event = {
            "trigger": "spool",
            "route": route,
            "lease_token": token,
            "items": [{"queue_id": d.queue_id, "recipient": d.recipient, "attempts": d.attempts,
                       "created_at": d.created_at} for d in items],
        }
        try:
            await self.runtime.invoke_async(function, event, deployment=deployment)
        except Exception as exc:
            self.log.error("spool.batch_failed", function=function, route=route, items=len(items), error=repr(exc))
        finally:
            try:
                left = await asyncio.to_thread(self.spool.release, token, self.clock.now() + FAILED_RUN_PAUSE)
                if left:
                    self.log.warning("spool.released_unsettled", route=route, items=left, retry_in=FAILED_RUN_PAUSE)
            finally:
                self._in_flight[route] -= 1
                if not self._in_flight[route]:
                    del self._in_flight[route]
                self._total -= 1
                self.wake()
