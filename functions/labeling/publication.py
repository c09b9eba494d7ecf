"""Which label changes the atproto network sees, and publishing one as a signed label.

`verified-mail-operator` is always public; the policy file's `labels.public`
names the others (an internal label may be published under another value).
Everything else (`highly_trusted`, `burst_warming` by default) stays
internal. Publishing happens in the caller's transaction, so a label change
and its signed label commit together or not at all.
"""
from __future__ import annotations

import sqlite3

from functions.labeling import label_records, signed_labels, signing_key
from functions.reputation import policy
from runtime.context import LambdaContext
from runtime.settings import Settings

VERIFIED = policy.PublicLabel(
    label="verified-mail-operator", value="verified-mail-operator", name="Verified mail operator",
    description="This account's PDS sends its mail through the Atmosphere Mail cooperative relay, with its"
                " DKIM keys published in DNS and an attestation in its own repository naming them.",
    severity="inform", blurs="none", defaultSetting="warn")


def labeler_did(settings: Settings) -> str:
    return settings.labeler.did or f"did:web:{settings.hostname}"


def labeler_key(context: LambdaContext) -> signing_key.LabelerKey:
    """The signing key, generated and announced (`labeler.first_boot`) the first time it is needed."""
    settings = context.settings
    key, created = signing_key.ensure(settings.stateDir, settings.labeler.keyType, context.clock.now())
    if created:
        context.logger.warning("labeler.first_boot", did=labeler_did(settings), didKey=key.did_key,
                               keyType=key.key_type, path=str(signing_key.path_for(settings.stateDir)),
                               note="publish what `atmos-relay labeler identity` prints")
    return key


def public_labels(settings: Settings) -> dict[str, policy.PublicLabel]:
    """Internal label name -> how it is published; the policy may redefine verified-mail-operator."""
    published = {VERIFIED.label: VERIFIED}
    published.update({p.label: p for p in policy.load(settings.rulesFile).public_labels})
    return published


def publish(conn: sqlite3.Connection, context: LambdaContext, did: str, label: str, add: bool) -> int | None:
    """Sign and append the change of `label` on `did` when it is public and not already what is published.

    Returns the new seq, or None when nothing is published.
    """
    public = public_labels(context.settings).get(label)
    if public is None:
        return None
    src = labeler_did(context.settings)
    if signed_labels.asserted(conn, src, did, public.value) == add:
        return None
    return _sign_and_append(conn, context, src, did, public.value, add)


def _sign_and_append(conn: sqlite3.Connection, context: LambdaContext, src: str, uri: str, val: str,
                     add: bool) -> int:
    cts = label_records.timestamp(context.clock.now())
    label_doc = label_records.signed(label_records.unsigned(src, uri, val, not add, cts), labeler_key(context).sign)
    seq = signed_labels.append(conn, label_doc)
    context.logger.info("labeler.published", seq=seq, uri=uri, val=val, neg=not add, src=src)
    return seq


def reconcile(conn: sqlite3.Connection, context: LambdaContext) -> dict[str, int]:
    """Make the published labels match the labels members hold, at start-up.

    Labels held before the labeler existed, or made public (or internal)
    by a policy change since, are published (or negated) once, here.
    """
    public = public_labels(context.settings)
    src = labeler_did(context.settings)
    held = {(r["uri"], public[r["val"]].value) for r in conn.execute("SELECT uri, val FROM labels.member_labels")
            if r["val"] in public}
    shown = {(r["uri"], r["val"]) for r in conn.execute(
        "SELECT s.uri, s.val, s.neg FROM labels.signed_labels s WHERE s.src = ? AND s.seq ="
        " (SELECT MAX(seq) FROM labels.signed_labels l WHERE l.src = s.src AND l.uri = s.uri AND l.val = s.val)",
        (src,)) if not r["neg"]}
    for (uri, value), add in [*((k, True) for k in sorted(held - shown)), *((k, False) for k in sorted(shown - held))]:
        _sign_and_append(conn, context, src, uri, value, add)
    if held != shown:
        context.logger.info("labeler.reconciled", published=len(held - shown), negated=len(shown - held))
    return {"published": len(held - shown), "negated": len(shown - held)}
