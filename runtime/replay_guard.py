"""A signed invoke API request is good once: every accepted signature is remembered until it expires.

SigV4 alone lets whoever saw a request (a proxy log, a captured packet, a
shared terminal) send it again for as long as its X-Amz-Date is within 15
minutes. Only the main process serves HTTP, so a record in its memory is the
whole truth; if HTTP were ever served by several processes this record would
have to move into a store they share, as the failed-AUTH counts did.
"""
from __future__ import annotations

import heapq
import threading

from runtime.sigv4 import MAX_SKEW

CAPACITY = 50_000


class GuardFull(Exception):
    """More unexpired signatures than the guard may hold: refuse rather than forget one."""


class SeenSignatures:
    def __init__(self, capacity: int = CAPACITY, window: float = MAX_SKEW) -> None:
        self.capacity, self.window = capacity, window
        self._seen: set[str] = set()
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def first_use(self, signature: str, signed_at: float, now: float) -> bool:
        """True the first time `signature` is offered, False for every replay.

        A signature is kept until its request would be refused as too old
        (signed_at + window); older ones are dropped first. When that still
        leaves no room, GuardFull: forgetting a live signature would let it
        be replayed.
        """
        with self._lock:
            while self._expiries and self._expiries[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiries)[1])
            if signature in self._seen:
                return False
            if len(self._seen) >= self.capacity:
                raise GuardFull(f"{len(self._seen)} signed requests within {self.window:g}s")
            self._seen.add(signature)
            heapq.heappush(self._expiries, (signed_at + self.window, signature))
            return True

    def __len__(self) -> int:
        return len(self._seen)
