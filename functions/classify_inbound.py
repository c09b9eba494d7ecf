"""`classify-inbound`: DATA on the inbound MX. Complaints and bounces come home to the member who caused them.

Every message is recorded in `inbound_messages`. A complaint or a bounce
counts (`complaint_received` / `bounce_received` on the member's stream,
suppression of the recipient where it must) only when it is proven to be
about a message the relay sent for that member (`attribution.prove`), only
for recipients that message went to, and only once per message and
recipient; what is not counted is recorded with why (`counted`,
`not_counted_reason`). A feedback report's own DKIM result is recorded
with it. Operator mail is logged (`inbound.operator`) and, with
`operatorForwardTo` set, forwarded; replies for a member with a forward
address are forwarded to it. With `dry_run` (the `atmos-relay classify`
command) nothing is stored or sent.
"""
from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass, field
from email.utils import getaddresses

from functions.inbound import addresses, attribution, bounces, forwarder, relay_proof, report_auth
from functions.inbound.attribution import Attribution, Decision
from functions.inbound.bounce_reasons import Classification
from functions.inbound.classifier import RecipientOutcome, Verdict, classify
from functions.reputation import feedback
from runtime import payload, replies
from runtime.context import LambdaContext

COUNTED_KINDS = ("complaint", "bounce")


@dataclass
class Finding:
    """What a complaint or bounce proves: each named recipient with its outcome, counted or why not."""
    decisions: list[tuple[Decision, RecipientOutcome | None]] = field(default_factory=list)
    claimed_did: str = ""
    nothing_to_count: str = ""

    @property
    def counted(self) -> bool:
        return any(d.counted for d, _ in self.decisions)

    def reason(self) -> str:
        reasons = sorted({d.reason for d, _ in self.decisions if not d.counted})
        return "; ".join(reasons) or (self.nothing_to_count if not self.counted else "")


def _subject(message: email.message.Message) -> str:
    return " ".join(str(message.get("Subject") or "").split())[:300]


def handler(event: dict, context: LambdaContext) -> dict:
    raw = payload.as_bytes(event.get("content") or event.get("message"))
    message = bounces.parse(raw)  # headers only when the MIME structure is over the reading bounds
    envelope = event.get("envelope") or {}
    settings = context.settings
    conn = context.store.connection()
    targets = [t for t in (addresses.resolve(conn, r, settings.operatorDomain)
                           for r in envelope.get("rcpt_tos") or []) if t is not None]
    verdict = classify(conn, message, targets, settings.operatorDomain)
    finding = _prove(context, verdict, message)
    summary = {"classification": verdict.classification, "member_did": verdict.member_did,
               "recipients": [r.as_dict() for r in verdict.recipients]}
    if event.get("dry_run"):
        return summary
    _record(context, verdict, finding, message, envelope, raw, event.get("session") or {})
    return {**summary, "reply": replies.ACCEPTED.as_dict()}


def _prove(context: LambdaContext, verdict: Verdict, message: email.message.Message) -> Finding:
    """Attribute a complaint or bounce from proof only, and decide which of its recipients count."""
    if verdict.classification not in COUNTED_KINDS:
        return Finding()
    conn = context.store.connection()
    quotes = relay_proof.quotes(message)
    proven, why = verdict.attribution, attribution.UNPROVEN
    if proven is None:
        evidence = attribution.Evidence.of(conn, context.settings.stateDir, context.settings.operatorDomain)
        senders = [str((verdict.details.get("report") or {}).get("original_mail_from") or "")]
        proven, why = attribution.prove(conn, evidence, quotes, senders)
    verdict.attribution = proven
    finding = Finding(claimed_did=attribution.claimed_did(quotes) if proven is None else "")
    if verdict.classification == "complaint":
        outcomes = _complainants(verdict)
    else:
        outcomes = [o for o in verdict.recipients if o.action == "failed"]
        if not outcomes:
            finding.nothing_to_count = "delay notices only"
            return finding
    decisions = attribution.decide(proven, [o.address for o in outcomes], why)
    finding.decisions = [(d, outcomes[i] if i < len(outcomes) else None) for i, d in enumerate(decisions)]
    if not decisions:
        finding.nothing_to_count = why if proven is None else "the report does not say which recipient it is about"
    return finding


def _complainants(verdict: Verdict) -> list[RecipientOutcome]:
    """Who complained. Without Original-Rcpt-To the classifier falls back on the quoted To:, which names every
    recipient of the message, not the one who complained: then only a message sent to one recipient can count."""
    outcomes = [RecipientOutcome(a, o.kind, o.status, o.reason, o.action, o.diagnostic)
                for o in verdict.recipients for _, a in getaddresses([o.address]) if a]
    named = (verdict.details.get("report") or {}).get("original_rcpt_to")
    return outcomes if named or len(outcomes) <= 1 else []


