"""`make bench`: how fast the relay is, measured end to end on this machine.

Starts BIND, a recipient MX and the relay as processes (the same harness the
tests use), enrolls a member, and drives it with concurrent submitting
clients. Where Postfix and OpenDKIM are installed it runs them under the
same load and prints our figures as a ratio to theirs. Results go to stdout
and bench/out/results.json.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench import classify, events, load, profile, rig, signing, web  # noqa: E402
from harness.mx import SinkMX  # noqa: E402

DID = "did:plc:benchbenchbenchbenchbenc"
PARTS = ("signing", "relay", "events", "classify", "web")
DOMAIN = "bench.example"


def wait_delivered(mx: SinkMX, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(mx.maildir.glob("*.eml"))) >= count:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"only {len(list(mx.maildir.glob('*.eml')))} of {count} delivered within {timeout}s")


def measure(target: load.Target, mx: SinkMX, messages: int, clients: int, size: int,
            watch: Callable[[], AbstractContextManager] = nullcontext) -> dict:
    """The same load and the same figures for whichever MTA `target` points at; `watch` runs around the load."""
    load.run(target, clients * 2, clients, size)  # warm-up: imports, key cache, connections
    wait_delivered(mx, clients * 2, 120)
    before = len(list(mx.maildir.glob("*.eml")))
    with watch():
        started = time.perf_counter()
        accepted = load.run(target, messages, clients, size)
        done = wait_delivered(mx, before + messages, 600)
        sessions = load.run(target, max(50, messages // 10), clients, size, mode="sessions")
        wait_delivered(mx, before + messages + sessions.messages, 600)
    return {
        "accepted_per_s": accepted.rate,
        "delivered_end_to_end_per_s": messages / (done - started),
        "data_to_250_p50_ms": accepted.percentile(50) * 1000,
        "data_to_250_p95_ms": accepted.percentile(95) * 1000,
        "sessions_per_s": sessions.rate,
        "connect_tls_auth_to_250_p50_ms": sessions.percentile(50) * 1000,
        "connect_tls_auth_to_250_p95_ms": sessions.percentile(95) * 1000,
    }


def undelivered(state: Path) -> list[tuple]:
    """Recipients the relay holds but has not delivered: state, attempts and the last reply, to say why."""
    db = sqlite3.connect(state / "relay.sqlite")
    try:
        return db.execute("SELECT state, attempts, last_code, last_text, COUNT(*) FROM spool_recipients"
                          " WHERE state != 'delivered' GROUP BY 1, 2, 3, 4").fetchall()
    finally:
        db.close()


def bench_relay(work: Path, messages: int, clients: int, size: int, prefix: str = "",
                profile_to: Path | None = None) -> dict:
    """Measured as Postfix is, plus the CPU the relay's processes spent per message (main and edges).

    With `profile_to`, py-spy records the relay's processes during the measured load (bench/profile.py).
    """
    delivery = {"concurrency": 32, "perDomainConcurrency": 8}
    with rig.member_relay(work, prefix, DID, DOMAIN, delivery) as (relay, mx, target):
        pid, used = relay.proc.pid, {}
        out = profile_to / f"{prefix.strip('-') or 'r'}.txt" if profile_to is not None else None

        @contextmanager
        def watch() -> Iterator[None]:
            with profile.cpu_used(pid, used), profile.recording(pid, out) if out else nullcontext():
                yield
        try:
            figures = measure(target, mx, messages, clients, size, watch)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; the relay's queue: {undelivered(relay.state)}") from None
    sent = messages + max(50, messages // 10)
    return {**figures, "relay_cpu_ms_per_message": used["cpu_seconds"] * 1000 / sent}


def bench_postfix(work: Path, messages: int, clients: int, size: int, prefix: str = "") -> dict | None:
    try:
        from harness.postfix import PostfixSigningRelay
    except ImportError:
        return None
    import shutil

    if not (shutil.which("postfix") and shutil.which("opendkim")):
        return None
    from functions.dkim import key_pairs
    from harness.ports import free_port

    mx = SinkMX(work / f"{prefix}pf-mx").start()
    key = key_pairs.new_rsa()
    postfix = PostfixSigningRelay(work / f"{prefix}postfix", listen_port=free_port(), sink_port=mx.port,
                                  dkim_domain=DOMAIN, dkim_selector="bench", dkim_key_pem=key.private_pem)
    try:
        postfix.start()
        target = load.Target("127.0.0.1", postfix.listen_port, None, None, f"noreply@{DOMAIN}", "recipient.test")
        return measure(target, mx, messages, clients, size)
    finally:
        postfix.stop()
        mx.stop()


def head_to_head(work: Path, args: argparse.Namespace) -> dict:
    """Our relay and Postfix + OpenDKIM in alternation, `--rounds` times each, and the median of each figure.

    This machine's speed drifts over minutes; measuring the two back to back, more than once,
    keeps the drift out of the ratio.
    """
    runs: dict[str, list[dict]] = {"relay": [], "postfix_opendkim": []}
    for n in range(args.rounds):
        runs["relay"].append(bench_relay(work, args.messages, args.clients, args.size, prefix=f"r{n}-",
                                         profile_to=args.profile))
        if not args.skip_postfix:
            theirs = bench_postfix(work, args.messages, args.clients, args.size, prefix=f"r{n}-")
            if theirs:
                runs["postfix_opendkim"].append(theirs)
    out = {name: {key: statistics.median(r[key] for r in done) for key in done[0]}
           for name, done in runs.items() if done}
    out["rounds"] = {name: done for name, done in runs.items() if done}
    return out


def table(results: dict) -> str:
    ours, theirs = results.get("relay") or {}, results.get("postfix_opendkim") or {}
    lines = [f"{'metric':<34} {'atmos-relay':>12} {'postfix+opendkim':>17} {'ratio':>7}"]
    for key, value in ours.items():
        other = theirs.get(key)
        ratio = f"{value / other:.2f}x" if other else "-"
        shown = f"{other:.1f}" if other is not None else "-"
        lines.append(f"{key:<34} {value:>12.1f} {shown:>17} {ratio:>7}")
    rounds = results.get("rounds") or {}
    theirs_by_round = rounds.get("postfix_opendkim", [])
    for n, ours_n in enumerate(rounds.get("relay", [])):
        theirs_n = theirs_by_round[n] if n < len(theirs_by_round) else {}
        pair = [f"{key} {ours_n[key]:.1f}" + (f" vs {theirs_n[key]:.1f}" if theirs_n else "")
                for key in ("accepted_per_s", "sessions_per_s")]
        lines.append(f"round {n + 1}: " + ", ".join(pair))
    lines.append("")
    for key, value in {**results.get("signing", {}), **results.get("events", {}), **results.get("classify", {}),
                       **results.get("web", {})}.items():
        lines.append(f"{key:<34} {value:>12.1f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="make bench")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--size", type=int, default=2000, help="approximate body size in bytes")
    p.add_argument("--skip-postfix", action="store_true")
    p.add_argument("--rounds", type=int, default=2, help="relay and Postfix runs, in alternation (median shown)")
    p.add_argument("--events", type=int, default=5000, help="actions pushed through the rules per deployment")
    p.add_argument("--dsns", type=int, default=300, help="DSNs sent to the inbound MX (0: classifier alone)")
    p.add_argument("--web-members", type=int, default=100, help="members behind the dashboard pages")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated, of {','.join(PARTS)} (relay: the head-to-head with Postfix)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy records each relay round's load into DIR (bench/profile.py)")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        p.error(f"unknown parts: {', '.join(sorted(parts - set(PARTS)))}")
    results: dict = {"messages": args.messages, "clients": args.clients, "size": args.size}
    if "signing" in parts:
        results["signing"] = signing.run()
    with tempfile.TemporaryDirectory(prefix="atmos-bench-") as tmp:
        work = Path(tmp)
        if "relay" in parts:
            results.update(head_to_head(work, args))
        if "events" in parts:
            results["events"] = events.run(work, args.events)
        if "classify" in parts:
            results["classify"] = classify.run(work, args.dsns, args.clients)
        if "web" in parts:
            results["web"] = web.run(work, args.web_members)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
