"""Member API keys: shown once, stored only as a salted argon2id hash (PyNaCl)."""
from __future__ import annotations

import secrets

import nacl.exceptions
import nacl.pwhash

PREFIX = "atmos_"


def new_api_key() -> str:
    """256 random bits, URL-safe, so it survives a PDS_EMAIL_SMTP_URL unencoded."""
    return PREFIX + secrets.token_urlsafe(32)


# OWASP's argon2id baseline (m=19 MiB, t=2, p=1): slow enough that a stolen
# table is useless, fast enough that AUTH is not the relay's bottleneck.
OPSLIMIT = 2
MEMLIMIT = 19 * 1024 * 1024


def hash_api_key(api_key: str) -> str:
    return nacl.pwhash.argon2id.str(api_key.encode("utf-8"), opslimit=OPSLIMIT, memlimit=MEMLIMIT).decode("ascii")


def verify_api_key(stored_hash: str, candidate: str) -> bool:
    if not stored_hash or not candidate or len(candidate) > 512:
        return False
    try:
        return nacl.pwhash.verify(stored_hash.encode("ascii"), candidate.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False


# Verified against when a username is unknown, so a miss costs what a hit costs
# and response time does not reveal which DIDs and domains are enrolled.
DUMMY_HASH = hash_api_key(secrets.token_urlsafe(16))
