"""The function runtime: serverless.yml, invocation, timeouts, and deploying new code to a live relay."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.relay import BIN, ROOT
from harness.smtp import message, session

DID = "did:plc:runtimeruntimeruntimerun"
DOMAIN = "runtime.example"


def probe_manifest(tmp_path: Path, data_handler: str, timeout: float = 10, body: str = "") -> Path:
    """The relay's own serverless.yml, with the submission DATA hook bound to a probe handler."""
    manifest = yaml.safe_load((ROOT / "serverless.yml").read_text())
    manifest["package"]["reload"] = ["functions", "stream_apps", "probe"]
    manifest["functions"]["submit"]["events"] = [e for e in manifest["functions"]["submit"]["events"]
                                                 if e["smtp"]["hook"] != "data"]
    manifest["functions"]["probe"] = {
        "handler": data_handler, "timeout": timeout,
        "events": [{"smtp": {"listeners": ["submission", "smtps"], "hook": "data"}}]}
    (tmp_path / "probe").mkdir(exist_ok=True)
    (tmp_path / "probe" / "__init__.py").write_text("")
    if body:
        (tmp_path / "probe" / "handler.py").write_text(textwrap.dedent(body))
    path = tmp_path / "serverless.yml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def send(relay, member, listener="submission"):
    s = session(relay, listener)
    s.login(DOMAIN, member["apiKey"])
    s.mail(f"app@{DOMAIN}")
    s.rcpt("x@recipient.test")
    return s


def test_functions_lists_every_function_with_its_triggers(relay):
    out = relay.cli("functions").stdout
    assert "auth" in out and "smtp submission/smtps auth" in out
    assert "submit" in out and "smtp submission/smtps data" in out
    listed = json.loads(relay.cli("functions", "--json").stdout)
    names = {f["name"] for f in listed}
    assert {"auth", "submit", "sign", "member", "startup"} <= names
    declared = yaml.safe_load((ROOT / "serverless.yml").read_text())["functions"]
    assert names == set(declared)


def test_invoke_runs_one_function_and_prints_its_result(relay):
    relay.enroll(DID, DOMAIN, approve=False)
    shown = json.loads(relay.cli("invoke", "member", "--payload",
                                 json.dumps({"action": "show", "did": DID})).stdout)
    assert shown["did"] == DID and shown["status"] == "pending"
    bad = relay.cli("invoke", "member", "--payload", "{not json", check=False)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    missing = relay.cli("invoke", "no-such-function", check=False)
    assert missing.returncode == 1 and "Function not found: no-such-function" in missing.stderr


@pytest.mark.parametrize("listener", ["submission", "smtps"])
def test_a_failing_handler_is_a_451(start_relay, tmp_path, listener):
    manifest = probe_manifest(tmp_path, "probe.handler.handler", body="""
        def handler(event, context):
            raise RuntimeError("disk on fire")
    """)
    relay = start_relay({"manifest": str(manifest)})
    member = relay.enroll(DID, DOMAIN)
    s = send(relay, member, listener)
    code, text = s.data(message(f"app@{DOMAIN}", "x@recipient.test"))
    assert (code, text) == (451, b"4.3.0 Temporary local problem, please try again later")
    relay.wait_for("function.error", function="probe", hook="data")


@pytest.mark.parametrize("listener", ["submission", "smtps"])
def test_a_handler_past_its_timeout_is_a_451(start_relay, tmp_path, listener):
    manifest = probe_manifest(tmp_path, "probe.handler.handler", timeout=1, body="""
        import time
        def handler(event, context):
            time.sleep(3)
            return {"reply": {"code": 250, "status": "2.0.0", "text": "too late"}}
    """)
    relay = start_relay({"manifest": str(manifest)})
    member = relay.enroll(DID, DOMAIN)
    s = send(relay, member, listener)
    code, text = s.data(message(f"app@{DOMAIN}", "x@recipient.test"))
    assert (code, text) == (451, b"4.3.0 Processing timed out, please try again later")
    relay.wait_for("function.timeout", function="probe")


def test_a_timed_out_handler_cannot_commit_afterwards(start_relay, tmp_path):
    """The caller was told 451; a handler that overran must not leave state behind."""
    manifest = probe_manifest(tmp_path, "probe.handler.handler", timeout=1, body="""
        import time
        from functions.members import registry
        def handler(event, context):
            time.sleep(1.5)
            with context.store.transaction() as conn:
                registry.suspend(conn, context, event["session"]["principal"]["did"], "should never commit")
            return {}
    """)
    relay = start_relay({"manifest": str(manifest)})
    member = relay.enroll(DID, DOMAIN)
    s = send(relay, member)
    assert s.data(message(f"app@{DOMAIN}", "x@recipient.test"))[0] == 451
    relay.wait_for("function.finished_late", function="probe", outcome="commit_refused")
    assert relay.cli_json("member", "show", DID)["status"] == "active"


def test_a_function_invoked_by_another_keeps_its_own_timeout(start_relay, tmp_path):
    """A nested call may run on the caller's thread; its timeout and its commit guard still hold."""
    manifest_path = probe_manifest(tmp_path, "probe.handler.handler", timeout=10, body="""
        import time
        from functions.members import registry
        def handler(event, context):
            context.invoke("slow", {"did": event["session"]["principal"]["did"]})
            return {"reply": {"code": 250, "status": "2.0.0", "text": "should not get here"}}
        def slow(event, context):
            time.sleep(1.5)
            with context.store.transaction() as conn:
                registry.suspend(conn, context, event["did"], "should never commit")
            return {}
    """)
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["functions"]["slow"] = {"handler": "probe/handler.slow", "timeout": 1}
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    relay = start_relay({"manifest": str(manifest_path)})
    member = relay.enroll(DID, DOMAIN)
    s = send(relay, member)
    code, text = s.data(message(f"app@{DOMAIN}", "x@recipient.test"))
    assert (code, text) == (451, b"4.3.0 Processing timed out, please try again later")
    relay.wait_for("function.timeout", function="slow")
    relay.wait_for("function.finished_late", function="slow", outcome="commit_refused")
    assert relay.cli_json("member", "show", DID)["status"] == "active"


