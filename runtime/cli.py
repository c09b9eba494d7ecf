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

from runtime.bootstrap import build, manifest_path
from runtime.command_platform import CliError, invoke, platform_for, print_json
from runtime.errors import ManifestError
from runtime.inspection_commands import inspection_commands
from runtime.invoker import preload_handlers
from runtime.jsonlog import JsonLog, install_stdlib_bridge
from runtime.manifest import (
    HttpTrigger,
    ScheduleTrigger,
    SmtpTrigger,
    SpoolTrigger,
    StartupTrigger,
    StreamTrigger,
    WebSocketTrigger,
    load_manifest,
)
from runtime.settings import SettingsError, load_settings


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
    if isinstance(trigger, WebSocketTrigger):
        return f"websocket {trigger.listener} {trigger.path}"
    return type(trigger).__name__


def cmd_serve(args: argparse.Namespace) -> int:
    from runtime.edge_forkserver import EdgeForkServer
    from runtime.server import serve

    settings = load_settings(args.config)
    log = JsonLog()
    install_stdlib_bridge(log)
    preloaded, forks = None, None
    if settings.smtp.processes:  # before the store is opened or a thread started
        preloaded = preload_handlers(manifest_path(settings))
        forks = EdgeForkServer.start(preloaded, forked_edge, log)
    platform = build(settings, log, announce_token=True, eager=True, preloaded=preloaded)
    return serve(platform, forks)


def cmd_edge(args: argparse.Namespace, preloaded: dict[str, float] | None = None) -> int:
    """Internal: one edge process of `serve` (see runtime/edge_processes.py)."""
    from runtime.edge_processes import parse_fds, run_edge

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until ready; the main process signals again then
    log = JsonLog(process="edge", pid=os.getpid())  # every line says which edge wrote it
    install_stdlib_bridge(log)
    platform = build(load_settings(args.config), log, preloaded=preloaded)
    return run_edge(platform, parse_fds(args.listen_fds), args.parent, args.slot)


def forked_edge(argv: list[str], preloaded: dict[str, float]) -> int:
    """An edge forked by the fork server: `edge` with its arguments, the handlers already imported."""
    return cmd_edge(parser().parse_args(argv), preloaded)


def cmd_worker(args: argparse.Namespace) -> int:
    from runtime.worker import run_worker

    settings = load_settings(args.config)
    return run_worker(settings, JsonLog())


def cmd_functions(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    manifest = load_manifest(manifest_path(settings))
    rows = [{"name": spec.name, "handler": spec.handler, "timeout": spec.timeout,
             "triggers": [describe_trigger(t) for t in spec.events], "invokeApi": spec.invokeApi,
             "authorizer": spec.authorizer} for spec in manifest.functions.values()]
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        triggers = ", ".join(row["triggers"]) or "invoke only"
        gates = (" [invoke API]" if row["invokeApi"] else "") + (
            f" [authorizer {row['authorizer']}]" if row["authorizer"] else "")
        print(f"{row['name']:<{width}}  {row['handler']:<40}  {row['timeout']:>5g}s  {triggers}{gates}")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    platform = platform_for(args)
    if args.payload_file:
        with open(args.payload_file) as f:
            raw = f.read()
    else:
        raw = args.payload or "{}"
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}", 2) from exc
    print_json(invoke(platform, args.name, event))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Plan (validate and diff) then execute (signal the running relay and wait for it)."""
    settings = load_settings(args.config)
    path = manifest_path(settings)
    manifest = load_manifest(path)
    record_path = settings.state_path / "deployment.json"
    plan: dict[str, Any] = {"manifest": str(path), "functions": sorted(manifest.functions)}
    if not record_path.exists():
        platform = platform_for(args, eager=True)
        plan.update(relay="not running", validated=len(platform.runtime.require().handlers))
        print_json(plan)
        return 0
    record = json.loads(record_path.read_text())
    before = set(record["functions"])
    plan["added"] = sorted(set(manifest.functions) - before)
    plan["removed"] = sorted(before - set(manifest.functions))
    plan["changed_sources"] = sorted(p for p, mtime in record.get("sources", {}).items()
                                     if not os.path.exists(p) or os.path.getmtime(p) != mtime)
    if args.dry_run:
        plan["relay"] = f"running (pid {record['pid']}, version {record['version']}); dry run, nothing sent"
        print_json(plan)
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
            print_json(plan)
            return 0
    raise CliError(f"the relay did not report a new deployment within {args.wait:g}s; check its log for deploy.failed")


def cmd_member(args: argparse.Namespace) -> int:
    event = {"action": args.member_command, **args.member_event(args)}
    print_json(invoke(platform_for(args), "member", event))
    return 0


def cmd_labeler(args: argparse.Namespace) -> int:
    """`labeler identity`: the DID document parts and labeler record the operator publishes."""
    print_json(invoke(platform_for(args), "atproto-labels", {"action": args.labeler_command}))
    return 0


def _labeler_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    lab = sub.add_parser("labeler", parents=[common], help="the atproto labeler")
    labsub = lab.add_subparsers(dest="labeler_command", required=True)
    labsub.add_parser("identity", parents=[common], help="print what to publish: DID document parts, labeler record")
    lab.set_defaults(func=cmd_labeler)


def _platform_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Running the relay and its code: serve, the internal edge, worker, functions, invoke, deploy."""
    sub.add_parser("serve", parents=[common], help="run the relay").set_defaults(func=cmd_serve)
    s = sub.add_parser("edge", parents=[common], help=argparse.SUPPRESS)
    s.add_argument("--listen-fds", required=True)
    s.add_argument("--parent", type=int, required=True)
    s.add_argument("--slot", type=int, required=True)
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


