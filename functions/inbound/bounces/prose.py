"""Bounces written as prose: the address each MTA names as failed, and the lines that say why.

Most non-standard bounces share one shape: an address on a line of its
own (bare, in angle brackets, bulleted, or followed by a colon and the
remote server's reply), then the indented reply or explanation, then the
returned original. The MTA readers say where their block starts; this
module finds the addresses and their diagnostics in it.
"""
from __future__ import annotations

import re

from functions.inbound.bounces.reading import Bounced
from functions.inbound.bounces.rfc3464 import command_of

ADDR = r"[^\s<>()\[\]:;,\"'=]+@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]"
_ADDRESS = re.compile(ADDR)
_ALONE = re.compile(rf"^\s*(?:\*|-|>>>|•|\d+[.)])?\s*[<\"]?({ADDR})[>\"]?\s*:?\s*$")
_LEADING = re.compile(rf"^\s*(?:\*|-|>>>|•)?\s*<({ADDR})>:?\s+(.+)$")
_COLON = re.compile(rf"^\s*({ADDR}):\s+(.+)$")
_NOTE = re.compile(rf"^\s*(?:\*|-|>>>)?\s*<?({ADDR})>?[\s,]+(\S.*)$", re.I)
_PHRASE = re.compile(
    rf"(?:deliver\w*|delivery|sent|send|failed|failure|errors?|reach|rejected|unknown|invalid|userid|"
    rf"recipients?|mailbox of|RCPT TO|user|addressed(?: to)?)"
    rf"[^<@\n\d+]{{0,40}}?[: ]\s*[<'\"]?({ADDR})[>'\"]?", re.I)
_REPLY_NAMING = re.compile(rf"^\s*[45]\d\d[ -](?!.*\b(?:sender|from)\b).*?<?({ADDR})>?", re.I)
_CONTINUATION = re.compile(r"^(\s+|\d{3}[ -]|(?:remote|host|smtp|diagnostic|reason|error|said)\b)", re.I)


def _candidate(line: str) -> tuple[str, str] | None:
    for pattern in (_ALONE, _LEADING, _COLON, _NOTE):
        found = pattern.match(line)
        if found:
            return found.group(1), (found.group(2) if found.lastindex and found.lastindex > 1 else "")
    found = _PHRASE.search(line)
    if found:
        return found.group(1), line.strip()
    return None


def scan(lines: list[str], excluded: set[str], limit: int = 200) -> list[Bounced]:
    """Recipients with the diagnostic lines that follow each one (up to the next address)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[:2000]:
        hit = _candidate(line)
        if hit is not None:
            address = hit[0].strip(".").lower()
            if address.split("@")[-1].count(".") and address not in excluded and "mail from" not in line.lower():
                if hit[0].strip(".") in found:
                    current = found[hit[0].strip(".")]
                    current.append(line.strip())  # the reply names the address again: it is the diagnostic
                    continue
                current = found.setdefault(hit[0].strip("."), [])
                if hit[1]:
                    current.append(hit[1])
                if len(found) >= limit:
                    break
                continue
        if current is None:
            named = next((text for address, text in found.items() if address.lower() in line.lower()), None)
            if named is not None and len(named) < 12:
                named.append(line.strip())  # a reply further down that names the address
            elif named is None and found:
                other = _REPLY_NAMING.match(line)  # the remote reply names the recipient it refused
                if other and other.group(1).lower() not in excluded and len(found) < limit:
                    found.setdefault(other.group(1).strip("."), [line.strip()])
            continue
        if line.strip():
            if len(current) < 12:
                current.append(line.strip())
        elif current:
            current = None
    return [Bounced(address, "", "", diagnostic=" ".join(text), command=command_of(" ".join(text)))
            for address, text in found.items()]


def addresses_in(value: str) -> set[str]:
    return {a.lower() for a in _ADDRESS.findall(value or "")}
