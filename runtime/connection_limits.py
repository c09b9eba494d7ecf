"""How many SMTP connections one listener holds open, in all and per client.

A client that opens thousands of idle connections must not use up the
process's file descriptors and lock out everyone else, so each listener
admits at most `smtp.maxConnectionsPerClient` concurrent connections from one
address (IPv6: one /64, as the AUTH throttle counts) and at most
`smtp.maxConnections` in all. The total is counted in the process that
accepted the connection: each edge process has its own descriptor limit,
and a cap per process is what keeps that limit from being reached. The
per-client count of the edge processes' listeners is one count across all
of them (runtime/client_connection_table.py), or an address would get its
cap once per edge.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from runtime.auth_throttle import address_key
from runtime.client_connection_table import ClientConnectionTable, TableFull


@dataclass
class Admission:
    """One admitted connection; releasing it twice (handshake failed, then closed) counts once."""

    limits: "ConnectionLimits"
    key: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limits._release(self.key)


@dataclass
class ConnectionLimits:
    per_client: int
    total: int
    shared: ClientConnectionTable | None = None  # the edges' common per-client count
    listener: str = ""
    open: Counter = field(default_factory=Counter)
    count: int = 0

    def admit(self, peer: str) -> tuple[Admission | None, str]:
        """An Admission, or None and why not (`per_client` or `total`)."""
        key = address_key(peer)
        if self.shared is None and self.open[key] >= self.per_client:
            return None, "per_client"
        if self.shared is not None:
            try:
                if not self.shared.take(self.listener, key, self.per_client):
                    return None, "per_client"
            except TableFull:
                return None, "total"
        if self.count >= self.total:
            if self.shared is not None:
                self.shared.give_back(self.listener, key)
            return None, "total"
        self.open[key] += 1
        self.count += 1
        return Admission(self, key), ""

    @staticmethod
    def key_of(peer: str) -> str:
        return address_key(peer)

    def held_by(self, peer: str) -> int:
        if self.shared is not None:
            return self.shared.held(self.listener, address_key(peer))
        return self.open.get(address_key(peer), 0)

    def _release(self, key: str) -> None:
        if self.shared is not None:
            self.shared.give_back(self.listener, key)
        self.count -= 1
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]
