"""Does the member's DID vouch for its mail domain? Read from the member's own atproto repo.

The member writes an `email.atmos.attestation` record (key: the domain)
to its repo, as the enroll page tells it to. We resolve the DID (the PLC
directory for did:plc, /.well-known/did.json for did:web), find its PDS
and fetch the record. Verified means the record names the domain and the
selectors we sign with; stale means it names older selectors.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from functions.members.onboarding import ATTESTATION_COLLECTION

MAX_BODY = 1 << 20


class ResolutionError(Exception):
    pass


def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "atmos-relay attestation check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read(MAX_BODY) or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read(MAX_BODY) or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ResolutionError(f"{url}: {getattr(exc, 'reason', exc)}") from exc


def did_document_url(did: str, plc_url: str) -> str:
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{quote(did, safe=':')}"
    parts = [p.replace("%3A", ":").replace("%3a", ":") for p in did.split(":")[2:]]
    if len(parts) == 1:
        return f"https://{parts[0]}/.well-known/did.json"
    return f"https://{parts[0]}/{'/'.join(parts[1:])}/did.json"


def pds_endpoint(document: Any) -> str:
    for service in (document or {}).get("service") or []:
        if isinstance(service, dict) and (service.get("id", "").endswith("#atproto_pds")
                                          or service.get("type") == "AtprotoPersonalDataServer"):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
                return endpoint.rstrip("/")
    raise ResolutionError("the DID document names no atproto PDS")


def check(did: str, domain: str, selectors: list[str], plc_url: str, timeout: float) -> dict[str, Any]:
    """verified | stale | missing | unknown (could not tell), with what was found."""
    try:
        status, document = _get_json(did_document_url(did, plc_url), timeout)
        if status != 200:
            raise ResolutionError(f"DID document lookup answered HTTP {status}")
        pds = pds_endpoint(document)
        query = urlencode({"repo": did, "collection": ATTESTATION_COLLECTION, "rkey": domain})
        status, body = _get_json(f"{pds}/xrpc/com.atproto.repo.getRecord?{query}", timeout)
    except ResolutionError as exc:
        return {"status": "unknown", "detail": str(exc)}
    if status == 400 and isinstance(body, dict) and body.get("error") == "RecordNotFound" or status == 404:
        return {"status": "missing", "pds": pds, "detail": f"no {ATTESTATION_COLLECTION} record for {domain}"}
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("value"), dict):
        return {"status": "unknown", "pds": pds, "detail": f"the PDS answered HTTP {status}"}
    record = body["value"]
    if record.get("domain") != domain:
        return {"status": "missing", "pds": pds, "record": record, "detail": "the record names another domain"}
    published = record.get("dkimSelectors") or []
    if not set(selectors) <= set(published):
        return {"status": "stale", "pds": pds, "record": record,
                "detail": "the record names selectors the relay no longer signs with"}
    return {"status": "verified", "pds": pds, "record": record, "uri": body.get("uri", "")}
