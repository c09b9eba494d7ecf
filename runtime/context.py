"""What a handler gets besides its event: a Lambda-style context plus the platform services.

The attributes Lambda code expects are all here (function_name,
function_version, aws_request_id, get_remaining_time_in_millis, ...). The
services (settings, store, bus, spool, clock, resolver) are how a stateless
handler reaches state: whatever an answer depends on is in the store, the
state directory's files or the event topics, never only in memory.

Module globals hold caches of what can be derived again, per process, so
losing one (a restart, `atmos-relay deploy` reloading functions/) changes
no answer, only its cost: parsed DKIM keys (dkim.signer), the operator key
file and the policy file (runtime.file_cache, re-read when the file
changes), MX answers for their TTL (outbound.mx_resolver), idle delivery
connections (outbound.smtp_session), API keys verified in the last minutes
(members.api_keys), compiled templates (web.pages), and the HTTP routes of a
deployment version (runtime.http_gateway).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from runtime.auth_throttle import AuthThrottle
from runtime.bus import EventBus
from runtime.clock import Clock
from runtime.jsonlog import JsonLog
from runtime.settings import Settings
from runtime.spool import Spool
from runtime.store import Store

if TYPE_CHECKING:
    import dns.resolver

    from runtime.manifest import FunctionSpec


@dataclass
class Services:
    settings: Settings
    log: JsonLog
    store: Store
    bus: EventBus
    spool: Spool
    clock: Clock
    _throttle: AuthThrottle | None = field(default=None, repr=False)
    _throttle_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def auth_throttle(self) -> AuthThrottle:
        """The failed-login counts SMTP AUTH keeps (auth-failures.sqlite), for every other door with a secret."""
        with self._throttle_lock:
            if self._throttle is None:
                self._throttle = AuthThrottle.from_settings(self.settings)
            return self._throttle

    def resolver(self) -> dns.resolver.Resolver:
        """A resolver on the configured name servers (the system's when none are set)."""
        import dns.resolver  # on first use: dnspython costs a one-shot command 0.13 s to import

        dns_settings = self.settings.dns
        if dns_settings.nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = list(dns_settings.nameservers)
            resolver.port = dns_settings.port
        else:
            resolver = dns.resolver.Resolver()
        resolver.lifetime = dns_settings.timeout
        resolver.timeout = min(dns_settings.timeout, 2.0)
        return resolver


class LambdaContext:
    """The context object of one invocation."""

    def __init__(self, spec: "FunctionSpec", version: str, request_id: str, deadline: float,
                 services: Services, invoke: Callable[..., Any]) -> None:
        self.function_name = spec.name
        self.function_version = version
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{spec.name}"
        self.memory_limit_in_mb = spec.memorySize
        self.aws_request_id = request_id
        self.log_group_name = f"/atmos-relay/{spec.name}"
        self.log_stream_name = f"v{version}"
        self.identity = None
        self.client_context = None
        self._deadline = deadline
        self._services = services
        self._invoke = invoke
        self.logger: JsonLog = services.log.bind(function=spec.name, request_id=request_id)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @property
    def timed_out(self) -> bool:
        return time.monotonic() >= self._deadline

    @property
    def settings(self) -> Settings:
        return self._services.settings

    @property
    def store(self) -> Store:
        return self._services.store

    @property
    def bus(self) -> EventBus:
        return self._services.bus

    @property
    def spool(self) -> Spool:
        return self._services.spool

    @property
    def clock(self) -> Clock:
        return self._services.clock

    def resolver(self) -> dns.resolver.Resolver:
        return self._services.resolver()

    def auth_throttle(self) -> AuthThrottle:
        return self._services.auth_throttle()

    def invoke(self, name: str, event: dict) -> Any:
        """Call another function in-process, within what is left of this one's time."""
        return self._invoke(name, event, parent_deadline=self._deadline)
