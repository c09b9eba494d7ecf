"""What a newly enrolled member must do, worked out once for the page and the JSON alike.

The enroll success page is the member's only chance to see the API key,
so everything that needs it (the swaks test, the PDS SMTP URL) is built
here, ready to paste. A Bluesky PDS parses `PDS_EMAIL_SMTP_URL` as a URL:
the username must not contain a colon, so it is the domain, never the DID,
and the key is percent-encoded.
"""
from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import quote

from functions.reputation import policy
from runtime.settings import Settings

ATTESTATION_COLLECTION = "email.atmos.attestation"

DAY_ONE_ADVICE = [
    "Expect the first messages to land in spam at some providers: a new sending domain has no history. "
    "That is normal on day 1 and improves as recipients open and reply.",
    "Send only transactional mail (sign-up confirmations, password resets): it is what the "
    "cooperative's reputation is built on.",
    "Publish all the records above, SPF and DMARC included. Start DMARC at p=none and read the reports "
    "before you tighten it.",
    "Send a first message to an inbox you control and check that DKIM, SPF and DMARC all show pass in "
    "its Authentication-Results header.",
    "Ask early recipients who find you in spam to mark the message as not spam; register your domain "
    "with Google Postmaster Tools to watch its reputation (aim for Medium or better by week 2).",
    "Never send to lists you bought or scraped: hard bounces and complaints count against the whole "
    "cooperative and can suspend your account.",
]


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def holding_advice(holds: set[float]) -> str:
    """What happens to mail over a cap (issue 14): a PDS sends each mail once and never retries it."""
    if not any(holds):
        return ("A message over the cap gets a temporary 451 reply; a PDS does not retry, so that mail is lost: "
                "keep within the caps.")
    longest = _span(max(holds))
    return ("A message over the cap is still accepted: the relay holds it and sends it, in the order your PDS "
            f"sent it, as soon as the cap allows (held up to {longest}). Only a message that would wait longer "
            "gets a temporary 451 reply saying when sending resumes; a PDS does not retry, so that mail is lost.")


def warming_advice(tiers: tuple[policy.Tier, ...], max_hold: float = 0.0) -> str:
    """The warm-up caps as the operator configured them, in words, and what happens to mail over them."""
    if not tiers:
        return "Your sending limits apply from the first day; there is no warm-up period. " + holding_advice(
            {max_hold})
    steps, start = [], 0.0
    for tier in tiers:
        steps.append(f"{tier.hourly} messages an hour and {tier.daily} a day from day {start:g} to "
                     f"day {tier.maxAgeDays:g} ({tier.name})")
        start = tier.maxAgeDays
    holds = {max_hold if tier.maxHold is None else tier.maxHold for tier in tiers}
    return "New members warm up, counted from approval: " + "; ".join(steps) + ". " + holding_advice(holds)


def submission_endpoint(settings: Settings) -> dict[str, Any]:
    public = settings.publicSmtp
    return {
        "host": public.host or settings.hostname,
        "submissionPort": public.submissionPort or settings.listen.submission[1],
        "smtpsPort": public.smtpsPort or settings.listen.smtps[1],
    }


def zone_line(record: dict[str, str]) -> str:
    """A BIND zone-file line; TXT values over 255 octets are split into quoted strings."""
    value = record["value"]
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    quoted = " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
    return f"{record['name']}. 3600 IN {record['type']} {quoted}"


def attestation_record(did: str, domain: str, selectors: list[str], operator_domain: str) -> dict[str, Any]:
    """The record a member writes to its own repo, proving the DID vouches for the domain."""
    return {
        "collection": ATTESTATION_COLLECTION,
        "rkey": domain,
        "repo": did,
        "record": {
            "$type": ATTESTATION_COLLECTION,
            "domain": domain,
            "dkimSelectors": selectors,
            "relay": operator_domain,
        },
    }


def instructions(settings: Settings, enrolled: dict[str, Any]) -> dict[str, Any]:
    """Steps 3 to 6 of the wizard for one freshly enrolled (or re-keyed) domain."""
    did, domain, api_key = enrolled["did"], enrolled["domain"], enrolled["apiKey"]
    endpoint = submission_endpoint(settings)
    host, port587, port465 = endpoint["host"], endpoint["submissionPort"], endpoint["smtpsPort"]
    sender = f"noreply@{domain}"
    swaks = " ".join([
        "swaks", "--server", shlex.quote(host), "--port", str(port587), "--tls",
        "--auth", "PLAIN", "--auth-user", shlex.quote(domain), "--auth-password", shlex.quote(api_key),
        "--from", shlex.quote(sender), "--to", "you@example.com",
        "--h-Subject", shlex.quote("Atmosphere Mail test"), "--body", shlex.quote("It works."),
    ])
    user, password = quote(domain, safe=""), quote(api_key, safe="")
    return {
        "smtp": {
            "host": host,
            "ports": [{"port": port587, "security": "STARTTLS"}, {"port": port465, "security": "TLS"}],
            "auth": "PLAIN",
            "username": domain,
            "usernameAlternatives": [did],
            "password": "the API key above",
        },
        "zoneFile": [zone_line(r) for r in enrolled["dnsRecords"]],
        "swaks": swaks,
        "pds": {
            "PDS_EMAIL_SMTP_URL": f"smtps://{user}:{password}@{host}:{port465}/",
            "PDS_EMAIL_SMTP_URL_STARTTLS": f"smtp://{user}:{password}@{host}:{port587}/",
            "PDS_EMAIL_FROM_ADDRESS": sender,
        },
        "attestation": attestation_record(did, domain, list(enrolled["selectors"]), settings.operatorDomain),
        "advice": [DAY_ONE_ADVICE[0], warming_advice(policy.load(settings.rulesFile).warming.tiers,
                                                     settings.limits.maxHold),
                   *DAY_ONE_ADVICE[1:]],
        "statusPage": {"path": "/member/status", "json": "/member/status.json", "username": domain,
                       "usernameAlternatives": [did], "password": "the API key above"},
    }
