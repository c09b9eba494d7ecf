"""The commands that show what the relay saw and holds: the delivery queue, the event stream,
the pool's blocks, and how the inbound MX reads saved messages."""
from __future__ import annotations

import argparse
import json

from runtime.command_platform import CliError, invoke, platform_for, print_json
from runtime.spool import SHOWN_STATE, SHOWN_STATES


def cmd_queue(args: argparse.Namespace) -> int:
    """The delivery queue by shown state: queued, held (`notBefore`), frozen, and the settled ones."""
    platform = platform_for(args)
    spool = platform.services.spool
    now = platform.services.clock.now()
    rows = platform.services.store.query(
        f"SELECT queue_id, recipient, shown AS state, attempts, next_attempt_at, last_code, last_text, owner FROM"
        f" (SELECT *, {SHOWN_STATE} AS shown FROM spool_recipients) WHERE (? = '' OR shown = ?)"
        " ORDER BY created_at DESC LIMIT ?", (now, args.state, args.state, args.limit))
    listed = [{**dict(r), "notBefore": r["next_attempt_at"] if r["state"] == "held" else None} for r in rows]
    print_json({"summary": spool.summary(now), "spool": spool.stats(), "recipients": listed})
    return 0


def cmd_queue_purge(args: argparse.Namespace) -> int:
    """Delete a member's queued, held and frozen mail undelivered (function `member`, action purge-queue)."""
    print_json(invoke(platform_for(args), "member", {"action": "purge-queue", "did": args.did, "actor": "cli"}))
    return 0


def cmd_events_replay(args: argparse.Namespace) -> int:
    """Feed a JSON-lines file of Osprey action envelopes to the `replay` function, in chunks."""
    platform = platform_for(args)
    published, chunk = 0, []
    with open(args.file) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                chunk.append(json.loads(line))
            except ValueError as exc:
                raise CliError(f"{args.file}:{number}: not JSON: {exc}", 2) from exc
            if len(chunk) == 500:
                published += invoke(platform, "replay", {"actions": chunk})["published"]
                chunk = []
    if chunk:
        published += invoke(platform, "replay", {"actions": chunk})["published"]
    print_json({"published": published, "topic": "osprey.actions_input"})
    return 0


def cmd_events_rejected(args: argparse.Namespace) -> int:
    """The actions the stream apps refused (dead letters), newest first, as `rejected-actions` keeps them."""
    print_json(invoke(platform_for(args), "rejected-actions", {"list": {"limit": args.limit}}))
    return 0


def cmd_pool_blocks(args: argparse.Namespace) -> int:
    """The providers refusing the pool's mail now, as `pool-blocks` lists them."""
    print_json(invoke(platform_for(args), "pool-blocks", {"list": {}}))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """One JSON line per file, as the `classify-inbound` function sees it (nothing is stored or sent).

    A file that cannot be read or classified still gets its line, with the reason, and the rest go on.
    """
    platform = platform_for(args)
    failed = 0
    for name in args.files:
        try:
            with open(name, "rb") as f:
                raw = f.read()
            result = invoke(platform, "classify-inbound", {
                "trigger": "classify", "dry_run": True, "message": raw})
            line = {"file": name, "classification": result.get("classification"),
                    "member_did": result.get("member_did"), "recipients": result.get("recipients", [])}
        except Exception as exc:  # one bad file must not hide the lines of the others
            failed += 1
            line = {"file": name, "classification": None, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def inspection_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """What the relay saw and holds: the event stream, saved inbound mail, the delivery queue."""
    ev = sub.add_parser("events", parents=[common], help="the event stream")
    evsub = ev.add_subparsers(dest="events_command", required=True)
    r = evsub.add_parser("replay", parents=[common], help="publish Osprey action envelopes (JSON lines) for the rules")
    r.add_argument("file")
    r.set_defaults(func=cmd_events_replay)
    r = evsub.add_parser("rejected", parents=[common], help="actions the stream apps could not read, with the reason")
    r.add_argument("--limit", type=int, default=20)
    r.set_defaults(func=cmd_events_rejected)

    pool = sub.add_parser("pool", parents=[common], help="the pool's standing at the providers")
    poolsub = pool.add_subparsers(dest="pool_command", required=True)
    poolsub.add_parser("blocks", parents=[common], help="providers refusing the pool's mail, since when, last reply"
                       ).set_defaults(func=cmd_pool_blocks)

    s = sub.add_parser("classify", parents=[common], help="classify saved inbound messages (ARF, DSN, ...)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("queue", parents=[common], help="show the delivery queue (or purge a member's)")
    s.add_argument("--state", default="", choices=["", *SHOWN_STATES])
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_queue)
    qsub = s.add_subparsers(dest="queue_command")
    p = qsub.add_parser("purge", parents=[common], help="delete a member's queued, held and frozen mail undelivered")
    p.add_argument("--did", required=True)
    p.set_defaults(func=cmd_queue_purge)
