"""DKIM key pairs (RSA-2048 and Ed25519), their selectors and their DNS TXT records."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class KeyPair:
    algorithm: str  # "rsa" | "ed25519"
    private_pem: str
    public_b64: str


def selector_base(when: float) -> str:
    """`atmos<YYYYMMDD>` in UTC; the RSA selector adds `r`, the Ed25519 one `e`."""
    return "atmos" + datetime.fromtimestamp(when, timezone.utc).strftime("%Y%m%d")


def rsa_selector(base: str) -> str:
    return base + "r"


def ed25519_selector(base: str) -> str:
    return base + "e"


def new_rsa() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair("rsa", pem, base64.b64encode(spki).decode())


def new_ed25519() -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KeyPair("ed25519", pem, base64.b64encode(raw).decode())


def dkim_records(domain: str, base: str, rsa_pub: str, ed_pub: str) -> list[dict[str, str]]:
    return [
        {"name": f"{rsa_selector(base)}._domainkey.{domain}", "type": "TXT",
         "value": f"v=DKIM1; k=rsa; p={rsa_pub}"},
        {"name": f"{ed25519_selector(base)}._domainkey.{domain}", "type": "TXT",
         "value": f"v=DKIM1; k=ed25519; p={ed_pub}"},
    ]


def txt_public_key(txt: str) -> tuple[str, str]:
    """(k, p) from a DKIM TXT record value; k defaults to rsa as RFC 6376 says."""
    tags = {}
    for part in txt.split(";"):
        if "=" in part:
            k, _, v = part.partition("=")
            tags[k.strip().lower()] = "".join(v.split())
    return tags.get("k", "rsa").lower(), tags.get("p", "")
