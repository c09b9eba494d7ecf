"""`atmos-relay`: the one command operators type.

Every subcommand builds the same platform `serve` builds, so `member`,
`invoke` and `queue` work on the store whether or not a relay is running;
the member commands are thin callers of the `member` function.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from runtime.bootstrap import Platform, build, manifest_path
from runtime.errors import FunctionNotFound, ManifestError, RelayError
from runtime.jsonlog import JsonLog, install_stdlib_bridge
from runtime.manifest import (
    HttpTrigger,
    ScheduleTrigger,
    SmtpTrigger,
    SpoolTrigger,
    StartupTrigger,
    StreamTrigger,
    load_manifest,
)
from runtime.settings import SettingsError, load_settings


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _platform(args: argparse.Namespace, *, announce_token: bool = False, quiet: bool = True) -> Platform:
    settings = load_settings(args.config)
    log = JsonLog(sys.stderr) if quiet else JsonLog()
    install_stdlib_bridge(log)
    return build(settings, log, announce_token=announce_token)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


def _invoke(platform: Platform, name: str, event: dict) -> Any:
    try:
        return platform.runtime.invoke(name, event)
    except RelayError as exc:
        raise CliError(exc.reply.text if exc.reply.code >= 400 else str(exc)) from exc
    except FunctionNotFound as exc:
        raise CliError(str(exc)) from exc


def describe_trigger(trigger: Any) -> str:
    if isinstance(trigger, SmtpTrigger):
        return f"smtp {'/'.join(trigger.listeners)} {trigger.hook}"
    if isinstance(trigger, HttpTrigger):
        return f"http {trigger.method} {trigger.path}"
    if isinstance(trigger, StreamTrigger):
        return f"stream {trigger.topic}"
    if isinstance(trigger, ScheduleTrigger):
        return f"schedule {trigger.expression}"
    if isinstance(trigger, SpoolTrigger):
        return f"spool batch={trigger.batchSize}"
    if isinstance(trigger, StartupTrigger):
        return "startup"
    return type(trigger).__name__


def cmd_serve(args: argparse.Namespace) -> int:
    from runtime.server import serve

    platform = _platform(args, announce_token=True, quiet=False)
    return serve(platform)


def cmd_edge(args: argparse.Namespace) -> int:
    """Internal: one edge process of `serve` (see runtime/edge_processes.py)."""
    from runtime.edge_processes import parse_fds, run_edge

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until ready; the main process signals again then
    log = JsonLog(process="edge", pid=os.getpid())  # every line says which edge wrote it
    install_stdlib_bridge(log)
    platform = build(load_settings(args.config), log)
    return run_edge(platform, parse_fds(args.listen_fds), args.parent)


def cmd_worker(args: argparse.Namespace) -> int:
    from runtime.worker import run_worker

    settings = load_settings(args.config)
    return run_worker(settings, JsonLog())


def cmd_functions(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    manifest = load_manifest(manifest_path(settings))
    rows = [{"name": spec.name, "handler": spec.handler, "timeout": spec.timeout,
             "triggers": [describe_trigger(t) for t in spec.events]} for spec in manifest.functions.values()]
    if args.json:
        _print(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        triggers = ", ".join(row["triggers"]) or "invoke only"
        print(f"{row['name']:<{width}}  {row['handler']:<40}  {row['timeout']:>5g}s  {triggers}")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    platform = _platform(args)
    if args.payload_file:
        with open(args.payload_file) as f:
            raw = f.read()
    else:
        raw = args.payload or "{}"
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}", 2) from exc
    _print(_invoke(platform, args.name, event))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Plan (validate and diff) then execute (signal the running relay and wait for it)."""
    settings = load_settings(args.config)
    path = manifest_path(settings)
    manifest = load_manifest(path)
    record_path = settings.state_path / "deployment.json"
    plan: dict[str, Any] = {"manifest": str(path), "functions": sorted(manifest.functions)}
    if not record_path.exists():
        platform = _platform(args)
        plan.update(relay="not running", validated=len(platform.runtime.require().handlers))
        _print(plan)
        return 0
    record = json.loads(record_path.read_text())
    before = set(record["functions"])
    plan["added"] = sorted(set(manifest.functions) - before)
    plan["removed"] = sorted(before - set(manifest.functions))
    plan["changed_sources"] = sorted(p for p, mtime in record.get("sources", {}).items()
                                     if not os.path.exists(p) or os.path.getmtime(p) != mtime)
    if args.dry_run:
        plan["relay"] = f"running (pid {record['pid']}, version {record['version']}); dry run, nothing sent"
        _print(plan)
        return 0
    try:
        os.kill(int(record["pid"]), signal.SIGHUP)
    except ProcessLookupError as exc:
        raise CliError(f"relay pid {record['pid']} is not running (stale {record_path})") from exc
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            now = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if now["version"] > record["version"]:
            plan.update(relay=f"running (pid {now['pid']})", version=now["version"], deployed=True)
            _print(plan)
            return 0
    raise CliError(f"the relay did not report a new deployment within {args.wait:g}s; check its log for deploy.failed")


