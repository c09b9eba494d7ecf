"""Member API keys: shown once, stored only as a salted argon2id hash (PyNaCl)."""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

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


@functools.cache
def dummy_hash() -> str:
    """Verified against when a username is unknown, so a miss costs what a hit costs and response time
    does not reveal which DIDs and domains are enrolled. Made on first use: every relay process and CLI
    command imports this module, few of them check a key."""
    return hash_api_key(secrets.token_urlsafe(16))


class VerifiedKeys:
    """Successful verifications of the last few minutes, so AUTH pays argon2 once, not per session.

    A PDS opens a new session (and AUTH) for every mail it sends; at m=19 MiB
    the hash costs more CPU than everything else the message needs. What is
    remembered is only "this key matches this stored hash", keyed by the
    stored hash and an HMAC of the key under a secret that never leaves the
    process: the key itself is not kept, a wrong key always pays the full
    hash, and a rotated key (a new stored hash) misses at once. The member's
    status is not part of it; auth reads that on every AUTH, so a suspension
    takes effect on the next one.
    """

    def __init__(self, ttl: float = 300.0, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._secret = secrets.token_bytes(32)
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._lock = threading.Lock()

    def _tag(self, stored_hash: str, candidate: str) -> tuple[str, bytes]:
        return stored_hash, hmac.new(self._secret, candidate.encode("utf-8"), hashlib.sha256).digest()

    def verify(self, stored_hash: str, candidate: str) -> bool:
        if not stored_hash or not candidate or len(candidate) > 512:
            return False
        tag = self._tag(stored_hash, candidate)
        now = time.monotonic()
        with self._lock:
            until = self._seen.get(tag)
            if until is not None and until > now:
                return True
            self._seen.pop(tag, None)
        if not verify_api_key(stored_hash, candidate):
            return False
        with self._lock:
            self._seen[tag] = now + self.ttl
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
        return True


# Held by the process, like the parsed DKIM keys: `atmos-relay deploy` reloads
# this module and so starts it empty.
verified_keys = VerifiedKeys()
