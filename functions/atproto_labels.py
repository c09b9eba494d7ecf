"""`atproto-labels`: the labeler as the atproto network reads it over HTTP.

GET /xrpc/com.atproto.label.queryLabels answers the labels in force on
the subjects asked for, signed; GET /.well-known/did.json is the labeler's
DID document when its DID is did:web. Invoked with {"action": "identity"}
(`atmos-relay labeler identity`) it returns what the operator publishes.
"""
from __future__ import annotations

from functions.labeling import identity, label_records, signed_labels
from functions.labeling.publication import labeler_did, labeler_key
from functions.labeling.xrpc import XrpcError, label_query
from functions.web import http_api
from runtime.context import LambdaContext

_CORS = {"Access-Control-Allow-Origin": "*"}


def query_labels(event: dict, context: LambdaContext) -> dict:
    try:
        query = label_query(event.get("rawQueryString") or "")
    except XrpcError as exc:
        return http_api.json_response(exc.status, exc.body(), _CORS)
    rows = signed_labels.current(context.store.connection(), query.exact, query.prefixes, query.sources,
                                 query.cursor, query.limit)
    body: dict = {"labels": [label_records.as_json(label_records.from_row(r)) for r in rows]}
    if rows:
        body["cursor"] = str(rows[-1]["seq"])
    return http_api.json_response(200, body, _CORS)


def handler(event: dict, context: LambdaContext) -> dict:
    settings = context.settings
    if event.get("action") == "identity":
        return identity.identity(settings, labeler_key(context))
    if event.get("rawPath") == "/.well-known/did.json":
        if not labeler_did(settings).startswith("did:web:"):
            return http_api.json_response(404, {"error": "NotFound", "message": "the labeler's DID is not did:web"})
        return http_api.json_response(200, identity.did_document(settings, labeler_key(context)), _CORS)
    return query_labels(event, context)
