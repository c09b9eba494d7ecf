"""One entry point: what an inbound message says about delivery, read the way Sisimai reads it.

Order: a feedback report (RFC 5965); the MTA family that recognises its
own format (lhost/); the machine-readable DSN (RFC 3464); prose that is
shaped like a bounce; an auto-reply (RFC 3834); otherwise nothing. Never
raises: a message over the bounds, or one a reader chokes on, is a
Reading too, with the reason.
"""
from __future__ import annotations

import email
import email.policy
import re
import time
from email.message import Message

from functions.inbound.bounces import lhost, prose, reasons, rfc3464, rfc3834, rfc5965
from functions.inbound.bounces.document import (
    MAX_DEPTH,
    MAX_PARTS,
    MAX_SECONDS,
    Document,
    Unreadable,
    header_text,
    prepare,
)
from functions.inbound.bounces.lhost import flufl_detectors
from functions.inbound.bounces.reading import Bounced, Reading

_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail ?delivery|mdaemon|returned|bounce|daemon", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|notification|problem|failed)|returned mail|failure notice|"
    r"could not be delivered|delivery has failed|non[- ]?delivery|mail delivery failed|not delivered|"
    r"warning: could not send|mail system error|delivery error|error sending|failed delivery|"
    r"rejected|returned to sender|nicht zustellbar|unzustellbar|non remis|no entregado|"
    r"error|failure|failed|bounce", re.I)


_BOUNCE_WORDING = re.compile(
    r"could not be delivered|undeliverable|delivery (has )?failed|failed permanently|permanent (fatal )?error|"
    r"unable to deliver|was not delivered|delivery failure|not be delivered|returned to (the )?sender", re.I)
_DELAYED = re.compile(r"not yet been delivered|delivery attempts will continue|will (keep|continue) trying|"
                      r"will be retried|message delayed|delivery (status notification \(delay\)|delayed)", re.I)
_FOR = re.compile(rf"\bfor\s+<?({prose.ADDR})>?", re.I)
_TO_LINE = re.compile(r"^To:\s*(.+)$", re.M)


class UnreadableMessage(Message):
    """A message whose body was not parsed because its raw form is over the bounds; only its headers."""

    problem = ""


def parse(raw: bytes) -> Message:
    """The message, unless its raw bytes already show more MIME parts or nesting than any real report has."""
    boundaries = raw.count(b"\n--")
    lowered = raw.lower()
    multiparts = lowered.count(b"multipart/")
    raw = _up_to_recipient(raw, lowered, 2 * rfc3464.MAX_RECIPIENTS)
    problem = ""
    if boundaries > 4 * MAX_PARTS:
        problem = f"more than {MAX_PARTS} MIME parts"
    elif multiparts > 2 * MAX_DEPTH:
        problem = f"MIME nesting deeper than {MAX_DEPTH}"
    if not problem:
        try:
            return email.message_from_bytes(raw, policy=email.policy.compat32)
        except (RecursionError, MemoryError) as exc:
            problem = f"unparseable MIME ({type(exc).__name__})"
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:64 * 1024]
    message = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32,
                                       _class=UnreadableMessage)
    message.problem = problem
    return message


def _up_to_recipient(raw: bytes, lowered: bytes, limit: int) -> bytes:
    """The report cut before its `limit`-th recipient block: the parser would make a message of every block."""
    at = -1
    for _ in range(limit):
        at = lowered.find(b"final-recipient:", at + 1)
        if at < 0:
            return raw
    return raw[:at]


def read(message: Message) -> Reading:
    """What the message says; a Reading whatever the input."""
    if isinstance(message, UnreadableMessage):
        return Reading("unreadable", problem=message.problem)
    try:
        doc = prepare(message, time.monotonic() + MAX_SECONDS)
        return _read(doc)
    except Unreadable as exc:
        return Reading("unreadable", problem=str(exc))
    except (RecursionError, MemoryError) as exc:
        return Reading("unreadable", problem=f"{type(exc).__name__}")
    except Exception as exc:  # a reader's bug must not turn a real bounce into a 451 forever
        return Reading("none", reader="error", problem=f"{type(exc).__name__}: {exc}"[:300])


