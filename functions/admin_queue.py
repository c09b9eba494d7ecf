"""`admin-queue`: the delivery queue as an operator reads it during "Mail is not being delivered".

Which recipients wait, for whom (member DID and Message-ID from
`sent_messages`), how many attempts, when the next one is due and what
the receiving MX last said. Queued rows show as `held` (over a cap, due at
`notBefore`), `frozen` (the member is suspended) or `queued`. Read-only:
the spool owns its rows.
"""
from __future__ import annotations

from functions.web import admin_auth, http_api, pages
from runtime.context import LambdaContext
from runtime.spool import SHOWN_STATE, SHOWN_STATES

STATES = SHOWN_STATES
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000


def handler(event: dict, context: LambdaContext) -> dict:
    admin = admin_auth.admin_of(event)
    conn = context.store.connection()
    state = http_api.query(event, "state", "queued").strip()
    did, domain = http_api.query(event, "did").strip(), http_api.query(event, "domain").strip().lower()
    if state and state not in STATES:
        return http_api.error(event, 400, f"state must be one of {', '.join(STATES)} (or empty for all)")
    try:
        limit = http_api.page_limit(event, DEFAULT_LIMIT, MAX_LIMIT)
    except ValueError:
        return http_api.error(event, 400, "limit must be an integer")
    now = context.clock.now()
    rows = conn.execute(
        "SELECT r.queue_id, r.recipient, r.route, r.shown, r.attempts, r.next_attempt_at, r.last_code, r.last_text,"
        " r.created_at, r.updated_at, s.did, s.message_id, s.member_domain"
        f" FROM (SELECT *, {SHOWN_STATE} AS shown FROM spool_recipients) r"
        " LEFT JOIN sent_messages s ON s.queue_id = r.queue_id"
        " WHERE (? = '' OR r.shown = ?) AND (? = '' OR s.did = ?) AND (? = '' OR r.route = ?)"
        " ORDER BY r.created_at DESC LIMIT ?",
        (now, state, state, did, did, domain, domain, limit)).fetchall()
    summary = context.spool.summary(now)
    listed = [{"queueId": r["queue_id"], "messageId": r["message_id"], "did": r["did"],
               "memberDomain": r["member_domain"], "recipient": r["recipient"], "destination": r["route"],
               "state": r["shown"], "attempts": r["attempts"],
               "nextAttemptAt": r["next_attempt_at"] if r["shown"] in ("queued", "held") else None,
               "notBefore": r["next_attempt_at"] if r["shown"] == "held" else None,
               "lastCode": r["last_code"], "lastReply": r["last_text"] or "",
               "queuedAt": r["created_at"], "updatedAt": r["updated_at"]} for r in rows]
    if http_api.wants_json(event):
        return http_api.json_response(200, {"summary": summary, "recipients": listed, "count": len(listed)})
    return pages.page(200, "queue.html", summary=summary, recipients=listed, state=state, states=STATES,
                          did=did, domain=domain, csrf=admin.csrf)
