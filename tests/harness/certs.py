"""A throwaway certificate for test servers that speak TLS (the recipient MX)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(directory: Path, name: str = "mx.recipient.test") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return cert, key