def test_deploy_loads_new_code_while_an_open_session_completes(start_relay, tmp_path):
    version = """
        def handler(event, context):
            return {"reply": {"code": 250, "status": "2.0.0", "text": "Ok: handled by version %s"}}
    """
    manifest = probe_manifest(tmp_path, "probe.handler.handler", body=version % "A")
    relay = start_relay({"manifest": str(manifest)})
    member = relay.enroll(DID, DOMAIN)

    old = send(relay, member)
    (tmp_path / "probe" / "handler.py").write_text(textwrap.dedent(version % "B-with-a-longer-name"))
    plan = json.loads(relay.cli("deploy", "--dry-run").stdout)
    assert any(p.endswith("probe/handler.py") for p in plan["changed_sources"])
    deployed = json.loads(relay.cli("deploy").stdout)
    assert deployed["deployed"] is True and deployed["version"] == 2
    relay.wait_for("deploy.done", version=2)

    assert old.data(message(f"app@{DOMAIN}", "x@recipient.test")) == (250, b"2.0.0 Ok: handled by version A")
    old.quit()
    new = send(relay, member)
    assert new.data(message(f"app@{DOMAIN}", "x@recipient.test")) == (
        250, b"2.0.0 Ok: handled by version B-with-a-longer-name")
    new.quit()


def test_an_edge_restarted_after_a_deploy_runs_the_deployed_code(start_relay, tmp_path):
    """The fork server holds the code of the relay's start; an edge forked after a deploy must not."""
    version = """
        def handler(event, context):
            return {"reply": {"code": 250, "status": "2.0.0", "text": "Ok: handled by version %s"}}
    """
    manifest = probe_manifest(tmp_path, "probe.handler.handler", body=version % "A")
    relay = start_relay({"manifest": str(manifest), "smtp": {"processes": 1}})
    member = relay.enroll(DID, DOMAIN)
    (tmp_path / "probe" / "handler.py").write_text(textwrap.dedent(version % "B, deployed"))
    assert json.loads(relay.cli("deploy").stdout)["deployed"] is True
    edge, = [line["pid"] for line in relay.logs("edge.started")]
    os.kill(edge, signal.SIGKILL)
    restarted, = relay.wait_for("edge.restarted")
    relay.wait_for("edge.started", pid=restarted["pid"])
    assert Path(f"/proc/{restarted['pid']}/comm").read_text().strip() == "atmos-edge"  # forked, not exec'd
    s = send(relay, member)
    assert s.data(message(f"app@{DOMAIN}", "x@recipient.test")) == (250, b"2.0.0 Ok: handled by version B, deployed")
    s.quit()


def test_deploy_adds_a_function_from_serverless_yml(start_relay, tmp_path):
    manifest_path = probe_manifest(tmp_path, "probe.handler.handler", body="""
        def handler(event, context):
            return {"reply": {"code": 250, "status": "2.0.0", "text": "Ok"}}
        def echo(event, context):
            return {"echo": event, "version": context.function_version, "name": context.function_name,
                    "remaining_ms": context.get_remaining_time_in_millis()}
    """)
    relay = start_relay({"manifest": str(manifest_path)})
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["functions"]["echo"] = {"handler": "probe/handler.echo", "timeout": 3}
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    plan = json.loads(relay.cli("deploy").stdout)
    assert plan["added"] == ["echo"]
    out = json.loads(relay.cli("invoke", "echo", "--payload", '{"hi": 1}').stdout)
    assert out["echo"] == {"hi": 1} and out["name"] == "echo" and 0 < out["remaining_ms"] <= 3000


def test_a_broken_deploy_keeps_the_running_code(start_relay, tmp_path):
    manifest_path = probe_manifest(tmp_path, "probe.handler.handler", body="""
        def handler(event, context):
            return {"reply": {"code": 250, "status": "2.0.0", "text": "Ok: still here"}}
    """)
    relay = start_relay({"manifest": str(manifest_path)})
    member = relay.enroll(DID, DOMAIN)
    (tmp_path / "probe" / "handler.py").write_text("def handler(event, context)\n    syntax error\n")
    result = relay.cli("deploy", "--wait", "3", check=False)
    assert result.returncode == 1
    relay.wait_for("deploy.failed")
    s = send(relay, member)
    assert s.data(message(f"app@{DOMAIN}", "x@recipient.test")) == (250, b"2.0.0 Ok: still here")


def test_a_bad_manifest_is_refused_with_its_reason(tmp_path):
    bad = tmp_path / "serverless.yml"
    bad.write_text("service: x\nfunctions:\n  auth:\n    handler: functions/auth.handler\n    timeout: -1\n")
    (tmp_path / "config.json").write_text(json.dumps({"manifest": str(bad), "stateDir": str(tmp_path / "s")}))
    result = subprocess.run([str(BIN), "functions", "--config",
                             str(tmp_path / "config.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "function auth" in result.stderr and "timeout" in result.stderr
