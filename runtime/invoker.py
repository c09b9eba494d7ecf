"""The function registry: load handlers from serverless.yml, invoke them, redeploy.

A `Deployment` is an immutable snapshot (manifest + imported handlers). Each
SMTP session and HTTP request pins the deployment current when it began, so
`atmos-relay deploy` swaps in new code without breaking a session midway.
Handlers run on a per-function thread pool sized by `reservedConcurrency`;
the caller waits at most the function's timeout and a handler that overran
cannot commit anything afterwards (see `store.commit_guard`).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.util
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runtime.context import LambdaContext, Services
from runtime.errors import FunctionNotFound, FunctionTimeout, ManifestError
from runtime.invoke_settings import require_configured_callers
from runtime.manifest import FunctionSpec, Manifest, load_manifest
from runtime.store import commit_guard


@dataclass(frozen=True)
class Deployment:
    version: int
    manifest: Manifest
    handlers: dict[str, Callable[[dict, LambdaContext], Any]]
    loaded_at: float
    fingerprint: dict[str, float] = field(default_factory=dict)

    def spec(self, name: str) -> FunctionSpec:
        try:
            return self.manifest.functions[name]
        except KeyError:
            raise FunctionNotFound(name) from None

    def resolve(self, target: str) -> Any:
        """`package.module:attribute` from this deployment's code."""
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module


class HandlerTable(dict):
    """Handlers by function name, imported on first look-up."""

    def __init__(self, manifest: Manifest) -> None:
        super().__init__()
        self._manifest = manifest

    def __missing__(self, name: str) -> Callable[[dict, LambdaContext], Any]:
        spec = self._manifest.functions[name]
        try:
            handler = getattr(importlib.import_module(spec.module), spec.attribute)
        except Exception as exc:
            raise ManifestError(f"function {name}: cannot load handler {spec.handler}: {exc!r}") from exc
        if not callable(handler):
            raise ManifestError(f"function {name}: {spec.handler} is not callable")
        self[name] = handler
        return handler

    def import_all(self) -> None:
        for name in self._manifest.functions:
            self[name]


def _purge(packages: tuple[str, ...]) -> dict[str, Any]:
    removed = {}
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in packages):
            removed[name] = sys.modules.pop(name)
    return removed


def _source_times(packages: tuple[str, ...]) -> dict[str, float]:
    times: dict[str, float] = {}
    for name, module in list(sys.modules.items()):
        if any(name == p or name.startswith(p + ".") for p in packages):
            path = getattr(module, "__file__", None)
            if path and Path(path).exists():
                times[path] = Path(path).stat().st_mtime
    return times


def _unchanged(fingerprint: dict[str, float]) -> bool:
    try:
        return bool(fingerprint) and all(Path(p).stat().st_mtime == m for p, m in fingerprint.items())
    except OSError:
        return False


