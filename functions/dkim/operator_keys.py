"""The pool's DKIM keys (d=<operatorDomain>) in `<stateDir>/operator-dkim-keys.json`.

Generated at start-up when the file is missing, logged once as
`operator_dkim.first_boot` with the TXT records to publish (runbook task 1:
delete the file and restart to rotate). `rotate` instead keeps the old pair
signing beside the new one until an overlap ends, so receivers that still
hold only the old record keep verifying.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.dkim import key_pairs
from functions.dkim.signer import SigningKey
from runtime.file_cache import FileCache

FILENAME = "operator-dkim-keys.json"


@dataclass(frozen=True)
class OperatorKey:
    algorithm: str
    selector: str
    private_pem: str
    public_b64: str

    def record(self, domain: str) -> dict[str, str]:
        return {"name": f"{self.selector}._domainkey.{domain}", "type": "TXT",
                "value": f"v=DKIM1; k={self.algorithm}; p={self.public_b64}"}


def path_for(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILENAME


def _new_keys(now: float) -> list[dict[str, Any]]:
    base = key_pairs.selector_base(now)
    rsa_key, ed_key = key_pairs.new_rsa(), key_pairs.new_ed25519()
    return [
        {"algorithm": "rsa", "selector": key_pairs.rsa_selector(base), "private_pem": rsa_key.private_pem,
         "public_b64": rsa_key.public_b64},
        {"algorithm": "ed25519", "selector": key_pairs.ed25519_selector(base), "private_pem": ed_key.private_pem,
         "public_b64": ed_key.public_b64},
    ]


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def ensure(state_dir: str | Path, now: float) -> tuple[dict[str, Any], bool]:
    """The key document, generating it when missing; True when it was just made."""
    path = path_for(state_dir)
    if path.exists():
        return json.loads(path.read_text()), False
    doc = {"version": 1, "created_at": now, "keys": _new_keys(now), "previous": None}
    _write(path, doc)
    return doc, True


def rotate(state_dir: str | Path, now: float, overlap_seconds: float) -> dict[str, Any]:
    """New keys now; the current ones keep signing for `overlap_seconds` (0: dropped at once)."""
    path = path_for(state_dir)
    current, _ = ensure(state_dir, now)
    previous = {"keys": current["keys"], "until": now + overlap_seconds} if overlap_seconds > 0 else None
    doc = {"version": 1, "created_at": now, "keys": _new_keys(now), "previous": previous}
    if doc["keys"][0]["selector"] == current["keys"][0]["selector"]:
        for key in doc["keys"]:
            key["selector"] = key["selector"][:-1] + "2" + key["selector"][-1]
    _write(path, doc)
    return doc


@dataclass(frozen=True)
class KeyFile:
    current: tuple[OperatorKey, ...]
    previous: tuple[OperatorKey, ...]
    previous_until: float


def _read(path: str) -> KeyFile:
    doc = json.loads(Path(path).read_text())
    previous = doc.get("previous") or {}
    return KeyFile(tuple(OperatorKey(**k) for k in doc["keys"]),
                   tuple(OperatorKey(**k) for k in previous.get("keys", [])), float(previous.get("until", 0)))


# Every relayed message is signed with these; `rotate` replaces the file, which the cache notices.
_files: FileCache[KeyFile] = FileCache(_read)


def signing_keys(state_dir: str | Path, now: float) -> list[OperatorKey]:
    """Keys to sign with now: the current pair, plus the previous pair inside its overlap."""
    keys = _files.get(path_for(state_dir))
    return list(keys.current + keys.previous) if keys.previous and keys.previous_until > now else list(keys.current)


def all_keys(state_dir: str | Path) -> list[OperatorKey]:
    """Current and previous keys, whatever the overlap: a report about our mail can come long after it left.

    Raises FileNotFoundError before the first boot made them."""
    keys = _files.get(path_for(state_dir))
    return [*keys.current, *keys.previous]


def signing_identities(state_dir: str | Path, domain: str, now: float) -> list[SigningKey]:
    """The pool's signatures for a message now (d=<operatorDomain>)."""
    return [SigningKey(domain, key.selector, key.private_pem) for key in signing_keys(state_dir, now)]


def records(doc: dict[str, Any], domain: str) -> list[dict[str, str]]:
    return [OperatorKey(**k).record(domain) for k in doc["keys"]]
