"""Is a member's DKIM key in DNS, and is it the key we sign with? Looked up live.

Three answers matter to an operator deciding on approval: published (the
TXT record carries our public key), missing (no record: receivers will
fail the signature) and mismatch (a record, but another key, usually a
half-finished rotation). A DNS failure is reported as such, never as one
of the three.
"""
from __future__ import annotations

import dns.exception
import dns.resolver

from functions.dkim import key_pairs


def txt_strings(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """Each TXT record at `name` with its strings joined, as RFC 6376 3.6.2.2 reads them."""
    answer = resolver.resolve(name, "TXT")
    return [b"".join(rdata.strings).decode("ascii", "replace") for rdata in answer]


def check(resolver: dns.resolver.Resolver, domain: str, selector: str, key_type: str, public_b64: str) -> dict:
    name = f"{selector}._domainkey.{domain}"
    result = {"selector": selector, "name": name, "keyType": key_type}
    try:
        records = txt_strings(resolver, name)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return {**result, "status": "missing", "detail": "no TXT record"}
    except (dns.exception.DNSException, OSError) as exc:
        return {**result, "status": "error", "detail": f"DNS lookup failed: {type(exc).__name__}"}
    keys = [key_pairs.txt_public_key(txt) for txt in records if "p=" in txt]
    if not keys:
        return {**result, "status": "missing", "detail": "TXT record without a DKIM key"}
    if any(p == public_b64 and k == key_type for k, p in keys):
        return {**result, "status": "published", "detail": "record matches the signing key"}
    return {**result, "status": "mismatch", "detail": "the published key is not the one the relay signs with"}


def domain_status(resolver: dns.resolver.Resolver, row) -> list[dict]:
    """Both selectors of one `member_domains` row."""
    base = row["dkim_selector"]
    return [check(resolver, row["domain"], key_pairs.rsa_selector(base), "rsa", row["dkim_rsa_pubkey"]),
            check(resolver, row["domain"], key_pairs.ed25519_selector(base), "ed25519", row["dkim_ed_pubkey"])]
