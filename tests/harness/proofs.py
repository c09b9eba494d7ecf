"""Where a test member proves its domain the way a real one does: DKIM records in DNS, an attestation in its repo.

The relay is configured with both from the start: BIND for DNS (started at
once: it takes a tenth of a second, and a resolver pointed at a silent port
waits for its timeout) and the fake PLC/PDS for atproto (started at the
first proof; until then a lookup is refused at once and reads as unknown).
A test that has its own BIND (the `dns_server` fixture) proves domains in
that one.
"""
from __future__ import annotations

from pathlib import Path

from harness.atproto import FakeAtproto
from harness.dns import Bind

ATTESTATION = "email.atmos.attestation"


class DomainProofs:
    def __init__(self, workdir: Path, dns: Bind | None = None) -> None:
        self.workdir = Path(workdir)
        self.dns = dns or Bind(self.workdir / "bind").start()
        self._own_dns = dns is None
        self.atproto = FakeAtproto(self.workdir / "atproto")
        self._registered: set[str] = set()

    @property
    def config(self) -> dict:
        return {**self.dns.config, **self.atproto.config}

    def start(self) -> "DomainProofs":
        if self.atproto.proc is None:
            self.atproto.start()
        return self

    def publish(self, enrolled: dict) -> None:
        """The records the relay printed, in the domain's zone (step 4 of the enroll page)."""
        self.dns.publish(enrolled["dnsRecords"])

    def attest(self, did: str, domain: str, selectors: list[str], operator_domain: str = "atmos.test") -> None:
        """The attestation record in the member's own repo, as the enroll page shows it."""
        self.start()
        if did not in self._registered:
            self.atproto.register(did)
            self._registered.add(did)
        self.atproto.put_record(did, ATTESTATION, domain, {
            "$type": ATTESTATION, "domain": domain, "dkimSelectors": selectors, "relay": operator_domain})

    def prove(self, enrolled: dict) -> None:
        """Both halves of the proof for one enrolled (or re-keyed) domain."""
        self.publish(enrolled)
        self.attest(enrolled["did"], enrolled["domain"], enrolled["selectors"])

    def stop(self) -> None:
        if self.atproto.proc is not None:
            self.atproto.stop()
        if self._own_dns and self.dns.proc is not None:
            self.dns.stop()
