"""`submit`: the member's RCPT and DATA on submission (587/465).

DATA is where a message becomes the cooperative's responsibility: the
From: domain must be the member's, the `sign` function signs it, and the
spool holds it durably before the 250. Over a cap the message is held until
the caps let it leave; only when that is further away than the tier's
maxHold (or never) is it refused, at RCPT already when the recipients say so.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime

from functions.members import suppression
from functions.members.identifiers import address_domain
from functions.members.registry import domains_of, verified_domains_of
from functions.outbound import from_field, header_section
from functions.reputation import events, holding, limits
from runtime import payload, replies
from runtime.context import LambdaContext
from runtime.errors import RelayError
from runtime.spool import Placing, new_queue_id


class SubmissionRefused(RelayError):
    pass


def handler(event: dict, context: LambdaContext) -> dict:
    hook = event.get("hook")
    if hook == "rcpt":
        return on_rcpt(event, context)
    if hook == "data":
        return on_data(event, context)
    raise SubmissionRefused(replies.TEMPORARY_FAILURE, detail=f"submit has no {hook!r} hook")


def _principal(event: dict) -> dict:
    principal = (event.get("session") or {}).get("principal")
    if not principal or not principal.get("did"):
        raise SubmissionRefused(replies.AUTH_REQUIRED)
    return principal


def _reject(context: LambdaContext, did: str, reason: str, reply, detail: str = "", also=None,
            **extra) -> SubmissionRefused:
    """The refusal, recorded as `relay_rejected` (with `also(conn)` in the same transaction)."""
    with context.store.transaction() as conn:
        events.emit(conn, context, "relay_rejected",
                    {"sender_did": did, "reject_reason": reason, "detail": detail or reply.text, **extra})
        if also is not None:
            also(conn)
    return SubmissionRefused(reply, detail=detail)


def on_rcpt(event: dict, context: LambdaContext) -> dict:
    did = _principal(event)["did"]
    recipient = str(event.get("rcpt_to") or "")
    if not address_domain(recipient):
        raise SubmissionRefused(replies.BAD_ADDRESS.format(address=recipient))
    entry = suppression.lookup(context.store.connection(), did, recipient, context.clock.now())
    if entry is not None:
        raise _reject(context, did, "suppressed", replies.RECIPIENT_SUPPRESSED.format(
            recipient=recipient, reason=entry["reason"]), recipient=recipient)
    counted = distinct_recipients([*(str(a) for a in event.get("accepted") or []), recipient])
    decision = limits.decide(context.store.connection(), context, did, len(counted))
    if decision.reply is not None:
        raise _over_cap(context, did, decision, recipient=recipient)
    return {"reply": replies.RECIPIENT_OK.as_dict()}


def _over_cap(context: LambdaContext, did: str, decision: limits.Decision, **extra) -> SubmissionRefused:
    """A refusal at a cap: recorded as `relay_rejected`, and the member told it is at a cap (once a while)."""
    reply = decision.reply
    return _reject(context, did, "rate_limited", reply, detail=reply.text,
                   also=lambda conn: holding.notice_at_cap(conn, context, did, decision, "refused"), **extra)


def from_domains(content: bytes) -> list[str]:
    """The From: domains as a receiver's DMARC check reads them, from the strict reading that is also signed.

    Raises NulInMessage, MalformedHeaderSection or UnreadableFrom (each with its 5xx) rather than guess.
    """
    header_section.refuse_nul(content)
    return [mailbox.domain for mailbox in from_field.mailboxes(header_section.read(content))]


def sending_domain(context: LambdaContext, did: str, content: bytes) -> str:
    """The first From: domain, once every From: domain is one the member has proven; else the refusal, recorded."""
    try:
        found = from_domains(content)
    except RelayError as exc:
        raise _reject(context, did, "malformed", exc.reply, detail=exc.detail) from None
    conn = context.store.connection()
    allowed = set(verified_domains_of(conn, did))
    for domain in found:
        if domain not in allowed:
            raise _from_refused(context, conn, did, domain)
    return found[0]


def _from_refused(context: LambdaContext, conn, did: str, domain: str) -> SubmissionRefused:
    """A domain the member claimed but has not proven is told how to prove it; any other is not its own."""
    if domain in domains_of(conn, did):
        return _reject(context, did, "from_not_verified", replies.FROM_NOT_VERIFIED.format(domain=domain))
    return _reject(context, did, "from_not_enrolled", replies.FROM_NOT_ENROLLED.format(domain=domain))


def received_header(session: dict, hostname: str, queue_id: str, recipients: list[str], now: float) -> bytes:
    """RFC 5321 4.4 trace field; ESMTPSA (RFC 3848) because submission is always TLS and AUTH."""
    helo = header_section.trace_text(session.get("helo") or "unknown")
    peer = header_section.trace_text(session.get("peer") or "unknown")
    protocol = "ESMTPSA" if session.get("tls") else "ESMTPA"
    for_clause = f"\r\n\tfor <{header_section.trace_text(recipients[0], 320)}>" if len(recipients) == 1 else ""
    date = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    return (f"Received: from {helo} ([{peer}])\r\n\tby {hostname} (Atmosphere Mail) with {protocol} id {queue_id}"
            f"{for_clause};\r\n\t{date}\r\n").encode("utf-8", "replace")


def distinct_recipients(addresses: list[str]) -> list[str]:
    """Each mailbox once, as first given: a client repeats RCPT for a To: and Cc: naming the same person.

    The local part is compared as written (RFC 5321 2.4 leaves its case to the mailbox's host), the
    domain case-insensitively.
    """
    seen: set[str] = set()
    distinct = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        key = f"{local}{at}{domain.lower()}" if at else address
        if key not in seen:
            seen.add(key)
            distinct.append(address)
    return distinct


def _require_active(context: LambdaContext, did: str) -> None:
    member = context.store.connection().execute("SELECT status FROM members WHERE did = ?", (did,)).fetchone()
    if member is None or member["status"] != "active":
        status = member["status"] if member else "unknown"
        raise _reject(context, did, status, replies.SESSION_SUSPENDED if status == "suspended"
                      else replies.AUTH_PENDING)


def on_data(event: dict, context: LambdaContext) -> dict:
    did = _principal(event)["did"]
    envelope = event.get("envelope") or {}
    recipients = distinct_recipients([str(r) for r in envelope.get("rcpt_tos") or []])
    content = payload.as_bytes(event.get("content"))
    _require_active(context, did)
    member_domain = sending_domain(context, did, content)
    queue_id = new_queue_id()
    now = context.clock.now()
    session = event.get("session") or {}
    trace = received_header(session, context.settings.hostname, queue_id, recipients, now)
    signed = context.invoke("sign", {"did": did, "domain": member_domain, "queue_id": queue_id,
                                     "message": content, "trace": trace})
    message = signed["message"]
    spool_envelope = {
        "did": did, "member_domain": member_domain, "message_id": signed["message_id"],
        "mail_from": envelope.get("mail_from") or "", "rcpt_tos": recipients, "received_at": now,
        "session": session.get("id", ""),
    }
    with context.spool.placing(spool_envelope, message, queue_id) as placing:
        decision = _accept(context, placing, spool_envelope, len(message))
    reply = replies.QUEUED.format(queue_id=queue_id)
    if decision.held:
        reply = replies.QUEUED_HELD.format(queue_id=queue_id, resume=limits.resume_text(decision.release_at, now))
    return {"reply": reply.as_dict(), "queue_id": queue_id, "message_id": signed["message_id"]}


def _accept(context: LambdaContext, placing: Placing, envelope: dict, size: int) -> limits.Decision:
    """Make the message deliverable (now, or held until the caps let it go) and record it, its count and
    its event: all or nothing. Refused when the caps would hold it longer than maxHold."""
    did, member_domain, recipients = envelope["did"], envelope["member_domain"], envelope["rcpt_tos"]
    queue_id, message_id, now = placing.queue_id, envelope["message_id"], envelope["received_at"]

    def accept(tx) -> limits.Decision:
        decision = limits.decide(tx, context, did, len(recipients))
        if decision.reply is not None:
            return decision
        release = decision.release_at if decision.held else now
        placing.register(tx, [(r, address_domain(r)) for r in recipients], now, not_before=release, owner=did)
        tx.execute(
            "INSERT INTO sent_messages (queue_id, message_id, did, member_domain, recipients, recipient_count,"
            " size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (queue_id, message_id, did, member_domain, json.dumps(recipients), len(recipients), size, now))
        limits.record(tx, did, len(recipients), release)
        events.emit(tx, context, "relay_attempt", {
            "sender_did": did, "message_id": message_id, "queue_id": queue_id, "recipients": recipients,
            "member_domain": member_domain, "size": size, "held_until": release if decision.held else None},
            when=now)
        if decision.held:
            holding.notice_at_cap(tx, context, did, decision, "held")
        return decision

    # Group commit: sessions submitting at the same time share one transaction and one fsync.
    decision = context.store.group(accept)
    if decision.reply is not None:
        raise _over_cap(context, did, decision, recipients=recipients)
    if decision.held:
        context.logger.info("submit.held", did=did, queue_id=queue_id, message_id=message_id,
                            recipients=len(recipients), held_until=decision.release_at)
    return decision
