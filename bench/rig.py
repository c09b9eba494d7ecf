"""The relay every load bench drives: BIND, a recipient MX, the relay, one proven member without caps.

Warm-up tiers are switched off and limits raised so the benches measure
the relay, not the policy.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench import load
from harness.dns import Bind
from harness.mx import SinkMX
from harness.proofs import DomainProofs
from harness.relay import Relay, enroll_published


@contextmanager
def member_relay(work: Path, prefix: str, did: str, domain: str,
                 delivery: dict | None = None) -> Iterator[tuple[Relay, SinkMX, load.Target]]:
    """(relay, recipient MX, a submission target for the member), all stopped on exit."""
    bind = Bind(work / f"{prefix}bind").start()
    mx = SinkMX(work / f"{prefix}mx").start()
    policy = work / f"{prefix}policy.yml"
    policy.write_text("warming:\n  tiers: []\n")
    proofs = DomainProofs(work / f"{prefix}proofs", dns=bind)
    relay = Relay(work / f"{prefix}relay", proofs=proofs, config={
        "rulesFile": str(policy), "limits": {"hourly": 10**7, "daily": 10**8},
        "delivery": {"port": mx.port, **(delivery or {})}, "smtp": {"authFailureLimit": 1000},
    })
    try:
        relay.start()
        bind.publish(relay.logs("operator_dkim.first_boot")[0]["records"])
        bind.mail_domain("recipient.test")
        member = enroll_published(relay, bind, did, domain)
        yield relay, mx, load.Target("127.0.0.1", relay.ports["submission"], domain, member["apiKey"],
                                     f"noreply@{domain}", "recipient.test")
    finally:
        relay.stop()
        proofs.stop()
        mx.stop()
        bind.stop()
