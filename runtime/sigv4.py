"""Server-side check of AWS Signature Version 4, as boto3 and the AWS CLI sign requests.

The canonical request is rebuilt from what arrived on the wire (method, raw
path, query, the headers the client says it signed, the payload hash) and
the signature recomputed with the configured secret; comparison is
constant-time. Requests older or newer than 15 minutes are refused, the
credential scope must name the `lambda` service (any region), and the payload
is always part of the signature (no UNSIGNED-PAYLOAD).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")
MAX_SKEW = 15 * 60
SERVICE = "lambda"


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


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal plus collapsed `//`, exactly as botocore normalises before signing."""
    if not path:
        return "/"
    segments = [s for s in path.split("/") if s and s != "."]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def _canonical_path(raw_path: str) -> str:
    # Non-S3 services sign the wire path (already percent-encoded once, so a
    # function ARN's ':' arrives as %3A) normalised and URI-encoded once more:
    # botocore signs `%253A`. Re-encoding the raw path reproduces that.
    return quote(_remove_dot_segments(raw_path or "/"), safe="/~")


def _uri_encode(raw: str) -> str:
    """Decode %XX to bytes, then encode everything but RFC 3986 unreserved characters.

    Byte-exact on purpose: parse_qsl would turn '+' into a space and replace
    undecodable bytes, and the client signed neither.
    """
    return quote(unquote_to_bytes(raw), safe="-_.~")


def _canonical_query(query_string: str) -> str:
    """The specification's form: every name and value URI-encoded, sorted by name then value."""
    pairs = []
    for item in query_string.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((_uri_encode(key), _uri_encode(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_queries(query_string: str) -> list[str]:
    """Canonical query strings a genuine client may have signed.

    botocore signs a query already in the URL as it stands (sorted, not
    re-encoded); for what its serializers produce that equals the
    specification's form, but a hand-written URL with '+' or a raw '$' differs.
    Both come from the wire, so accepting either gives an attacker nothing.
    """
    spec = _canonical_query(query_string)
    raw = "&".join(f"{k}={v}" for k, v in sorted(
        item.partition("=")[::2] for item in query_string.split("&") if item)) if query_string else ""
    return [spec] if raw == spec else [spec, raw]


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


@dataclass(frozen=True)
class Verified:
    """What a good signature vouches for: the signed region, the signature itself and when it was made."""

    region: str
    signature: str
    signed_at: datetime
    access_key_id: str = ""


@dataclass(frozen=True)
class _Authorization:
    akid: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def _authorization(headers: dict[str, str]) -> _Authorization:
    match = _AUTH.match(headers.get("authorization", ""))
    if not match:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    parts = match.group("credential").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignatureException", "Credential scope is malformed")
    return _Authorization(parts[0], parts[1], parts[2], parts[3], match.group("signed").split(";"),
                          match.group("signature"))


def _signed_at(amz_date: str, scope_date: str, now: datetime) -> datetime:
    """X-Amz-Date as a time, refused when malformed, off the scope's date, or more than 15 minutes off."""
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    if not amz_date.startswith(scope_date):
        raise SignatureError("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    skew = (now - stamp).total_seconds()
    if abs(skew) <= MAX_SKEW:
        return stamp
    fmt = "%Y%m%dT%H%M%SZ"
    if skew > 0:
        limit = datetime.fromtimestamp(now.timestamp() - MAX_SKEW, timezone.utc).strftime(fmt)
        why = f"Signature expired: {amz_date} is now earlier than {limit} ({now.strftime(fmt)} - 15 min.)"
    else:
        limit = datetime.fromtimestamp(now.timestamp() + MAX_SKEW, timezone.utc).strftime(fmt)
        why = f"Signature not yet current: {amz_date} is still later than {limit} ({now.strftime(fmt)} + 15 min.)"
    raise SignatureError("InvalidSignatureException", why)


def _payload_hash(headers: dict[str, str], body: bytes) -> str:
    # The body decides what runs (approve, suspend...), so it is always covered:
    # UNSIGNED-PAYLOAD is S3's and refused here, a stated hash must be the body's.
    payload_hash = hashlib.sha256(body).hexdigest()
    stated = headers.get("x-amz-content-sha256")
    if stated is not None and stated.strip().lower() != payload_hash:
        raise SignatureError("InvalidSignatureException",
                             "The provided x-amz-content-sha256 header does not match the computed payload hash")
    return payload_hash


def _signature_matches(req: SignedRequest, headers: dict[str, str], auth: _Authorization, secret: str) -> bool:
    amz_date = headers["x-amz-date"]
    payload_hash = _payload_hash(headers, req.body)
    path, header_block = _canonical_path(req.raw_path), _canonical_headers(headers, auth.signed_headers)
    scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
    key = signing_key(secret, auth.date, auth.region, auth.service)
    matched = False
    for query in _canonical_queries(req.query_string):
        canonical = "\n".join([req.method.upper(), path, query, header_block, ";".join(auth.signed_headers),
                               payload_hash])
        to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
        expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, auth.signature)
    return matched


def verify(req: SignedRequest, credentials: Mapping[str, str], now: datetime | None = None,
           service_name: str = SERVICE) -> Verified:
    """Raise SignatureError unless `req` was signed with one of `credentials` (id -> secret) for `service_name`.

    Any region is accepted (the relay is one region; boto3 users pick
    `region_name` freely); the scope's service must be `service_name`, as AWS
    refuses a signature made for another service.
    """
    headers = {k.lower(): v for k, v in req.headers.items()}
    auth = _authorization(headers)
    if auth.service != service_name:
        raise SignatureError("InvalidSignatureException",
                             f"Credential should be scoped to correct service: '{service_name}'.")
    secret = credentials.get(auth.akid, "")
    if not auth.akid or not secret:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed_at = _signed_at(headers.get("x-amz-date", ""), auth.date, now or datetime.now(timezone.utc))
    if "host" not in auth.signed_headers:
        raise SignatureError("InvalidSignatureException", "The host header must be signed")
    if not _signature_matches(req, headers, auth, secret):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.")
    return Verified(auth.region, auth.signature, signed_at, auth.akid)


def raw_path_of(environ: dict) -> str:
    """The path as the client sent it (still percent-encoded), without the query."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = raw.split("?", 1)[0].split("#", 1)[0]
        # absolute-form request target ("POST http://host:8080/2015-03-31/...")
        return path if path.startswith("/") else (urlsplit(path).path or "/")
    return quote(unquote(environ.get("PATH_INFO", "/")), safe="/~!$&'()*+,;=:@")
