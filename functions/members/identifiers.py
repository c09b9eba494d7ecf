"""Member identifiers: atproto DIDs and mail domains, checked before anything is stored."""
from __future__ import annotations

import ipaddress
import re
from email.utils import parseaddr

from runtime import replies
from runtime.errors import RelayError

_PLC = re.compile(r"^did:plc:[a-z2-7]{24}$")
_WEB = re.compile(r"^did:web:[a-zA-Z0-9._%-]+(:[a-zA-Z0-9._%-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidIdentifier(RelayError):
    """A DID or domain that cannot belong to a member; the text says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(replies.INVALID_IDENTIFIER.format(detail=message), detail=message)
        self.message = message


def normalize_did(value: str) -> str:
    """did:plc:<24 base32 chars> or did:web:<host>[:path]; anything else is refused."""
    did = (value or "").strip()
    if not did:
        raise InvalidIdentifier("a DID is required (did:plc:... or did:web:...)")
    if len(did) > 2048:
        raise InvalidIdentifier("DID is longer than 2048 characters")
    if did.startswith("did:plc:"):
        if not _PLC.match(did):
            raise InvalidIdentifier(
                f"{did!r} is not a valid did:plc (expected did:plc: followed by 24 characters a-z and 2-7)")
        return did
    if did.startswith("did:web:"):
        if not _WEB.match(did):
            raise InvalidIdentifier(f"{did!r} is not a valid did:web")
        host = did.split(":")[2].replace("%3A", ":").replace("%3a", ":").split(":")[0]
        normalize_domain(host, what="did:web host")
        return did
    if did.startswith("did:"):
        method = did.split(":")[1] if did.count(":") >= 2 else ""
        raise InvalidIdentifier(f"DID method {method!r} is not supported; use did:plc or did:web")
    raise InvalidIdentifier(f"{did!r} is not a DID (expected did:plc:... or did:web:...)")


def normalize_domain(value: str, what: str = "domain") -> str:
    """A lower-case, IDNA-encoded DNS name with at least two labels; no IPs, no trailing dot."""
    raw = (value or "").strip().rstrip(".").lower()
    if not raw:
        raise InvalidIdentifier(f"a {what} is required")
    try:
        ipaddress.ip_address(raw.strip("[]"))
        raise InvalidIdentifier(f"{value!r} is an IP address, not a {what}")
    except ValueError:
        pass
    for label in raw.split("."):
        if not label or len(label) > 63:
            raise InvalidIdentifier(f"{value!r} is not a valid {what} (bad label {label!r}: 1 to 63 characters)")
    try:
        domain = raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidIdentifier(f"{value!r} is not a valid {what}") from None
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2:
        raise InvalidIdentifier(f"{value!r} is not a valid {what} (it needs at least two labels, like example.com)")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidIdentifier(f"{value!r} is not a valid {what} (bad label {label!r})")
    if labels[-1].isdigit():
        raise InvalidIdentifier(f"{value!r} is not a valid {what} (numeric top-level label)")
    return domain


def address_domain(address: str) -> str:
    """The domain of an address (`user@Example.COM` → `example.com`), '' when there is none."""
    _, addr = parseaddr(address or "")
    if "@" not in addr:
        return ""
    try:
        return normalize_domain(addr.rpartition("@")[2])
    except InvalidIdentifier:
        return ""