def _count(conn, context: LambdaContext, verdict: Verdict, finding: Finding, inbound_id: int) -> None:
    """Record each counted recipient once; one already counted for that message becomes not counted."""
    proven: Attribution = verdict.attribution
    for index, (decision, outcome) in enumerate(finding.decisions):
        if not decision.counted:
            continue
        if verdict.classification == "complaint":
            counted = feedback.record_complaint(
                conn, context, proven.did, decision.address, verdict.feedback_type, proven.message_id,
                verdict.user_agent, queue_id=proven.queue_id, inbound_id=inbound_id)
        else:
            # A DSN's Remote-MTA and diagnostic are the reporting MTA's words about a hop after ours (a
            # forwarder, a gateway): proof of the bounce, never of the pool's standing (pool_blocks).
            counted = feedback.record_bounce(
                conn, context, proven.did, decision.address, Classification(outcome.kind, outcome.reason,
                                                                            outcome.status),
                message_id=proven.message_id, source="dsn", queue_id=proven.queue_id, inbound_id=inbound_id)
        if counted is None:
            finding.decisions[index] = (Decision(decision.address, False, "already counted for this message"),
                                        outcome)


def _record(context: LambdaContext, verdict: Verdict, finding: Finding, message, envelope: dict, raw: bytes,
            session: dict) -> None:
    recipient = ", ".join(envelope.get("rcpt_tos") or [])[:500]
    proven = verdict.attribution
    report_dkim = report_auth.dkim_result(raw, context.resolver()) if verdict.classification == "complaint" else ""
    details = {**verdict.details, "recipients": [r.as_dict() for r in verdict.recipients],
               "attributed_by": proven.how if proven else None,
               "original_message_id": proven.message_id if proven else "",
               "from": str(message.get("From") or "")[:300]}
    did = verdict.member_did
    with context.store.transaction() as conn:
        inbound_id = conn.execute(
            "INSERT INTO inbound_messages (received_at, classification, member_did, subject, recipient, mail_from,"
            " message_id, details, proof, report_dkim) VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?, ?)",
            (context.clock.now(), verdict.classification, did, _subject(message), recipient,
             envelope.get("mail_from") or "", str(message.get("Message-ID") or "").strip()[:300],
             proven.how if proven else "", report_dkim)).lastrowid
        _count(conn, context, verdict, finding, inbound_id)
        details["decisions"] = [{"address": d.address, "counted": d.counted, "reason": d.reason}
                                for d, _ in finding.decisions]
        details["claimed_member_did"] = finding.claimed_did
        conn.execute("UPDATE inbound_messages SET counted = ?, not_counted_reason = ?, details = ? WHERE id = ?",
                     (int(finding.counted), finding.reason()[:500], json.dumps(details, default=str), inbound_id))
    context.logger.info("inbound.received", id=inbound_id, classification=verdict.classification,
                        member_did=did, recipient=recipient, subject=_subject(message),
                        attributed_by=details["attributed_by"], bounced=[r.address for r in verdict.recipients],
                        counted=[d.address for d, _ in finding.decisions if d.counted],
                        not_counted_reason=finding.reason() or None, claimed_member_did=finding.claimed_did or None,
                        report_dkim=report_dkim or None)
    _after(context, verdict, message, recipient, envelope, raw, inbound_id, session)


def _after(context: LambdaContext, verdict: Verdict, message, recipient: str, envelope: dict, raw: bytes,
           inbound_id: int, session: dict) -> None:
    """Operator mail and replies go on to their inbox."""
    if verdict.classification == "operator":
        forward_to = context.settings.operatorForwardTo
        context.logger.info("inbound.operator", id=inbound_id, recipient=recipient, mail_from=envelope.get("mail_from"),
                            header_from=str(message.get("From") or "")[:300], subject=_subject(message),
                            action="forward" if forward_to else "accept-and-drop", forward_to=forward_to or None)
        if forward_to:
            _forward(context, raw, forward_to, f"operator alias {recipient}", inbound_id, session)
    elif verdict.classification in ("reply", "auto-reply") and verdict.details.get("forward_to"):
        _forward(context, raw, verdict.details["forward_to"], f"reply for {verdict.member_did}", inbound_id, session)


def _forward(context: LambdaContext, raw: bytes, to: str, reason: str, inbound_id: int, session: dict) -> None:
    queue_id = forwarder.forward(context, raw, to, reason, peer=str(session.get("peer") or ""),
                                       helo=str(session.get("helo") or ""))
    context.logger.info("reply_forwarder.sent", id=inbound_id, to=to, queue_id=queue_id, reason=reason)
