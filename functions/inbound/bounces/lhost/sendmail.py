"""Sendmail (and V5 sendmail): the session transcript, `NNN <address>... reason` and `>>> RCPT To:<...>` / `<<< reply`.

The per-recipient lines of the transcript are the most specific; the
RFC 3464 part, when there is one, gives the status and action.
"""
from __future__ import annotations

import re

from functions.inbound.bounces import rfc3464
from functions.inbound.bounces.document import Document
from functions.inbound.bounces.prose import ADDR
from functions.inbound.bounces.reading import Bounced

NAME = "sendmail"
_SAYS = re.compile(rf"^\s*(\d{{3}})[ -]\s*(?:[245]\.\d{{1,3}}\.\d{{1,3}}\s+)?<?({ADDR})>?\.\.\.\s*(.*)$")
_SENT = re.compile(rf"^\s*>>>\s*(RCPT TO|MAIL FROM|DATA)\s*:?\s*<?({ADDR})?", re.I)
_REPLY = re.compile(r"^\s*<<<\s*(.*)$")
_MULTILINE = re.compile(r"\d{3}-")
_FATAL = re.compile(r"^\s*-+ The following addresses had (permanent|transient) (fatal )?errors", re.I)
_LISTED = re.compile(rf"^\s*<?({ADDR})>?\s*$")
_EXPANDED = re.compile(rf"^\s*\(expanded from:?\s*<?({ADDR})>?\)", re.I)


def recognises(doc: Document) -> bool:
    return "----- Transcript of session follows -----" in doc.text or \
        "----- The following addresses had permanent fatal errors -----" in doc.text


def _session(lines: list[str]) -> str:
    """The transcript's replies when they name no address: the diagnostic of every listed address."""
    start = next((i for i, line in enumerate(lines) if "Transcript of session follows" in line), -1)
    if start < 0:
        return ""
    replies = []
    for line in lines[start + 1:start + 30]:
        if line.strip().startswith("-----"):
            break
        if line.strip():
            replies.append(line.strip())
    return " ".join(replies)[:1000]


def _transcript(lines: list[str]) -> dict[str, Bounced]:
    found: dict[str, Bounced] = {}
    command, replies = "", []
    for line in lines:
        sent = _SENT.match(line)
        if sent:
            command, replies = rfc3464.command_of(sent.group(1)), []
            continue
        reply = _REPLY.match(line)
        if reply:
            replies.append(reply.group(1))
            continue
        says = _SAYS.match(line)
        if says and says.group(1)[0] in "45":
            text = " ".join(replies + [says.group(1), says.group(3)])
            found.setdefault(says.group(2).lower(), Bounced(says.group(2), "", "", diagnostic=text,
                                                              command=command))
            command, replies = "", []
    return found


def _listed(lines: list[str]) -> dict[str, Bounced]:
    """The addresses under "The following addresses had permanent fatal errors", and each alias they came from.

    Sendmail names the address it failed on, then `(expanded from: <alias>)`
    when that was an alias the sender wrote: the alias failed too.
    """
    found: dict[str, Bounced] = {}
    inside, last = False, ""
    for line in lines:
        if _FATAL.match(line):
            inside = True
            continue
        if inside and line.strip().startswith("-----"):
            break
        listed = _LISTED.match(line) if inside else None
        expanded = _EXPANDED.match(line) if inside else None
        if listed:
            last = listed.group(1)
            found.setdefault(last.lower(), Bounced(last, ""))
        elif expanded and last:
            found.setdefault(expanded.group(1).lower(), Bounced(expanded.group(1), ""))
    return found


def read(doc: Document) -> list[Bounced] | None:
    said = _transcript(doc.lines)
    dsn = rfc3464.read(doc)
    if not dsn:
        listed = _listed(doc.lines)
        diagnostic = " ".join(b.diagnostic for b in said.values()) or _session(doc.lines)
        for address, rcpt in listed.items():
            rcpt.diagnostic = said[address].diagnostic if address in said else diagnostic
            rcpt.command = said[address].command if address in said else ""
        return list({**listed, **said}.values()) or None
    for rcpt in dsn[1]:
        told = said.get(rcpt.recipient.lower())
        if told is not None:
            rcpt.command = rcpt.command or told.command
            # The DSN keeps the first line of a multi-line reply; the transcript keeps all of it.
            if _MULTILINE.match(rcpt.diagnostic) and told.diagnostic not in rcpt.diagnostic:
                rcpt.diagnostic = f"{rcpt.diagnostic} {told.diagnostic}".strip()
    return dsn[1]
