"""`submit`: the member's RCPT and DATA on submission (587/465).

DATA is where a message becomes the cooperative's responsibility: the
From: domain must be the member's, the member must be within its limits,
the `sign` function signs it, and the spool holds it durably before the 250.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses

from functions.members import suppression
from functions.members.identifiers import address_domain
from functions.members.registry import domains_of, verified_domains_of
from functions.reputation import events, limits
from runtime import replies
from runtime.context import LambdaContext
from runtime.errors import RelayError
from runtime.spool import new_queue_id


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


def _reject(context: LambdaContext, did: str, reason: str, reply, detail: str = "", **extra) -> SubmissionRefused:
    with context.store.transaction() as conn:
        events.emit(conn, context, "relay_rejected",
                    {"sender_did": did, "reject_reason": reason, "detail": detail or reply.text, **extra})
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
    verdict = limits.check(context.store.connection(), context, did, 1 + len(event.get("accepted") or []))
    if verdict is not None:
        raise _reject(context, did, "rate_limited", replies.RATE_LIMITED.format(detail=verdict.text),
                      detail=verdict.text, recipient=recipient)
    return {"reply": replies.RECIPIENT_OK.as_dict()}


def from_domains(content: bytes) -> list[str]:
    headers = BytesHeaderParser().parsebytes(content)
    values = [str(v) for v in headers.get_all("From", [])]
    return [address_domain(addr) for _, addr in getaddresses(values) if addr]


def _from_refused(context: LambdaContext, conn, did: str, domain: str) -> SubmissionRefused:
    """A domain the member claimed but has not proven is told how to prove it; any other is not its own."""
    if domain in domains_of(conn, did):
        return _reject(context, did, "from_not_verified", replies.FROM_NOT_VERIFIED.format(domain=domain))
    return _reject(context, did, "from_not_enrolled", replies.FROM_NOT_ENROLLED.format(domain=domain))


def received_header(session: dict, hostname: str, queue_id: str, recipients: list[str], now: float) -> bytes:
    """RFC 5321 4.4 trace field; ESMTPSA (RFC 3848) because submission is always TLS and AUTH."""
    helo = str(session.get("helo") or "unknown").replace("\r", "").replace("\n", "")[:100]
    peer = str(session.get("peer") or "unknown")
    protocol = "ESMTPSA" if session.get("tls") else "ESMTPA"
    for_clause = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    date = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    return (f"Received: from {helo} ([{peer}])\r\n\tby {hostname} (Atmosphere Mail) with {protocol} id {queue_id}"
            f"{for_clause};\r\n\t{date}\r\n").encode("utf-8", "replace")


def on_data(event: dict, context: LambdaContext) -> dict:
    principal = _principal(event)
    did = principal["did"]
    envelope = event.get("envelope") or {}
    recipients = list(envelope.get("rcpt_tos") or [])
    content = base64.b64decode(event.get("content") or "")
    conn = context.store.connection()
    member = conn.execute("SELECT status FROM members WHERE did = ?", (did,)).fetchone()
    if member is None or member["status"] != "active":
        status = member["status"] if member else "unknown"
        raise _reject(context, did, status, replies.SESSION_SUSPENDED if status == "suspended"
                      else replies.AUTH_PENDING)
    found = from_domains(content)
    if not found or not all(found):
        raise _reject(context, did, "from_missing", replies.FROM_MISSING)
    allowed = set(verified_domains_of(conn, did))
    for domain in found:
        if domain not in allowed:
            raise _from_refused(context, conn, did, domain)
    member_domain = found[0]

    queue_id = new_queue_id()
    now = context.clock.now()
    trace = received_header(event.get("session") or {}, context.settings.hostname, queue_id, recipients, now)
    signed = context.invoke("sign", {"did": did, "domain": member_domain, "queue_id": queue_id,
                                     "message": base64.b64encode(content).decode("ascii"),
                                     "trace": base64.b64encode(trace).decode("ascii")})
    message = base64.b64decode(signed["message"])
    spool_envelope = {
        "did": did, "member_domain": member_domain, "message_id": signed["message_id"],
        "mail_from": envelope.get("mail_from") or "", "rcpt_tos": recipients, "received_at": now,
        "session": (event.get("session") or {}).get("id", ""),
    }
    context.spool.put(spool_envelope, message, queue_id)

    def accept(tx) -> None:
        verdict = limits.check(tx, context, did, len(recipients))
        if verdict is not None:
            raise SubmissionRefused(replies.RATE_LIMITED.format(detail=verdict.text), detail=verdict.text)
        context.spool.register(tx, queue_id, [(r, address_domain(r)) for r in recipients], now)
        tx.execute(
            "INSERT INTO sent_messages (queue_id, message_id, did, member_domain, recipients, recipient_count,"
            " size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (queue_id, signed["message_id"], did, member_domain, json.dumps(recipients), len(recipients),
             len(message), now))
        limits.record(tx, did, len(recipients), now)
        events.emit(tx, context, "relay_attempt", {
            "sender_did": did, "message_id": signed["message_id"], "queue_id": queue_id,
            "recipients": recipients, "member_domain": member_domain, "size": len(message)}, when=now)

    try:
        # Group commit: sessions submitting at the same time share one transaction and one fsync.
        context.store.group(accept)
    except SubmissionRefused as exc:
        context.spool.discard(queue_id)
        raise _reject(context, did, "rate_limited", exc.reply, detail=exc.detail, recipients=recipients) from None
    except BaseException:
        context.spool.discard(queue_id)
        raise
    context.spool.committed(queue_id)
    return {"reply": replies.QUEUED.format(queue_id=queue_id).as_dict(), "queue_id": queue_id,
            "message_id": signed["message_id"]}