def cmd_member(args: argparse.Namespace) -> int:
    platform = _platform(args)
    event: dict[str, Any] = {"action": args.member_command}
    if args.member_command == "enroll":
        event.update(did=args.did, domain=args.domain, contact=args.contact or "", forwardTo=args.forward_to or "")
    elif args.member_command in ("approve", "suspend", "reactivate", "show", "verify"):
        event.update(did=args.did, reason=getattr(args, "reason", None) or "", actor="cli")
    elif args.member_command == "list":
        event.update(status=args.status or "")
    elif args.member_command == "dns":
        event.update(domain=args.domain)
    elif args.member_command == "limits":
        event.update(did=args.did, hourly=args.hourly, daily=args.daily)
    elif args.member_command == "label":
        if bool(args.add) == bool(args.remove):
            raise CliError("give exactly one of --add LABEL or --remove LABEL", 2)
        event.update(did=args.did, label=args.add or args.remove, remove=bool(args.remove), reason=args.reason or "")
    _print(_invoke(platform, "member", event))
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    platform = _platform(args)
    store = platform.services.store
    rows = store.query(
        "SELECT queue_id, recipient, state, attempts, next_attempt_at, last_code, last_text FROM spool_recipients"
        " WHERE (? = '' OR state = ?) ORDER BY created_at DESC LIMIT ?", (args.state, args.state, args.limit))
    _print({"summary": platform.services.spool.summary(), "spool": platform.services.spool.stats(),
            "recipients": [dict(r) for r in rows]})
    return 0


def cmd_events_replay(args: argparse.Namespace) -> int:
    """Feed a JSON-lines file of Osprey action envelopes to the `replay` function, in chunks."""
    platform = _platform(args)
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
                published += _invoke(platform, "replay", {"actions": chunk})["published"]
                chunk = []
    if chunk:
        published += _invoke(platform, "replay", {"actions": chunk})["published"]
    _print({"published": published, "topic": "osprey.actions_input"})
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """One JSON line per file, as the `classify-inbound` function sees it (nothing is stored or sent)."""
    import base64

    platform = _platform(args)
    for name in args.files:
        with open(name, "rb") as f:
            raw = f.read()
        result = _invoke(platform, "classify-inbound", {
            "trigger": "classify", "dry_run": True, "message": base64.b64encode(raw).decode("ascii")})
        print(json.dumps({"file": name, "classification": result.get("classification"),
                          "member_did": result.get("member_did"), "recipients": result.get("recipients", [])}),
              flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atmos-relay", description="Atmosphere Mail cooperative relay")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config.json (default: $ATMOS_RELAY_CONFIG, else development defaults)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", parents=[common], help="run the relay").set_defaults(func=cmd_serve)
    s = sub.add_parser("edge", parents=[common], help=argparse.SUPPRESS)
    s.add_argument("--listen-fds", required=True)
    s.add_argument("--parent", type=int, required=True)
    s.set_defaults(func=cmd_edge)
    sub.add_parser("worker", parents=[common], help="run the stream apps as a Faust worker (Kafka)"
                   ).set_defaults(func=cmd_worker)
    s = sub.add_parser("functions", parents=[common], help="list the functions of serverless.yml")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_functions)
    s = sub.add_parser("invoke", parents=[common], help="invoke one function and print its result")
    s.add_argument("name")
    s.add_argument("--payload", help="event as JSON")
    s.add_argument("--payload-file", help="file holding the event as JSON")
    s.set_defaults(func=cmd_invoke)
    s = sub.add_parser("deploy", parents=[common], help="make the running relay load serverless.yml and handlers")
    s.add_argument("--dry-run", action="store_true", help="show the plan only")
    s.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the relay to confirm")
    s.set_defaults(func=cmd_deploy)

    m = sub.add_parser("member", parents=[common], help="enroll and manage members")
    msub = m.add_subparsers(dest="member_command", required=True)
    e = msub.add_parser("enroll", parents=[common], help="create a pending member with fresh DKIM keys and API key")
    e.add_argument("--did", required=True)
    e.add_argument("--domain", required=True)
    e.add_argument("--contact")
    e.add_argument("--forward-to")
    for action in ("approve", "suspend", "reactivate"):
        a = msub.add_parser(action, parents=[common])
        a.add_argument("did")
        a.add_argument("--reason")
    for action in ("show", "verify"):  # verify: are the member's domains proven (DKIM in DNS, attestation)? now
        msub.add_parser(action, parents=[common]).add_argument("did")
    a = msub.add_parser("list", parents=[common])
    a.add_argument("--status", choices=["pending", "active", "suspended"])
    a = msub.add_parser("dns", parents=[common], help="print the DNS records a member domain must publish")
    a.add_argument("domain")
    a = msub.add_parser("label", parents=[common], help="add or remove a label by hand (e.g. highly_trusted)")
    a.add_argument("did")
    a.add_argument("--add")
    a.add_argument("--remove")
    a.add_argument("--reason")
    a = msub.add_parser("limits", parents=[common], help="set a member's own hourly/daily limits")
    a.add_argument("did")
    a.add_argument("--hourly", type=int)
    a.add_argument("--daily", type=int)
    m.set_defaults(func=cmd_member)

    ev = sub.add_parser("events", parents=[common], help="the event stream")
    evsub = ev.add_subparsers(dest="events_command", required=True)
    r = evsub.add_parser("replay", parents=[common], help="publish Osprey action envelopes (JSON lines) for the rules")
    r.add_argument("file")
    r.set_defaults(func=cmd_events_replay)

    s = sub.add_parser("classify", parents=[common], help="classify saved inbound messages (ARF, DSN, ...)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("queue", parents=[common], help="show the delivery queue")
    s.add_argument("--state", default="", choices=["", "queued", "delivered", "failed", "expired"])
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_queue)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, ManifestError) as exc:
        print(f"atmos-relay: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"atmos-relay: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
