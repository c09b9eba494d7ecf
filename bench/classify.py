"""Inbound classification: how right and how fast, on real-world bounces and feedback reports.

Against Sisimai: the five measures of issue 15 on Sisimai's public corpus
(tests/data/bounces-sisimai) read as tests/test_bounce_corpus.py reads it
(`bounces.read`: the recipients the report names, as Sisimai reads them;
the classifier then records the address the relay sent to): bounces
recognised, bounced recipients found, hard/soft and reason agreement,
feedback reports read as complaints.

Classifier alone: every file of flufl.bounce's real-world corpus (fetched by
tests/setup/install-deps.sh into tests/.cache) and the RFC 5965 example
feedback reports go through the `classify-inbound` function exactly as
`atmos-relay classify` runs it (dry run: nothing stored or sent). A corpus
file is right when it is a bounce naming exactly the addresses flufl.bounce's
own tests expect (all soft where the corpus says the failure is temporary),
or, for the few files that expect no address, when it is not taken for a
bounce; the scoring is the one tests/test_inbound.py asserts. Then the
corpus is classified over and over for a couple of seconds: messages per
second of wall time and per second of CPU time (the one to compare on a
shared machine).

End to end (unless skipped): a member's mail is relayed to a recipient MX,
and for every delivered message a DSN (RFC 3464: failed 5.1.1, failed 5.2.2
or delayed 4.4.1, in turn) comes back over SMTP to the message's VERP
address on the relay's inbound MX, from several connections at once. The
MX answers 250 only once the DSN is classified, recorded in
`inbound_messages` and turned into a `bounce_received` event, so DSNs
accepted per second is the inbound path's throughput.

`python -m bench.classify` runs this benchmark alone.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import smtplib
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from harness import bounce_corpus  # noqa: E402

ARF_EXAMPLES = ROOT / "tests" / "data" / "arf"
DID = "did:plc:classifybenchclassifyben"
DOMAIN = "classify-bench.example"


def _platform(work: Path):
    from runtime.bootstrap import build
    from runtime.jsonlog import JsonLog
    from runtime.settings import load_settings

    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.json"
    config.write_text(json.dumps({"stateDir": str(work / "state"), "adminToken": "bench"}))
    return build(load_settings(config), JsonLog(open(os.devnull, "w")))


def _classify(platform, raw: bytes) -> dict:
    # the event `atmos-relay classify FILE` sends
    return platform.runtime.invoke("classify-inbound", {
        "trigger": "classify", "dry_run": True, "message": base64.b64encode(raw).decode("ascii")})


def score(platform) -> tuple[dict[str, float], list[str]]:
    """Accuracy on the corpus; also the names of the files it got wrong, with what it said."""
    samples = bounce_corpus.samples()
    right = recognised = bounce_files = matched = expected_total = extra = 0
    misses: list[str] = []
    for sample in samples:
        result = _classify(platform, sample.path.read_bytes())
        found = {r["address"].lower() for r in result.get("recipients") or []}
        expected = {a.lower() for a in sample.addresses}
        is_bounce = result.get("classification") == "bounce"
        if expected:
            bounce_files += 1
            recognised += is_bounce
            matched += len(found & expected) if is_bounce else 0
            expected_total += len(expected)
            extra += len(found - expected) if is_bounce else 0
            ok = is_bounce and found == expected and (
                not sample.temporary or all(r["kind"] == "soft" for r in result["recipients"]))
        else:
            ok = not is_bounce
        right += ok
        if not ok:
            misses.append(f"{sample.path.name}: {result.get('classification')} {sorted(found)}"
                          f" (expected {sorted(expected) or 'no bounce'}{', temporary' if sample.temporary else ''})")
    arf_files = sorted(ARF_EXAMPLES.glob("*.eml"))
    arf_right = 0
    for path in arf_files:
        result = _classify(platform, path.read_bytes())
        arf_right += result.get("classification") == "complaint"
        if result.get("classification") != "complaint":
            misses.append(f"{path.name}: {result.get('classification')} (expected complaint)")
    sisimai = bounce_corpus.score(lambda raw: _sisimai_reading(platform, raw))
    misses.extend(f"sisimai {line}" for line in sisimai.misses)
    return {
        **sisimai.as_dict(),
        **{f"sisimai_{measure}_pct": 100.0 * sisimai.ratio(measure) for measure in bounce_corpus.GOALS},
        "classify_corpus_files": len(samples),
        "classify_corpus_right": right,
        "classify_corpus_accuracy_pct": 100.0 * right / len(samples),
        "classify_bounces_recognised": recognised,
        "classify_bounces_expected": bounce_files,
        "classify_addresses_matched": matched,
        "classify_addresses_expected": expected_total,
        "classify_addresses_extra": extra,
        "classify_arf_examples_right": arf_right,
        "classify_arf_examples": len(arf_files),
    }, misses


def _sisimai_reading(platform, raw: bytes) -> tuple[str, list[dict]]:
    from functions.inbound import bounces

    reading = bounces.read(bounces.parse(raw))
    return {"bounce": "bounce", "complaint": "complaint"}.get(reading.kind, reading.kind), [
        r.as_dict() for r in reading.recipients]


def speed(platform, seconds: float = 3.0) -> tuple[float, float]:
    """Messages per second of wall time, and per second of the process's CPU time.

    On a shared machine the wall figure says how busy the others are; the
    CPU figure is what the classifier itself costs.
    """
    messages = [p.read_bytes() for p in (s.path for s in bounce_corpus.samples())]
    messages += [p.read_bytes() for p in sorted(ARF_EXAMPLES.glob("*.eml"))]
    for raw in messages:  # warm-up: imports, flufl.bounce's detectors
        _classify(platform, raw)
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for raw in messages:
            _classify(platform, raw)
        count += len(messages)
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


def dsn(verp_address: str, returned: bytes, recipient: str, n: int) -> bytes:
    """A DSN as a recipient MTA (Postfix-like) sends it back to the envelope sender."""
    action, status, diagnostic = [
        ("failed", "5.1.1", "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown in local recipient table"),
        ("failed", "5.2.2", "smtp; 552 5.2.2 <{r}>: Mailbox full"),
        ("delayed", "4.4.1", "smtp; 421 4.4.1 connection timed out"),
    ][n % 3]
    headers = returned.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return (f"From: MAILER-DAEMON@mx.recipient.test (Mail Delivery System)\r\n"
            f"To: {verp_address}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <dsn-{n}@mx.recipient.test>\r\n"
            f"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"dsn-{n}\"\r\n\r\n"
            f"--dsn-{n}\r\nContent-Type: text/plain\r\n\r\n"
            f"This is the mail system at host mx.recipient.test.\r\n\r\n"
            f"I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
            f"--dsn-{n}\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.recipient.test\r\nArrival-Date: Tue, 24 Nov 2026 11:59:00 +0000\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
            f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.recipient.test\r\n"
            f"Diagnostic-Code: {diagnostic.format(r=recipient)}\r\n\r\n"
            f"--dsn-{n}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n\r\n"
            f"--dsn-{n}--\r\n").encode()


def _send_dsns(port: int, batch: list[tuple[str, bytes]]) -> list[float]:
    latencies = []
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.recipient.test", timeout=120) as s:
        for to, raw in batch:
            started = time.perf_counter()
            s.sendmail("", [to], raw)
            latencies.append(time.perf_counter() - started)
    return latencies


def _inbound_rows(relay) -> list[tuple]:
    db = sqlite3.connect(relay.state / "relay.sqlite")
    try:
        return db.execute("SELECT classification, member_did FROM inbound_messages").fetchall()
    finally:
        db.close()


def end_to_end(work: Path, count: int = 300, clients: int = 8) -> dict[str, float]:
    from bench import load, rig

    with rig.member_relay(work, "cl-", DID, DOMAIN) as (relay, sink, target):
        load.run(target, count, clients, 500)
        delivered = sink.wait_for(count, timeout=300)
        dsns = [(meta["mail_from"], dsn(meta["mail_from"], raw, meta["rcpt_tos"][0], n))
                for n, (meta, raw) in enumerate(delivered)]
        _send_dsns(relay.ports["mx"], dsns[:clients])  # warm-up
        timed = dsns[clients:]
        batches = [timed[i::clients] for i in range(clients)]
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = sorted(x for batch in pool.map(lambda b: _send_dsns(relay.ports["mx"], b), batches)
                               for x in batch)
        elapsed = time.perf_counter() - started
        rows = _inbound_rows(relay)
        return {
            "mx_dsns_per_s": len(timed) / elapsed,
            "mx_dsn_to_250_p50_ms": latencies[len(latencies) // 2] * 1000,
            "mx_dsn_to_250_p95_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000,
            "mx_dsns_sent": len(dsns),
            "mx_dsns_bounce_attributed": sum(1 for c, did in rows if c == "bounce" and did == DID),
        }


def run(work: Path, dsns: int = 300, clients: int = 8, seconds: float = 3.0,
        misses: list[str] | None = None) -> dict[str, float]:
    if not bounce_corpus.available():
        raise RuntimeError(f"no corpus in {bounce_corpus.ROOT}: run `make test-deps` first")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    platform = _platform(work / "classify")
    try:
        out, wrong = score(platform)
        out["classify_messages_per_s"], out["classify_messages_per_cpu_s"] = speed(platform, seconds)
    finally:
        platform.services.store.close()
    if misses is not None:
        misses.extend(wrong)
    if dsns > 0:
        out.update(end_to_end(work, dsns, clients))
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.classify", description=__doc__.splitlines()[0])
    p.add_argument("--dsns", type=int, default=300, help="DSNs sent to the inbound MX; 0 skips the end-to-end run")
    p.add_argument("--clients", type=int, default=8, help="concurrent SMTP connections to the MX")
    p.add_argument("--seconds", type=float, default=3.0, help="how long to classify the corpus over and over")
    args = p.parse_args()
    misses: list[str] = []
    with tempfile.TemporaryDirectory(prefix="atmos-bench-classify-") as tmp:
        results = run(Path(tmp), args.dsns, args.clients, args.seconds, misses)
    for key, value in results.items():
        print(f"{key:<34} {value:>12.1f}")
    if misses:
        print(f"\nnot right ({len(misses)}):")
        for line in misses:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
