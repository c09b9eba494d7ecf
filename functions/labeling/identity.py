"""What the operator publishes so the network finds the labeler and trusts its signatures.

For did:web the relay serves the DID document itself (/.well-known/did.json);
for did:plc the operator adds the same verification method and service
with a PLC operation. Either way the labeler's `app.bsky.labeler.service`
record (rkey `self`) declares the label values and their definitions.
"""
from __future__ import annotations

from typing import Any

from functions.labeling import label_records
from functions.labeling.publication import labeler_did, public_labels
from functions.labeling.signing_key import LabelerKey
from runtime.settings import Settings


def public_url(settings: Settings) -> str:
    return (settings.labeler.publicUrl or f"https://{settings.hostname}").rstrip("/")


def did_document(settings: Settings, key: LabelerKey) -> dict[str, Any]:
    did = labeler_did(settings)
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [{"id": f"{did}#atproto_label", "type": "Multikey", "controller": did,
                                "publicKeyMultibase": key.multikey}],
        "service": [{"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": public_url(settings)}],
    }


def service_record(settings: Settings, key: LabelerKey) -> dict[str, Any]:
    """The `app.bsky.labeler.service` record: every public label value, defined in English."""
    labels = sorted(public_labels(settings).values(), key=lambda p: p.value)
    return {
        "$type": "app.bsky.labeler.service",
        "policies": {
            "labelValues": [p.value for p in labels],
            "labelValueDefinitions": [
                {"identifier": p.value, "severity": p.severity, "blurs": p.blurs, "defaultSetting": p.defaultSetting,
                 "adultOnly": False, "locales": [{"lang": "en", "name": p.name, "description": p.description}]}
                for p in labels],
        },
        "createdAt": label_records.timestamp(key.created_at),
    }


def identity(settings: Settings, key: LabelerKey) -> dict[str, Any]:
    did, url = labeler_did(settings), public_url(settings)
    doc = did_document(settings, key)
    return {
        "did": did,
        "didKey": key.did_key,
        "keyType": key.key_type,
        "verificationMethod": doc["verificationMethod"][0],
        "service": doc["service"][0],
        "didDocument": doc if did.startswith("did:web:") else None,
        "plcOperationChanges": None if did.startswith("did:web:") else {
            "verificationMethods": {"atproto_label": key.did_key},
            "services": {"atproto_labeler": {"type": "AtprotoLabeler", "endpoint": url}},
        },
        "labelerRecord": {"repo": did, "collection": "app.bsky.labeler.service", "rkey": "self",
                          "record": service_record(settings, key)},
        "subscribeLabels": url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
                           + "/xrpc/com.atproto.label.subscribeLabels",
    }
