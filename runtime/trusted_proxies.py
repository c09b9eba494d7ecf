"""Who is on the other end of an HTTP request, and over which scheme, honouring only trusted proxies.

Behind nginx or a load balancer the TCP peer is the proxy; the client's
address and whether it spoke HTTPS arrive in `X-Forwarded-For` and
`X-Forwarded-Proto`. Anyone can send those headers, so they count only
when the peer is listed in `http.trustedProxies`; from anyone else they
are ignored. The gateway asks here once per request and hands the answer
to every function (`sourceIp`, `x-forwarded-for`, `x-forwarded-proto`), so
the admin throttle, the Secure cookie flag and the enroll throttle all see
the same client.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

ORIGIN_KEY = "atmos.client_origin"
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port")


@dataclass(frozen=True)
class ClientOrigin:
    address: str
    scheme: str  # "http" | "https"

    @property
    def https(self) -> bool:
        return self.scheme == "https"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)

    def origin(self, peer: str, headers: Mapping[str, str], scheme: str) -> ClientOrigin:
        """The client behind `peer`: the nearest X-Forwarded-For hop that is not itself a trusted proxy.

        Each proxy appends the address it saw, so the list is read from the
        right; whatever stands left of the first untrusted hop was written by
        the client and proves nothing. The scheme is the last X-Forwarded-Proto
        value, the one the nearest proxy wrote.
        """
        if not self.trusts(peer):
            return ClientOrigin(peer, scheme)
        address = peer
        for hop in reversed(_values(headers, "x-forwarded-for")):
            if _ip(hop) is None:
                break
            address = hop
            if not self.trusts(hop):
                break
        protos = _values(headers, "x-forwarded-proto")
        forwarded = protos[-1].lower() if protos else ""
        return ClientOrigin(address, forwarded if forwarded in ("http", "https") else scheme)


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every comma-separated value of a header, however many times it was sent."""
    getlist = getattr(headers, "getlist", None)
    raw = getlist(name) if getlist else [headers.get(name, "")]
    return [v.strip() for line in raw if line for v in line.split(",") if v.strip()]


def client_origin(request: Any) -> ClientOrigin:
    """The origin the gateway worked out for this Flask request (the TCP peer if it did not)."""
    return request.environ.get(ORIGIN_KEY) or ClientOrigin(request.remote_addr or "", request.scheme)


def client_address(request: Any) -> str:
    return client_origin(request).address
