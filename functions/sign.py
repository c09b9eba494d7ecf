"""`sign`: attribution headers, then four DKIM signatures (docs/contract.md: Signing and headers).

d=<member domain> with the member's RSA-2048 (`atmos<date>r`) and Ed25519
(`atmos<date>e`) keys gives DMARC alignment with the From: domain;
d=<operatorDomain> with the pool's two keys routes FBL complaints to the
cooperative. All four cover X-Atmos-Member-Did and Feedback-ID.

`message` and `trace` are bytes in-process (submit) and base64 from a JSON
caller; the signed message comes back as bytes (base64 in JSON).
"""
from __future__ import annotations

from functions.dkim import key_pairs, operator_keys
from functions.dkim.signer import SigningError, SigningKey, sign_message
from functions.outbound import message_headers, message_token
from runtime import payload, replies
from runtime.context import LambdaContext
from runtime.errors import RelayError


class SignRefused(RelayError):
    pass


def _marked_message_id(context: LambdaContext, queue_id: str, domain: str) -> str:
    """The Message-ID a message without one gets: the relay's mark (message_token), so reports quoting it prove it."""
    if not queue_id:
        return ""
    return message_token.message_id(message_token.secret(context.store.connection()), queue_id, domain)


def handler(event: dict, context: LambdaContext) -> dict:
    did, domain = str(event.get("did") or ""), str(event.get("domain") or "").lower()
    message = payload.as_bytes(event.get("message"))
    row = context.store.connection().execute(
        "SELECT dkim_selector, dkim_rsa_privkey, dkim_ed_privkey FROM member_domains WHERE domain = ? AND did = ?",
        (domain, did)).fetchone()
    if row is None:
        raise SignRefused(replies.FROM_NOT_ENROLLED.format(domain=domain))
    now = context.clock.now()
    queue_id = str(event.get("queue_id") or "")
    prepared = message_headers.prepare(message, did, domain, now, trace=payload.as_bytes(event.get("trace")),
                                       own_id=lambda: _marked_message_id(context, queue_id, domain))
    base = row["dkim_selector"]
    keys = [SigningKey(domain, key_pairs.rsa_selector(base), row["dkim_rsa_privkey"]),
            SigningKey(domain, key_pairs.ed25519_selector(base), row["dkim_ed_privkey"]),
            *operator_keys.signing_identities(context.settings.stateDir, context.settings.operatorDomain, now)]
    try:
        signed, signatures = sign_message(prepared.message, keys, prepared.parts)
    except SigningError as exc:
        raise SignRefused(replies.MESSAGE_MALFORMED.format(detail=str(exc)), detail=str(exc)) from exc
    return {
        "message": signed,
        "message_id": prepared.message_id,
        "added_headers": list(prepared.added),
        "signatures": [{"d": s.domain, "s": s.selector, "a": s.algorithm} for s in signatures],
    }
