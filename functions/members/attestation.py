"""Does the member's DID vouch for its mail domain? Read from the member's own atproto repo.

The member writes an `email.atmos.attestation` record (key: the domain)
to its repo, as the enroll page tells it to. We resolve the DID (the PLC
directory for did:plc, /.well-known/did.json for did:web), find its PDS
and fetch the record. Verified means the record names the domain and the
selectors we sign with; stale means it names older selectors.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from functions.members import pds_fetch
from functions.members.onboarding import ATTESTATION_COLLECTION


class ResolutionError(Exception):
    pass


class FetchRefused(ResolutionError):
    """The DID document sent the relay somewhere it does not fetch from for a member."""


def _get_json(url: str, timeout: float, allow_private: bool, member_chosen: bool = True) -> tuple[int, Any]:
    try:
        return pds_fetch.get_json(url, timeout, allow_private, member_chosen)
    except pds_fetch.FetchRefused as exc:
        raise FetchRefused(str(exc)) from exc
    except pds_fetch.FetchFailed as exc:
        raise ResolutionError(f"{url}: {exc}") from exc


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


def check(did: str, domain: str, selectors: list[str], plc_url: str, timeout: float,
          allow_private: bool = False) -> dict[str, Any]:
    """verified | stale | missing | unknown (could not tell), with what was found.

    `refused` is set when the DID document pointed the relay at an address or scheme it does not fetch
    from for a member (`atproto.allowPrivateAddresses`): the operator's network is not the member's to probe.
    """
    try:
        status, document = _get_json(did_document_url(did, plc_url), timeout, allow_private,
                                     member_chosen=not did.startswith("did:plc:"))
        if status != 200:
            raise ResolutionError(f"DID document lookup answered HTTP {status}")
        pds = pds_endpoint(document)
        query = urlencode({"repo": did, "collection": ATTESTATION_COLLECTION, "rkey": domain})
        status, body = _get_json(f"{pds}/xrpc/com.atproto.repo.getRecord?{query}", timeout, allow_private)
    except FetchRefused as exc:
        return {"status": "unknown", "detail": str(exc), "refused": str(exc)}
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
