"""`deliver`: hand a batch of spooled recipients of one destination domain to its MX.

The spool trigger gives us recipients of one route; we resolve its MX once,
open one connection and send each recipient its own transaction (its own
VERP envelope sender). Each outcome is settled in one transaction with its
`delivery_result` event: 2xx delivered, 4xx or a broken connection
deferred on the backoff schedule (expired past `delivery.maxAge`), 5xx
failed at once and recorded as a bounce. A suspended member's mail is
never sent: suspension freezes its rows, and a row leased before that is
left here untouched (still frozen, it waits for reactivation or expiry).
"""
from __future__ import annotations

from collections import OrderedDict

from functions.inbound.bounce_reasons import classify
from functions.inbound.bounces import pool_blocks
from functions.outbound import retry_policy, verp
from functions.outbound.mx_resolver import DnsFailure, answers, resolve
from functions.outbound.smtp_session import ConnectionCache, DeliverySession, Outcome, connections
from functions.reputation import events, feedback
from runtime.context import LambdaContext
from runtime.spool import SpoolError

# Stop starting new transactions when less than this is left of the invocation.
MARGIN_MS = 15_000


def handler(event: dict, context: LambdaContext) -> dict:
    route = str(event["route"])
    settings = context.settings
    batch: OrderedDict[str, list[dict]] = OrderedDict()
    for item in event.get("items", []):
        batch.setdefault(item["queue_id"], []).append(item)
    counts = {"delivered": 0, "deferred": 0, "failed": 0, "expired": 0}
    key = verp.secret(context.store.connection())
    cache_key: tuple = ()
    try:
        resolver = context.resolver()
        resolver.cache = answers
        hosts = resolve(route, resolver)
        cache_key = ConnectionCache.key(hosts, settings.delivery.port, settings.hostname,
                                        settings.delivery.requireTls)
        # An open connection left by an earlier batch to the same MX hosts, else a new one.
        session = connections.take(cache_key, hosts) or DeliverySession(
            hosts, settings.delivery.port, settings.hostname, settings.delivery.connectTimeout,
            settings.delivery.commandTimeout, settings.delivery.requireTls)
        dns_failure = None
    except DnsFailure as exc:
        session, dns_failure = None, Outcome(exc.reply.code, exc.reply.status, exc.reply.text, "", False)
    finished = False
    suspended: dict[str, bool] = {}
    try:
        for queue_id, items in batch.items():
            try:
                envelope, message = context.spool.load(queue_id)
            except FileNotFoundError:
                for item in items:
                    _settle(context, queue_id, {"rcpt_tos": []}, item, Outcome(
                        451, "4.3.0", "spool file missing", "", False), counts, final="failed")
                continue
            if _suspended(context, envelope.get("did", ""), suspended):
                context.logger.info("delivery.frozen", queue_id=queue_id, did=envelope.get("did", ""),
                                    recipients=len(items))
                continue
            eight_bit = not message.isascii()
            for item in items:
                if context.get_remaining_time_in_millis() < MARGIN_MS:
                    finished = True
                    return {"route": route, **counts, "stopped_early": True}
                if dns_failure is not None:
                    outcome = dns_failure
                else:
                    index = envelope["rcpt_tos"].index(item["recipient"])
                    sender = verp.address(key, queue_id, index, settings.operatorDomain)
                    outcome = session.send(sender, item["recipient"], message, eight_bit)
                _settle(context, queue_id, envelope, item, outcome, counts)
        finished = True
    finally:
        if session is not None:
            # Only a connection between transactions goes back; after an unexpected error it is closed.
            if finished:
                connections.give(cache_key, session)
            else:
                session.close()
    return {"route": route, **counts}


def _suspended(context: LambdaContext, did: str, known: dict[str, bool]) -> bool:
    """Whether the member is suspended now (asked once per batch and member)."""
    if did and did not in known:
        row = context.store.connection().execute("SELECT status FROM members WHERE did = ?", (did,)).fetchone()
        known[did] = row is not None and row["status"] == "suspended"
    return known.get(did, False)


def _settle(context: LambdaContext, queue_id: str, envelope: dict, item: dict, outcome: Outcome,
            counts: dict[str, int], final: str | None = None) -> None:
    """Record one outcome and its event."""
    now = context.clock.now()
    attempt = int(item.get("attempts", 0)) + 1
    if final:
        status, next_at = final, None
    elif outcome.delivered:
        status, next_at = "delivered", None
    elif outcome.permanent:
        status, next_at = "failed", None
    else:
        delivery = context.settings.delivery
        next_at = retry_policy.next_attempt(attempt, float(item["created_at"]), now,
                                            delivery.retryIntervals, delivery.maxAge)
        status = "deferred" if next_at is not None else "expired"
    did = envelope.get("did", "")
    message_id = envelope.get("message_id", "")
    recipient = item["recipient"]
    reading = classify(outcome.status, outcome.text, outcome.code) if outcome.code >= 400 else None

    def record(conn) -> None:
        context.spool.settle(
            conn, queue_id, recipient, state="queued" if status == "deferred" else status,
            next_attempt_at=next_at, code=outcome.code, text=f"{outcome.status} {outcome.text}", now=now)
        if did:
            events.emit(conn, context, "delivery_result", {
                "sender_did": did, "message_id": message_id, "queue_id": queue_id, "recipient": recipient,
                "status": status, "mx": outcome.mx, "smtp_code": outcome.code, "smtp_status": outcome.status,
                "smtp_text": outcome.text[:500], "attempt": attempt}, when=now)
            pool_blocks.after_delivery(conn, context, did, recipient,
                                       f"{outcome.code} {outcome.status} {outcome.text}".strip(), reading,
                                       outcome.mx, status == "delivered")
            if status == "failed" and outcome.code >= 500:
                feedback.record_bounce(conn, context, did, recipient, reading,
                                       message_id=message_id, source="smtp", queue_id=queue_id)

    # Group commit: concurrent deliveries settle in one transaction and one fsync.
    try:
        context.store.group(record)
    except SpoolError:
        # Purged by an operator while this attempt was under way: nothing left to settle.
        context.logger.warning("delivery.unsettled", queue_id=queue_id, recipient=recipient, did=did,
                               status=status, reason="no longer spooled (purged)")
        return
    counts[status] += 1
    context.logger.info("delivery.result", message_id=message_id, queue_id=queue_id, recipient=recipient,
                        mx=outcome.mx, status=status, code=outcome.code, enhanced=outcome.status,
                        text=outcome.text[:300], attempt=attempt, tls=outcome.tls,
                        next_attempt_at=next_at, did=did)
