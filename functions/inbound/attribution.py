"""Whose mail a report is about, and only when it can be proven: anyone can write a report naming anyone.

A bounce or complaint counts against a member only when it is provably
about a message the relay sent for that member: the VERP address it came
back to (or that a report quotes) carries our MAC, or the quoted message
carries the operator's DKIM signature or the relay's Message-ID mark
(`relay_proof`). A bare X-Atmos-Member-Did or a Message-ID without the mark
proves nothing; it is kept only to show the operator whom a report claimed.
And a report counts only for the recipients the relay sent that message to.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Iterable

from functions.inbound import relay_proof
from functions.members.suppression import normalize
from functions.outbound import message_token, verp

UNPROVEN = "unproven: no VERP address, operator DKIM signature or relay Message-ID mark"


@dataclass(frozen=True)
class Attribution:
    did: str
    how: str  # "verp" | "dkim" | "token" | "address"
    message_id: str = ""
    recipient: str = ""  # the one recipient a VERP address names
    queue_id: str = ""
    sent_to: tuple[str, ...] = ()  # every recipient of that message


@dataclass(frozen=True)
class Evidence:
    """What the relay checks a report against: its own secrets and public keys, nothing the report says."""
    operator_domain: str
    verp_key: bytes
    token_key: bytes
    records: dict[str, bytes]

    @classmethod
    def of(cls, conn: sqlite3.Connection, state_dir: str, operator_domain: str) -> "Evidence":
        return cls(operator_domain, verp.secret(conn), message_token.secret(conn),
                   relay_proof.operator_records(state_dir, operator_domain))


@dataclass(frozen=True)
class Decision:
    """One recipient a report names: counted against the member, or why not."""
    address: str
    counted: bool
    reason: str = ""


def _sent(row: sqlite3.Row, how: str, index: int = -1) -> Attribution:
    sent_to = tuple(normalize(r) for r in json.loads(row["recipients"]))
    recipient = sent_to[index] if 0 <= index < len(sent_to) else ""
    return Attribution(row["did"], how, row["message_id"], recipient, row["queue_id"], sent_to)


def by_queue(conn: sqlite3.Connection, queue_id: str, index: int = -1, how: str = "verp") -> Attribution | None:
    row = conn.execute("SELECT queue_id, did, message_id, recipients FROM sent_messages WHERE queue_id = ?",
                       (queue_id,)).fetchone()
    return _sent(row, how, index) if row is not None else None


def prove(conn: sqlite3.Connection, evidence: Evidence, quotes: list[relay_proof.Quote],
          senders: Iterable[str] = ()) -> tuple[Attribution | None, str]:
    """The proven sent message a report is about, else None and why not."""
    for sender in list(senders) + [str(q.headers.get(h) or "") for q in quotes
                                   for h in ("Return-Path", "X-Original-Mail-From")]:
        parsed = verp.parse(evidence.verp_key, sender.strip(), evidence.operator_domain)
        found = by_queue(conn, *parsed) if parsed else None
        if found:
            return found, ""
    reason = UNPROVEN
    for quote in quotes:
        signed = relay_proof.signed_by_relay(quote, evidence.operator_domain, evidence.records)
        if signed is None:
            continue
        row = conn.execute("SELECT queue_id, did, message_id, recipients FROM sent_messages"
                           " WHERE message_id = ? AND did = ? ORDER BY created_at DESC LIMIT 1",
                           (signed.message_id, signed.did)).fetchone()
        if row is not None:
            return _sent(row, "dkim"), ""
        reason = "signed by the relay, but no message it sent has that Message-ID"
    for quote in quotes:
        queue_id = relay_proof.marked_queue(evidence.token_key, quote)
        found = by_queue(conn, queue_id, how="token") if queue_id else None
        if found:
            return found, ""
    return None, reason


def claimed_did(quotes: list[relay_proof.Quote]) -> str:
    """The DID a quoted message names; shown to the operator, never trusted."""
    for quote in quotes:
        value = str(quote.headers.get("X-Atmos-Member-Did") or "").strip()
        if value:
            return value[:200]
    return ""


def decide(attribution: Attribution | None, addresses: list[str], unproven: str = UNPROVEN) -> list[Decision]:
    """Which of the recipients a report names count: only those the proven message was sent to.

    A VERP address names one recipient, so a report to it counts for that one
    only. A report whose one address is hidden or rewritten (providers
    redact) about a message sent to one recipient counts for that recipient.
    """
    if attribution is None:
        return [Decision(a, False, unproven) for a in addresses]
    allowed = (attribution.recipient,) if attribution.recipient else attribution.sent_to
    if len(allowed) == 1 and len(addresses) <= 1:
        return [Decision(allowed[0], True)]
    decisions, seen = [], set()
    for address in addresses:
        wanted = normalize(address)
        if wanted not in allowed:
            decisions.append(Decision(address, False, "the relay did not send this message to this recipient"))
        elif wanted in seen:
            decisions.append(Decision(address, False, "named twice in the report"))
        else:
            seen.add(wanted)
            decisions.append(Decision(wanted, True))
    return decisions
