"""Server-side check of AWS Signature Version 4, as boto3 and the AWS CLI sign requests.

The canonical request is rebuilt from what arrived on the wire (method, raw
path, query, the headers the client says it signed, the payload hash) and
the signature recomputed with the configured secret; comparison is
constant-time. Requests older or newer than 15 minutes are refused.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")
MAX_SKEW = 15 * 60


class SignatureError(Exception):
    """Why a request was refused; `code` is the AWS error type boto3 shows."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignedRequest:
    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: bytes


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _canonical_path(raw_path: str) -> str:
    # Non-S3 services sign the path URI-encoded once more, as botocore does.
    return quote(raw_path or "/", safe="/~")


def _canonical_query(query_string: str) -> str:
    pairs = parse_qsl(query_string, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(headers: dict[str, str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise SignatureError("InvalidSignatureException", f"signed header {name} is missing")
        lines.append(f"{name}:{' '.join(value.strip().split())}\n")
    return "".join(lines)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def verify(req: SignedRequest, access_key_id: str, secret: str, now: datetime | None = None) -> str:
    """Raise SignatureError unless `req` was signed with (access_key_id, secret); return the service."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    auth = headers.get("authorization", "")
    match = _AUTH.match(auth)
    if not match:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    parts = match.group("credential").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignatureException", "Credential scope is malformed")
    akid, date, region, service, _ = parts
    if not access_key_id or not hmac.compare_digest(akid.encode(), access_key_id.encode()):
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = headers.get("x-amz-date", "")
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    if not amz_date.startswith(date):
        raise SignatureError("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    now = now or datetime.now(timezone.utc)
    if abs((now - stamp).total_seconds()) > MAX_SKEW:
        raise SignatureError("InvalidSignatureException", "Signature expired or not yet valid")
    signed = match.group("signed").split(";")
    if "host" not in signed:
        raise SignatureError("InvalidSignatureException", "The host header must be signed")
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(req.body).hexdigest()
    if payload_hash != "UNSIGNED-PAYLOAD" and payload_hash != hashlib.sha256(req.body).hexdigest():
        raise SignatureError("InvalidSignatureException", "The payload hash does not match the body")
    canonical = "\n".join([
        req.method.upper(),
        _canonical_path(req.raw_path),
        _canonical_query(req.query_string),
        _canonical_headers(headers, signed),
        ";".join(signed),
        payload_hash,
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    expected = hmac.new(signing_key(secret, date, region, service), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group("signature")):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.")
    return service


def raw_path_of(environ: dict) -> str:
    """The path as the client sent it (still percent-encoded), without the query."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw.split("?", 1)[0]
    return quote(unquote(environ.get("PATH_INFO", "/")), safe="/~!$&'()*+,;=:@")
