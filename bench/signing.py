"""Signing alone: dkimpy's pure-Python RSA against our signer (dkimpy canonicalisation, OpenSSL RSA)."""
from __future__ import annotations

import time

import dkim

from functions.dkim import key_pairs
from functions.dkim.signer import MessageSigner


def _message(size: int = 4000) -> bytes:
    filler = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " + "\r\n") * (size // 60)
    return ("X-Atmos-Member-Did: did:plc:benchbenchbenchbenchbenc\r\n"
            "Feedback-ID: transactional:did:plc:benchbenchbenchbenchbenc:bench.example:atmosphere-mail\r\n"
            "From: Bench <noreply@bench.example>\r\nTo: someone@recipient.test\r\nSubject: Confirm\r\n"
            "Date: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <x@bench.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain\r\n\r\n" + filler).encode()


def _rate(fn, seconds: float = 2.0) -> float:
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - started)


def run() -> dict[str, float]:
    message = _message()
    rsa_key, ed_key = key_pairs.new_rsa(), key_pairs.new_ed25519()
    op_rsa, op_ed = key_pairs.new_rsa(), key_pairs.new_ed25519()
    pem = rsa_key.private_pem.encode()

    def dkimpy_rsa() -> None:
        dkim.sign(message, b"s", b"bench.example", pem, canonicalize=(b"relaxed", b"relaxed"))

    def ours_rsa() -> None:
        MessageSigner(message).sign("bench.example", "sr", rsa_key.private_pem)

    def ours_ed25519() -> None:
        MessageSigner(message).sign("bench.example", "se", ed_key.private_pem)

    def ours_four() -> None:
        signer = MessageSigner(message)
        for domain, key in (("bench.example", rsa_key), ("bench.example", ed_key), ("atmos.test", op_rsa),
                            ("atmos.test", op_ed)):
            signer.sign(domain, "s", key.private_pem)

    return {
        "dkimpy_rsa2048_per_s": _rate(dkimpy_rsa),
        "ours_rsa2048_per_s": _rate(ours_rsa),
        "ours_ed25519_per_s": _rate(ours_ed25519),
        "ours_four_signature_messages_per_s": _rate(ours_four),
    }