def _read(doc: Document) -> Reading:
    arf = rfc5965.read(doc)
    if arf is not None:
        feedback, recipients = arf
        return Reading("complaint", "rfc5965", recipients, doc.returned, feedback=feedback)
    excluded = prose.addresses_in(doc.header("To")) | prose.addresses_in(doc.header("Delivered-To"))
    for family in lhost.FAMILIES:
        if family.recognises(doc):
            found = family.read(doc)
            reading = _bounce(doc, family.NAME, found, excluded) if found else None
            if reading is not None and reading.kind == "bounce":
                return reading
    dsn = rfc3464.read(doc)
    if dsn is not None:
        reporting, found = dsn
        return _bounce(doc, "rfc3464", found, set(), reporting)
    if _looks_like_bounce(doc):
        found = prose.scan(doc.lines, excluded) or _named_elsewhere(doc, excluded)
        if found:
            return _bounce(doc, "prose", found, excluded)
        found = flufl_detectors.read(doc)
        if found:
            return _bounce(doc, flufl_detectors.NAME, found, excluded)
    forwarded = _forwarded(doc)
    if forwarded is not None:
        return forwarded
    signals = rfc3834.signals(doc)
    if signals:
        sender = prose.addresses_in(doc.sender)
        recipients = [Bounced(a, "vacation", "", kind="none", action="replied") for a in sorted(sender)[:1]]
        return Reading("auto-reply", "rfc3834", recipients, doc.returned, signals=signals)
    return Reading("none", "", returned=doc.returned)


def _forwarded(doc: Document) -> Reading | None:
    """A bounce someone forwarded as an attachment: read the attached report itself (one level only)."""
    inner = doc.returned
    if inner is None or inner.get_content_type() != "multipart/report" or doc.forwarded:
        return None
    inner_doc = prepare(inner, doc.deadline)
    inner_doc.forwarded = True
    reading = _read(inner_doc)
    return reading if reading.kind in ("bounce", "complaint") else None


def _looks_like_bounce(doc: Document) -> bool:
    return bool(_BOUNCE_SENDER.search(doc.sender) or _BOUNCE_SUBJECT.search(doc.subject)
                or doc.has_header("X-Failed-Recipients") or doc.status_part is not None
                or doc.header("Return-Path").strip() in ("<>",)
                or _BOUNCE_WORDING.search(" ".join(doc.lines[:60])))


def _named_elsewhere(doc: Document, excluded: set[str]) -> list[Bounced]:
    """A bounce whose prose names no address: X-Failed-Recipients, else the To: of the returned original."""
    addresses = prose.addresses_in(doc.header("X-Failed-Recipients"))
    if not addresses and doc.returned is not None:
        addresses = prose.addresses_in(header_text(doc.returned, "To"))
        last_hop = _FOR.search(header_text(doc.returned, "Received"))
        if last_hop and last_hop.group(1).lower() not in addresses:
            addresses = set()  # delivered on to someone the To: does not name (a list, a Bcc): not a guess to make
    if not addresses:
        found = _TO_LINE.search(doc.text)
        addresses = prose.addresses_in(found.group(1)) if found else set()
    diagnostic = doc.prose[:2000]
    return [Bounced(a, "", "", diagnostic=diagnostic, command=rfc3464.command_of(diagnostic))
            for a in sorted(addresses - excluded)[:20]]


def _near(lines: list[str], address: str, alone: bool) -> str:
    """The prose about one recipient: the lines from where it is named (all of it for a lone recipient)."""
    if alone:
        return "\n".join(lines)
    lowered = address.lower()
    for i, line in enumerate(lines):
        if lowered in line.lower():
            return "\n".join(lines[i:i + 6])
    return ""


def _bounce(doc: Document, reader: str, found: list[Bounced], excluded: set[str], reporting: str = "") -> Reading:
    context = " ".join(" ".join(doc.lines[:80]).split())[:1500]
    dsn = True  # the command rule holds for prose too; the MTA readers that know better set the reason
    delayed = reader not in ("rfc3464", "postfix", "sendmail") and bool(
        _DELAYED.search(doc.subject) or _DELAYED.search(context))
    recipients = []
    for rcpt in found:
        if rcpt.recipient.lower() in excluded and len(found) > 1 or not rfc3464.deliverable(rcpt.recipient):
            continue
        if rcpt.action in ("relayed", "expanded", "delivered") and not rcpt.reason:
            continue
        if delayed:
            rcpt.action = "delayed"
        rcpt.status = rcpt.status or reasons.status_in(rcpt.diagnostic)
        rcpt.command = rcpt.command or rfc3464.command_of(_near(doc.lines, rcpt.recipient, len(found) == 1))
        if not rcpt.reason:
            rcpt.reason = reasons.reason_of(rcpt.diagnostic, rcpt.status, rcpt.command, rcpt.action, dsn)
            if rcpt.reason in ("onhold", "undefined") and context and not reasons.by_status(rcpt.status):
                rcpt.status = rcpt.status or reasons.status_in(context)
                rcpt.reason = reasons.reason_of(context, rcpt.status, rcpt.command or rfc3464.command_of(context),
                                                rcpt.action, dsn)
        rcpt.kind = "soft" if rcpt.action == "delayed" else reasons.kind_of(rcpt.reason, rcpt.status)
        if rcpt.action not in ("failed", "delayed"):
            rcpt.action = "failed"
        recipients.append(rcpt)
    if not recipients:
        return Reading("none", reader, returned=doc.returned)
    return Reading("bounce", reader, recipients, doc.returned,
                   reporting_mta=reporting or rfc3464.reporting_mta(doc))