def preload_handlers(manifest_path: str | Path) -> dict[str, float]:
    """Import every handler before the edge fork server forks (runtime/edge_forkserver.py).

    Returns the sources' fingerprint; `FunctionRuntime(preloaded=...)` keeps these modules on
    its first load, in this process or a fork of it, if no source changed since.
    """
    manifest = load_manifest(manifest_path)
    root = str(manifest.path.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    HandlerTable(manifest).import_all()
    return _source_times(manifest.reload_packages)


def _drop_stale_bytecode(fingerprint: dict[str, float]) -> None:
    """pyc files are validated by whole-second mtime and size; an edit within a second can hide."""
    for path, mtime in fingerprint.items():
        try:
            if Path(path).stat().st_mtime != mtime:
                Path(importlib.util.cache_from_source(path)).unlink(missing_ok=True)
        except (OSError, ValueError, NotImplementedError):
            pass


class FunctionRuntime:
    def __init__(self, services: Services, manifest_path: str | Path,
                 preloaded: dict[str, float] | None = None) -> None:
        self.services = services
        self._preloaded = preloaded or {}
        self.manifest_path = Path(manifest_path)
        self._lock = threading.Lock()
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._version = 0
        self.current: Deployment | None = None
        self.stats: dict[str, dict[str, float]] = {}

    def load(self, eager: bool = True) -> Deployment:
        """(Re)import every handler; the running deployment stays if anything fails.

        `eager=False` is for a one-shot command: a handler is imported when first invoked, so
        `atmos-relay member list` does not pay for importing the classifier.
        """
        with self._lock:
            manifest = load_manifest(self.manifest_path)
            require_configured_callers(self.services.settings.invoke, manifest.functions)
            root = str(manifest.path.parent)
            if root not in sys.path:
                sys.path.insert(0, root)
            keep = self.current is None and _unchanged(self._preloaded)
            previous = {} if keep else _purge(manifest.reload_packages)
            _drop_stale_bytecode(self.current.fingerprint if self.current is not None else self._preloaded)
            importlib.invalidate_caches()
            handlers = HandlerTable(manifest)
            try:
                if eager:
                    handlers.import_all()
            except Exception:
                _purge(manifest.reload_packages)
                sys.modules.update(previous)
                raise
            self._version += 1
            deployment = Deployment(self._version, manifest, handlers, time.time(),
                                    _source_times(manifest.reload_packages))
            self.current = deployment
            return deployment

    def changed_since_load(self) -> list[str]:
        """Source files or the manifest that changed since the current deployment (the deploy plan)."""
        deployment = self.require()
        changed = [p for p, mtime in deployment.fingerprint.items()
                   if not Path(p).exists() or Path(p).stat().st_mtime != mtime]
        if self.manifest_path.stat().st_mtime > deployment.loaded_at:
            changed.append(str(self.manifest_path))
        return changed

    def require(self) -> Deployment:
        if self.current is None:
            raise RuntimeError("no deployment loaded")
        return self.current

    def _pool(self, spec: FunctionSpec) -> concurrent.futures.ThreadPoolExecutor:
        key = f"{spec.name}:{spec.reservedConcurrency}"
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=spec.reservedConcurrency, thread_name_prefix=f"fn-{spec.name}")
                    self._pools[key] = pool
        return pool

    def _slots(self, spec: FunctionSpec) -> threading.BoundedSemaphore:
        key = f"{spec.name}:{spec.reservedConcurrency}"
        slots = self._semaphores.get(key)
        if slots is None:
            with self._lock:
                slots = self._semaphores.setdefault(key, threading.BoundedSemaphore(spec.reservedConcurrency))
        return slots

    def _prepare(self, name: str, event: dict, deployment: Deployment | None,
                 parent_deadline: float | None) -> tuple[Callable[[], Any], float, FunctionSpec]:
        deployment = deployment or self.require()
        spec = deployment.spec(name)
        handler = deployment.handlers[name]
        deadline = time.monotonic() + spec.timeout
        if parent_deadline is not None:
            deadline = min(deadline, parent_deadline)
        request_id = str(uuid.uuid4())
        context = LambdaContext(spec, str(deployment.version), request_id, deadline, self.services,
                                lambda n, e, parent_deadline=None: self.invoke(
                                    n, e, deployment=deployment, parent_deadline=parent_deadline))

        def guard() -> None:
            if context.timed_out:
                raise FunctionTimeout(detail=f"{name} ran past its {spec.timeout:g}s timeout")

        def run() -> Any:
            token = commit_guard.set(guard)
            started = time.monotonic()
            outcome = "error"
            try:
                result = handler(event, context)
                outcome = "returned"
                return result
            except FunctionTimeout:
                outcome = "commit_refused"
                raise
            finally:
                commit_guard.reset(token)
                self._record(name, time.monotonic() - started, outcome == "returned")
                if context.timed_out:  # the caller has had its answer; say how the overrun ended
                    self.services.log.warning("function.finished_late", function=name, outcome=outcome,
                                              seconds=round(time.monotonic() - started, 3), timeout=spec.timeout)

        return run, deadline, spec

    def _submit(self, name: str, event: dict, deployment: Deployment | None,
                parent_deadline: float | None) -> tuple[concurrent.futures.Future, float, FunctionSpec]:
        return self._submit_prepared(*self._prepare(name, event, deployment, parent_deadline))

    def _submit_prepared(self, run: Callable[[], Any], deadline: float,
                         spec: FunctionSpec) -> tuple[concurrent.futures.Future, float, FunctionSpec]:
        slots = self._slots(spec)

        def in_slot() -> Any:
            with slots:
                return run()
        return self._pool(spec).submit(in_slot), deadline, spec

    def _invoke_nested(self, name: str, event: dict, deployment: Deployment | None,
                       parent_deadline: float) -> Any:
        """A handler calling another synchronously runs it on its own thread when the callee has a free slot.

        The caller would only block on the callee's future, so the hand-off to another thread and back
        buys nothing but two context switches. The callee's timeout is still enforced: its commits are
        refused once it overruns (commit_guard), and an overrun is reported as FunctionTimeout.
        Without a free slot it waits in the callee's pool like any other invocation.
        """
        run, deadline, spec = self._prepare(name, event, deployment, parent_deadline)
        slots = self._slots(spec)
        if not slots.acquire(blocking=False):
            return self._wait(*self._submit_prepared(run, deadline, spec))
        try:
            result = run()
            if time.monotonic() <= deadline:
                return result
        except FunctionTimeout:
            if time.monotonic() <= deadline:
                raise
        finally:
            slots.release()
        self.services.log.error("function.timeout", function=name, timeout=spec.timeout)
        raise FunctionTimeout(detail=f"{name} timed out after {spec.timeout:g}s")

    def _wait(self, future: concurrent.futures.Future, deadline: float, spec: FunctionSpec) -> Any:
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            self.services.log.error("function.timeout", function=spec.name, timeout=spec.timeout)
            raise FunctionTimeout(detail=f"{spec.name} timed out after {spec.timeout:g}s") from None

    def _record(self, name: str, seconds: float, ok: bool) -> None:
        entry = self.stats.setdefault(name, {"invocations": 0, "errors": 0, "seconds": 0.0})
        entry["invocations"] += 1
        entry["seconds"] += seconds
        if not ok:
            entry["errors"] += 1

    def invoke(self, name: str, event: dict, *, deployment: Deployment | None = None,
               parent_deadline: float | None = None) -> Any:
        """Run a handler and wait for it, at most its timeout."""
        if parent_deadline is not None:
            return self._invoke_nested(name, event, deployment, parent_deadline)
        return self._wait(*self._submit(name, event, deployment, None))

    async def invoke_async(self, name: str, event: dict, *, deployment: Deployment | None = None) -> Any:
        future, deadline, spec = self._submit(name, event, deployment, None)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self.services.log.error("function.timeout", function=name, timeout=spec.timeout)
            raise FunctionTimeout(detail=f"{name} timed out after {spec.timeout:g}s") from None

    def submit(self, name: str, event: dict, *, deployment: Deployment | None = None) -> concurrent.futures.Future:
        """Fire-and-forget (Lambda's `Event` invocation type); errors are logged."""
        future, _, _ = self._submit(name, event, deployment, None)

        def report(f: concurrent.futures.Future) -> None:
            exc = f.exception()
            if exc is not None:
                self.services.log.error("function.error", function=name, error=repr(exc), invocation="Event")
        future.add_done_callback(report)
        return future

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
