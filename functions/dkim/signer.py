"""DKIM signatures (RFC 6376, Ed25519 per RFC 8463) with dkimpy's canonicalisation and OpenSSL's RSA.

dkimpy parses the message, canonicalises (relaxed/relaxed), selects the
header instances to sign and folds the header; the private-key operation
is done by `cryptography` (RSA) and PyNaCl (Ed25519), because dkimpy's own
RSA is pure Python. The body hash is computed once however many
signatures one message gets, and so is the hash input of the signed header
fields: only the DKIM-Signature field itself differs between the four.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

CANONICALIZATION = b"relaxed/relaxed"
SIGNED = (b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date", b"message-id",
          b"in-reply-to", b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
          b"content-language", b"list-id", b"list-unsubscribe", b"list-unsubscribe-post",
          b"x-atmos-member-did", b"feedback-id")
# Signed once more than present, so nobody can add a second one after us.
OVERSIGNED = (b"from", b"x-atmos-member-did", b"feedback-id", b"subject", b"to", b"date", b"message-id")


class SigningError(Exception):
    pass


@dataclass(frozen=True)
class Signature:
    domain: str
    selector: str
    algorithm: str
    header: bytes


@dataclass(frozen=True)
class SigningKey:
    """One signature to make: d=, s= and the private key."""

    domain: str
    selector: str
    private_pem: str


@functools.lru_cache(maxsize=512)
def load_private_key(pem: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """Parsed keys are cached by their PEM: parsing an RSA key costs more than signing with it."""
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise SigningError(f"unsupported DKIM key type {type(key).__name__}")
    return key


@functools.lru_cache(maxsize=512)
def _signing_key(pem: str) -> tuple[rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, bool]:
    """The parsed key and whether it is RSA, cached together (isinstance on the key ABCs is not free)."""
    key = load_private_key(pem)
    return key, isinstance(key, rsa.RSAPrivateKey)


class MessageSigner:
    """One message, canonicalised once, signed as many times as needed."""

    def __init__(self, message: bytes) -> None:
        try:
            headers, body = dkim.rfc822_parse(message)
        except dkim.MessageFormatError as exc:
            raise SigningError(f"cannot parse message: {exc}") from exc
        self._read(headers, body)

    @classmethod
    def of_parts(cls, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> "MessageSigner":
        """A message whose header section is already read (message_headers.prepare): no second parse.

        `headers` are (name, value) as dkim.rfc822_parse gives them: the value is everything after the
        colon, continuation lines and CRLFs included; `body` follows the empty line.
        """
        signer = cls.__new__(cls)
        signer._read(list(headers), body)
        return signer

    def _read(self, headers: list, body: bytes) -> None:
        self.headers = headers
        self.policy = CanonicalizationPolicy.from_c_value(CANONICALIZATION)
        self.body_hash = base64.b64encode(hashlib.sha256(self.policy.canonicalize_body(body)).digest())
        present = [name.lower() for name, _ in self.headers]
        if b"from" not in present:
            raise SigningError("the message has no From header")
        self.include = tuple(h for h in present if h in SIGNED) + tuple(h for h in OVERSIGNED if h in present)
        # What dkim.hash_headers feeds the hash before the signature's own field, the same for every signature.
        # Selecting by name before canonicalising is the same selection (it compares lower-cased names) and
        # spares canonicalising the fields no signature covers.
        selected = self.policy.canonicalize_headers(dkim.select_headers(self.headers, self.include))
        self.signed_fields = b"".join(name + b":" + value for name, value in selected)

    def sign(self, domain: str, selector: str, private_pem: str, timestamp: int | None = None) -> Signature:
        key, is_rsa = _signing_key(private_pem)
        algorithm = b"rsa-sha256" if is_rsa else b"ed25519-sha256"
        fields = [
            (b"v", b"1"),
            (b"a", algorithm),
            (b"c", CANONICALIZATION),
            (b"d", domain.encode("ascii")),
            (b"s", selector.encode("ascii")),
            (b"t", str(timestamp or int(time.time())).encode("ascii")),
            (b"h", b" : ".join(self.include)),
            (b"bh", self.body_hash),
            (b"b", b""),
        ]
        unsigned = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(b"DKIM-Signature"))
        # dkim.hash_headers, with the selected header fields hashed once per message (`signed_fields`).
        hasher = hashlib.sha256(self.signed_fields)
        for name, value in self.policy.canonicalize_headers(
                [(b"DKIM-Signature", dkim.RE_BTAG.sub(b"\\1", b" " + unsigned))]):
            hasher.update(name + b":" + value.rstrip())
        digest = hasher.digest()
        if is_rsa:
            raw = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        else:
            raw = key.sign(digest)
        fields[-1] = (b"b", base64.b64encode(raw))
        value = dkim.fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n", namelen=len(b"DKIM-Signature"))
        return Signature(domain, selector, algorithm.decode(), b"DKIM-Signature: " + value)


def sign_message(message: bytes, keys: Iterable[SigningKey],
                 parts: tuple[Sequence[tuple[bytes, bytes]], bytes] | None = None) -> tuple[bytes, list[Signature]]:
    """The message with one DKIM-Signature per key in front, canonicalised and hashed once for all of them.

    `parts`, the message's (headers, body) already read (message_headers.Prepared.parts), saves reading it again.
    """
    signer = MessageSigner(message) if parts is None else MessageSigner.of_parts(*parts)
    signatures = [signer.sign(key.domain, key.selector, key.private_pem) for key in keys]
    return b"".join(s.header for s in signatures) + message, signatures
