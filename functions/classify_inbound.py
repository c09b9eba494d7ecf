"""`classify-inbound`: DATA on the inbound MX. Complaints and bounces come home to the member who caused them.

Every message is recorded in `inbound_messages`. A complaint or a bounce
becomes `complaint_received` / `bounce_received` on the member's stream and
suppresses the recipient where it must; operator mail is logged
(`inbound.operator`) and, with `operatorForwardTo` set, forwarded; replies
for a member with a forward address are forwarded to it. With
`dry_run` (the `atmos-relay classify` command) nothing is stored or sent.
"""
from __future__ import annotations

import base64
import email
import email.policy
import json

from functions.inbound import addresses, bounces, forwarder
from functions.inbound.bounce_reasons import Classification
from functions.inbound.classifier import Verdict, classify
from functions.reputation import feedback
from runtime import replies
from runtime.context import LambdaContext


def _subject(message: email.message.Message) -> str:
    return " ".join(str(message.get("Subject") or "").split())[:300]


def handler(event: dict, context: LambdaContext) -> dict:
    raw = base64.b64decode(event.get("content") or event.get("message") or "")
    message = bounces.parse(raw)  # headers only when the MIME structure is over the reading bounds
    envelope = event.get("envelope") or {}
    settings = context.settings
    conn = context.store.connection()
    targets = [t for t in (addresses.resolve(conn, r, settings.operatorDomain)
                           for r in envelope.get("rcpt_tos") or []) if t is not None]
    verdict = classify(conn, message, targets, settings.operatorDomain)
    summary = {"classification": verdict.classification, "member_did": verdict.member_did,
               "recipients": [r.as_dict() for r in verdict.recipients]}
    if event.get("dry_run"):
        return summary
    _record(context, verdict, message, envelope, raw, event.get("session") or {})
    return {**summary, "reply": replies.ACCEPTED.as_dict()}


def _record(context: LambdaContext, verdict: Verdict, message, envelope: dict, raw: bytes, session: dict) -> None:
    recipient = ", ".join(envelope.get("rcpt_tos") or [])[:500]
    attribution = verdict.attribution
    details = {**verdict.details, "recipients": [r.as_dict() for r in verdict.recipients],
               "attributed_by": attribution.how if attribution else None,
               "original_message_id": attribution.message_id if attribution else "",
               "from": str(message.get("From") or "")[:300]}
    did = verdict.member_did
    with context.store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO inbound_messages (received_at, classification, member_did, subject, recipient, mail_from,"
            " message_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (context.clock.now(), verdict.classification, did, _subject(message), recipient,
             envelope.get("mail_from") or "", str(message.get("Message-ID") or "").strip()[:300],
             json.dumps(details, default=str)))
        inbound_id = cur.lastrowid
        if did and verdict.classification == "complaint":
            for outcome in verdict.recipients or []:
                feedback.record_complaint(conn, context, did, outcome.address, verdict.feedback_type,
                                          attribution.message_id if attribution else "", verdict.user_agent)
            if not verdict.recipients:
                feedback.record_complaint(conn, context, did, "", verdict.feedback_type,
                                          attribution.message_id if attribution else "", verdict.user_agent)
        if did and verdict.classification == "bounce":
            for outcome in verdict.recipients:
                if outcome.action != "failed":
                    continue
                feedback.record_bounce(conn, context, did, outcome.address,
                                       Classification(outcome.kind, outcome.reason, outcome.status),
                                       message_id=attribution.message_id if attribution else "", source="dsn")
    context.logger.info("inbound.received", id=inbound_id, classification=verdict.classification,
                        member_did=did, recipient=recipient, subject=_subject(message),
                        attributed_by=details["attributed_by"], bounced=[r.address for r in verdict.recipients])
    if verdict.classification == "operator":
        forward_to = context.settings.operatorForwardTo
        context.logger.info("inbound.operator", id=inbound_id, recipient=recipient, mail_from=envelope.get("mail_from"),
                            header_from=details["from"], subject=_subject(message),
                            action="forward" if forward_to else "accept-and-drop", forward_to=forward_to or None)
        if forward_to:
            _forward(context, raw, forward_to, f"operator alias {recipient}", inbound_id, session)
    elif verdict.classification in ("reply", "auto-reply") and verdict.details.get("forward_to"):
        _forward(context, raw, verdict.details["forward_to"], f"reply for {did}", inbound_id, session)


def _forward(context: LambdaContext, raw: bytes, to: str, reason: str, inbound_id: int, session: dict) -> None:
    queue_id = forwarder.forward(context, raw, to, reason, peer=str(session.get("peer") or ""),
                                       helo=str(session.get("helo") or ""))
    context.logger.info("reply_forwarder.sent", id=inbound_id, to=to, queue_id=queue_id, reason=reason)
