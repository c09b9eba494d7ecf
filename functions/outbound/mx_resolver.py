"""Where mail for a domain goes (RFC 5321 section 5.1, RFC 7505 null MX).

MX records by preference (shuffled within a preference), each host
resolved to its addresses; no MX means the domain's own A/AAAA ("implicit
MX"); a lone `MX 0 .` means the domain accepts no mail. A domain that does
not exist fails permanently; a resolver that cannot answer fails
temporarily, so the message waits rather than bounces.

`answers` keeps what delivery looked up for the records' TTL, as the local
caching resolver of an MTA host does, so a busy destination costs three
queries per TTL rather than per batch. Only delivery uses it: a DKIM or
attestation check elsewhere always asks afresh.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import dns.exception
import dns.resolver

from runtime import replies
from runtime.replies import Reply

# Held by the process, like the parsed DKIM keys; entries expire with their TTL.
answers = dns.resolver.Cache()


class DnsFailure(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True)
class MxHost:
    preference: int
    name: str
    addresses: tuple[str, ...]


def _addresses(resolver: dns.resolver.Resolver, host: str) -> tuple[list[str], bool]:
    """Addresses of `host` and whether the lookup failed temporarily."""
    found: list[str] = []
    transient = False
    for rtype in ("A", "AAAA"):
        try:
            found += [r.address for r in resolver.resolve(host, rtype, search=False)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            pass
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            transient = True
    return found, transient


def resolve(domain: str, resolver: dns.resolver.Resolver) -> list[MxHost]:
    try:
        answer = resolver.resolve(domain, "MX", search=False)
        records = [(r.preference, r.exchange.to_text().rstrip(".")) for r in answer]
    except dns.resolver.NXDOMAIN:
        raise DnsFailure(replies.DOMAIN_NOT_FOUND.format(domain=domain)) from None
    except dns.resolver.NoAnswer:
        records = [(0, domain)]
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
        raise DnsFailure(replies.MX_LOOKUP_FAILED.format(domain=domain, error=type(exc).__name__)) from None
    if len(records) == 1 and records[0][1] in ("", "."):
        raise DnsFailure(replies.NULL_MX.format(domain=domain))
    records = [r for r in records if r[1] not in ("", ".")]
    random.shuffle(records)
    records.sort(key=lambda r: r[0])
    hosts: list[MxHost] = []
    any_transient = False
    for preference, name in records:
        addresses, transient = _addresses(resolver, name)
        any_transient |= transient
        if addresses:
            hosts.append(MxHost(preference, name, tuple(addresses)))
    if not hosts:
        if any_transient:
            raise DnsFailure(replies.MX_ADDRESS_LOOKUP_FAILED.format(domain=domain))
        raise DnsFailure(replies.MX_NO_ADDRESS.format(domain=domain))
    return hosts
