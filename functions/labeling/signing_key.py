"""The labeler's signing key (`<stateDir>/labeler-key.json`): secp256k1 or P-256, as atproto allows.

Generated once; the file is the identity the network verifies labels
against, so it is written mode 0600 and never replaced while it exists.
Signatures are atproto's: SHA-256, ECDSA, low-S, 64 bytes r||s.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import libipld
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FILENAME = "labeler-key.json"
# curve, multicodec prefix of its public key (varint), group order
_CURVES = {
    "secp256k1": (ec.SECP256K1, b"\xe7\x01",
                  0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141),
    "p256": (ec.SECP256R1, b"\x80\x24",
             0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
}


class LabelerKeyError(Exception):
    """The key file is unreadable or not a key we can sign with."""


@dataclass(frozen=True)
class LabelerKey:
    key_type: str
    private: ec.EllipticCurvePrivateKey
    created_at: float

    @property
    def multikey(self) -> str:
        """publicKeyMultibase of a Multikey verification method: multicodec + compressed point, base58btc."""
        point = self.private.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        return libipld.encode_multibase("z", _CURVES[self.key_type][1] + point)

    @property
    def did_key(self) -> str:
        return "did:key:" + self.multikey

    def sign(self, data: bytes) -> bytes:
        der = self.private.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        order = _CURVES[self.key_type][2]
        if s > order // 2:
            s = order - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def path_for(state_dir: str) -> Path:
    return Path(state_dir) / FILENAME


def load(state_dir: str) -> LabelerKey:
    path = path_for(state_dir)
    try:
        doc = json.loads(path.read_text())
        curve = _CURVES[doc["type"]][0]
        private = ec.derive_private_key(int(doc["privateKeyHex"], 16), curve())
        return LabelerKey(doc["type"], private, float(doc["createdAt"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabelerKeyError(f"{path}: not a labeler key: {exc}") from exc


def ensure(state_dir: str, key_type: str, now: float) -> tuple[LabelerKey, bool]:
    """The key, generated on first use; (key, created). Two processes racing keep the first file."""
    path = path_for(state_dir)
    if path.exists():
        return load(state_dir), False
    path.parent.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(_CURVES[key_type][0]())
    doc = {"type": key_type, "privateKeyHex": format(private.private_numbers().private_value, "064x"),
           "createdAt": now}
    tmp = path.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load(state_dir), False
    finally:
        tmp.unlink(missing_ok=True)
    return LabelerKey(key_type, private, now), True