def _did_event(args: argparse.Namespace) -> dict[str, Any]:
    return {"did": args.did, "reason": getattr(args, "reason", None) or "", "actor": "cli"}


def _label_event(args: argparse.Namespace) -> dict[str, Any]:
    if bool(args.add) == bool(args.remove):
        raise CliError("give exactly one of --add LABEL or --remove LABEL", 2)
    return {"did": args.did, "label": args.add or args.remove, "remove": bool(args.remove),
            "reason": args.reason or ""}


def _member_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`member <action>`: each subcommand says how its arguments become the `member` function's event."""
    m = sub.add_parser("member", parents=[common], help="enroll and manage members")
    m.set_defaults(func=cmd_member)
    msub = m.add_subparsers(dest="member_command", required=True)

    def action(name: str, event: Any, *positionals: str, **kwargs: Any) -> argparse.ArgumentParser:
        a = msub.add_parser(name, parents=[common], **kwargs)
        for positional in positionals:
            a.add_argument(positional)
        a.set_defaults(member_event=event)
        return a

    e = action("enroll", lambda a: {"did": a.did, "domain": a.domain, "contact": a.contact or "",
                                    "forwardTo": a.forward_to or ""},
               help="create a pending member with fresh DKIM keys and API key")
    e.add_argument("--did", required=True)
    e.add_argument("--domain", required=True)
    e.add_argument("--contact")
    e.add_argument("--forward-to")
    for name in ("approve", "suspend", "reactivate"):
        action(name, _did_event, "did").add_argument("--reason")
    action("show", _did_event, "did")
    action("verify", _did_event, "did", help="check now whether the member's domains are proven (DKIM in DNS, attestation)")
    action("list", lambda a: {"status": a.status or ""}).add_argument(
        "--status", choices=["pending", "active", "suspended"])
    action("dns", lambda a: {"domain": a.domain}, "domain",
           help="print the DNS records a member domain must publish")
    a = action("label", _label_event, "did", help="add or remove a label by hand (e.g. highly_trusted)")
    for flag in ("--add", "--remove", "--reason"):
        a.add_argument(flag)
    a = action("limits", lambda a: {"did": a.did, "hourly": a.hourly, "daily": a.daily},
               "did", help="set a member's own hourly/daily limits")
    a.add_argument("--hourly", type=int)
    a.add_argument("--daily", type=int)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atmos-relay", description="Atmosphere Mail cooperative relay")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config.json (default: $ATMOS_RELAY_CONFIG, else development defaults)")
    sub = p.add_subparsers(dest="command", required=True)
    _platform_commands(sub, common)
    _member_commands(sub, common)
    inspection_commands(sub, common)
    _labeler_parser(sub, common)
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
