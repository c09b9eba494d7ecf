"""Submitting clients for the benchmarks: processes, each one a PDS sending over SMTP.

`persistent` keeps one authenticated session per client and sends all its
messages through it (how a pooled mailer behaves); `sessions` opens a new
connection, STARTTLS and AUTH for every message (how a PDS sending one
confirmation mail behaves), and measures AUTH-to-250 latency.
"""
from __future__ import annotations

import multiprocessing
import smtplib
import ssl
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    username: str | None
    password: str | None
    sender: str
    recipient_domain: str
    starttls: bool = True


def _context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def body(sender: str, recipient: str, n: int, size: int) -> bytes:
    filler = ("The quick brown fox jumps over the lazy dog. " * 2 + "\r\n") * max(1, size // 92)
    return (f"From: Bench <{sender}>\r\nTo: {recipient}\r\nSubject: bench message {n}\r\n"
            f"Message-ID: <bench-{n}-{time.time_ns()}@bench.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nConfirm your account, code {n}.\r\n{filler}").encode()


def _open(t: Target) -> smtplib.SMTP:
    s = smtplib.SMTP(t.host, t.port, local_hostname="bench-client.test", timeout=120)
    if t.starttls:
        s.starttls(context=_context())
    s.ehlo()
    if t.username:
        s.login(t.username, t.password or "")
    return s


def _persistent(args: tuple[Target, int, int, int]) -> list[float]:
    target, first, count, size = args
    latencies = []
    s = _open(target)
    for n in range(first, first + count):
        rcpt = f"user{n}@{target.recipient_domain}"
        started = time.perf_counter()
        s.sendmail(target.sender, [rcpt], body(target.sender, rcpt, n, size))
        latencies.append(time.perf_counter() - started)
    s.quit()
    return latencies


def _sessions(args: tuple[Target, int, int, int]) -> list[float]:
    target, first, count, size = args
    latencies = []
    for n in range(first, first + count):
        rcpt = f"user{n}@{target.recipient_domain}"
        started = time.perf_counter()
        s = _open(target)
        s.sendmail(target.sender, [rcpt], body(target.sender, rcpt, n, size))
        latencies.append(time.perf_counter() - started)
        s.quit()
    return latencies


@dataclass
class LoadResult:
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def run(target: Target, messages: int, clients: int, size: int = 2000, mode: str = "persistent") -> LoadResult:
    per = [messages // clients + (1 if i < messages % clients else 0) for i in range(clients)]
    jobs, first = [], 0
    for count in per:
        jobs.append((target, first, count, size))
        first += count
    work = _persistent if mode == "persistent" else _sessions
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.map(work, jobs)
        seconds = time.perf_counter() - started
    return LoadResult(messages, seconds, [x for r in results for x in r])
