"""`sign`: attribution headers, then four DKIM signatures (docs/contract.md: Signing and headers).

d=<member domain> with the member's RSA-2048 (`atmos<date>r`) and Ed25519
(`atmos<date>e`) keys gives DMARC alignment with the From: domain;
d=<operatorDomain> with the pool's two keys routes FBL complaints to the
cooperative. All four cover X-Atmos-Member-Did and Feedback-ID.
"""
from __future__ import annotations

import base64
import functools
import json
import os
from pathlib import Path

from functions.dkim import key_pairs, operator_keys
from functions.dkim.signer import MessageSigner, SigningError
from functions.outbound import message_headers
from runtime import replies
from runtime.context import LambdaContext
from runtime.errors import RelayError


class SignRefused(RelayError):
    pass


@functools.lru_cache(maxsize=4)
def _operator_key_file(path: str, _inode: int, _mtime_ns: int, _size: int) -> tuple[list, list, float]:
    """The parsed key file (current keys, previous keys, end of their overlap), read again only when it changes."""
    doc = json.loads(Path(path).read_text())
    previous = doc.get("previous") or {}
    return ([operator_keys.OperatorKey(**k) for k in doc["keys"]],
            [operator_keys.OperatorKey(**k) for k in previous.get("keys", [])], previous.get("until", 0))


def operator_signing_keys(state_dir: str, now: float) -> list[operator_keys.OperatorKey]:
    """operator_keys.signing_keys without reading and parsing the file for every message."""
    path = operator_keys.path_for(state_dir)
    st = os.stat(path)
    current, previous, until = _operator_key_file(str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    return current + previous if previous and until > now else list(current)


def handler(event: dict, context: LambdaContext) -> dict:
    did, domain = str(event.get("did") or ""), str(event.get("domain") or "").lower()
    message = base64.b64decode(event.get("message") or "")
    row = context.store.connection().execute(
        "SELECT dkim_selector, dkim_rsa_privkey, dkim_ed_privkey FROM member_domains WHERE domain = ? AND did = ?",
        (domain, did)).fetchone()
    if row is None:
        raise SignRefused(replies.FROM_NOT_ENROLLED.format(domain=domain))
    now = context.clock.now()
    trace = base64.b64decode(event.get("trace") or "")
    prepared = message_headers.prepare(message, did, domain, now, trace=trace)
    try:
        signer = MessageSigner(prepared.message)
        base = row["dkim_selector"]
        signatures = [
            signer.sign(domain, key_pairs.rsa_selector(base), row["dkim_rsa_privkey"]),
            signer.sign(domain, key_pairs.ed25519_selector(base), row["dkim_ed_privkey"]),
        ]
        operator_domain = context.settings.operatorDomain
        for key in operator_signing_keys(context.settings.stateDir, now):
            signatures.append(signer.sign(operator_domain, key.selector, key.private_pem))
    except SigningError as exc:
        raise SignRefused(replies.MESSAGE_MALFORMED.format(detail=str(exc)), detail=str(exc)) from exc
    signed = b"".join(s.header for s in signatures) + prepared.message
    return {
        "message": base64.b64encode(signed).decode("ascii"),
        "message_id": prepared.message_id,
        "added_headers": list(prepared.added),
        "signatures": [{"d": s.domain, "s": s.selector, "a": s.algorithm} for s in signatures],
    }
