"""DKIM verifiers that are not ours and not dkimpy: Perl Mail::DKIM and Node's mailauth."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "verifier"


def _run(cmd: list[str], message: bytes) -> list[dict]:
    proc = subprocess.run(cmd, input=message, capture_output=True, timeout=60, cwd=HERE)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed: {proc.stderr.decode()}")
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


def mail_dkim(message: bytes, dns_port: int) -> list[dict]:
    """Perl Mail::DKIM (Debian 12 verifies RSA; it does not know ed25519-sha256)."""
    return _run(["perl", str(HERE / "verify_dkim.pl"), str(dns_port)], message)


def _mailauth(message: bytes, dns_port: int) -> list[dict]:
    node = shutil.which("node") or "node"
    return _run([node, str(HERE / "verify_dkim.js"), str(dns_port)], message)


def mailauth(message: bytes, dns_port: int) -> list[dict]:
    """Node's mailauth: RSA and Ed25519 DKIM signatures."""
    return [r for r in _mailauth(message, dns_port) if "domain" in r]


def mailauth_arc(message: bytes, dns_port: int) -> dict | None:
    """Node's mailauth: the ARC chain's validation ({"arc": "pass"|"fail"|..., "i": n}), None without ARC."""
    return next((r for r in _mailauth(message, dns_port) if "arc" in r), None)


def mailauth_from(message: bytes, dns_port: int) -> list[str]:
    """The From: addresses mailauth reads, the ones its DMARC check aligns on."""
    return next(r["headerFrom"] for r in _mailauth(message, dns_port) if "headerFrom" in r)


def by_key(results: list[dict]) -> dict[tuple[str, str], str]:
    return {(r["domain"], r["selector"]): r["result"] for r in results}
