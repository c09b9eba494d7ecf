"""The relay as a real process: config on free ports, JSON log capture, CLI calls."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from harness.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "atmos-relay"


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Relay:
    def __init__(self, workdir: Path, config: dict | None = None, env: dict | None = None, proofs=None) -> None:
        """`proofs` (harness.proofs.DomainProofs) is where this relay's members prove their domains."""
        self.workdir = Path(workdir)
        self.proofs = proofs
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in ("submission", "smtps", "mx", "http", "labeler")}
        base = {
            "hostname": "relay.atmos.test",
            "operatorDomain": "atmos.test",
            "stateDir": str(self.workdir / "state"),
            "adminToken": "test-admin-token",
            "listen": {name: f"127.0.0.1:{port}" for name, port in self.ports.items()},
            "invoke": {"accessKeyId": "AKIDTESTRELAY", "secretAccessKey": "test-secret-key"},
        }
        if proofs is not None:
            base = deep_merge(base, proofs.config)
        self.config = deep_merge(base, config or {})
        self.config_path = self.workdir / "config.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.preexec: Callable[[], None] | None = None  # run in the child before exec (e.g. setrlimit)
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()

    @property
    def state(self) -> Path:
        return Path(self.config["stateDir"])

    @property
    def admin_token(self) -> str:
        return self.config["adminToken"]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def write_config(self, **changes: Any) -> None:
        self.config = deep_merge(self.config, changes)
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def start(self, wait: bool = True) -> "Relay":
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--config", str(self.config_path)], cwd=self.workdir, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=self.preexec)
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        if wait:
            self.wait_for("relay.started", timeout=60)
            for port in self.ports.values():
                wait_for_port(port)
        return self

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.raw.append(line.rstrip("\n"))
                try:
                    record = json.loads(line)
                    if isinstance(record, dict):
                        self.lines.append(record)
                except ValueError:
                    pass
                self._cond.notify_all()

    def logs(self, event: str | None = None, **fields: Any) -> list[dict]:
        with self._cond:
            return [r for r in self.lines if (event is None or r.get("event") == event)
                    and all(r.get(k) == v for k, v in fields.items())]

    def wait_for(self, event: str, timeout: float = 15.0, predicate: Callable[[dict], bool] | None = None,
                 count: int = 1, **fields: Any) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.lines if r.get("event") == event
                         and all(r.get(k) == v for k, v in fields.items()) and (predicate is None or predicate(r))]
                if len(found) >= count:
                    return found
                if self.proc is not None and self.proc.poll() is not None and event != "relay.exit":
                    raise AssertionError(f"relay exited ({self.proc.returncode}) waiting for {event}:\n"
                                         + "\n".join(self.raw[-40:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {event} {fields} within {timeout}s; last lines:\n"
                                         + "\n".join(self.raw[-40:]))
                self._cond.wait(min(left, 0.2))

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN), *args, "--config", str(self.config_path)], cwd=self.workdir,
                                env=self.env, capture_output=True, text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"atmos-relay {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def call_member(self, action: str, did: str, **fields: Any) -> Any:
        """The `member` function's answer, as `atmos-relay member <action>` prints it.

        A running relay is asked through its invoke API, as an operator's boto3 would (one HTTP request
        instead of a process that imports the relay: the suite makes hundreds of these calls); a relay
        that is not running, or whose manifest does not expose `member` to the harness's key, through the CLI.
        """
        event = {"action": action, "did": did, **fields}
        if self.proc is not None and self.proc.poll() is None:
            answer = self._invoke_api("member", event)
            if answer is not None:
                return answer
        args = [f"--{k.replace('_', '-')}" if i % 2 == 0 else str(v)
                for k, v in fields.items() for i in (0, 1)]
        return self.cli_json("member", action, *(["--did", did] if action == "enroll" else [did]), *args)

    def _invoke_api(self, function: str, event: dict) -> Any:
        import urllib.error
        import urllib.request
        import uuid

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = json.dumps(event).encode()
        url = f"{self.http_url}/2015-03-31/functions/{function}/invocations"
        aws = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json",
                                                          "amz-sdk-invocation-id": str(uuid.uuid4())})
        invoke = self.config["invoke"]
        SigV4Auth(Credentials(invoke["accessKeyId"], invoke["secretAccessKey"]), "lambda", "us-east-1").add_auth(aws)
        request = urllib.request.Request(url, data=body, headers=dict(aws.headers.items()), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload, failed = json.loads(response.read()), response.headers.get("X-Amz-Function-Error")
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):
                return None
            raise AssertionError(f"invoke {function} {event}: HTTP {exc.code} {exc.read()[:500]!r}") from exc
        if failed:
            raise AssertionError(f"invoke {function} {event} failed: {payload}")
        return payload

    def enroll(self, did: str, domain: str, approve: bool = True, prove: bool | None = None) -> dict:
        """Enroll as a member does: `member enroll`, then (prove, by default when approving) publish the DKIM
        records and write the attestation, then `member approve` (which verifies) or `member verify`.

        A proven domain is asserted verified: a test that sends mail starts from a member that may.
        """
        prove = approve if prove is None else prove
        enrolled = self.call_member("enroll", did, domain=domain)
        if prove:
            assert self.proofs is not None, "this relay has no DNS and atproto to prove domains in"
            self.proofs.prove(enrolled)
        if approve:
            shown = self.call_member("approve", did)
        elif prove:
            shown = self.call_member("verify", did)
        if prove:
            claim = next(d for d in shown["domains"] if d["domain"] == enrolled["domain"])
            assert claim["verification"] == "verified", claim
        return enrolled

    def http(self, method: str, path: str, token: str | None = "", data: bytes | None = None,
             headers: dict | None = None) -> tuple[int, Any, Any]:
        """One request to the HTTP port: (status, JSON body or text, headers), redirects not followed.

        token=None sends no bearer; "" sends the relay's admin token.
        """
        import urllib.error
        import urllib.request

        sent = {"Accept": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token or self.admin_token}"
        request = urllib.request.Request(self.http_url + path, data=data, method=method, headers=sent)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        try:
            with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
                status, body, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, body, got = exc.code, exc.read(), exc.headers
        try:
            return status, json.loads(body), got
        except ValueError:
            return status, body.decode("utf-8", "replace"), got

    def http_json(self, path: str) -> Any:
        status, body, _ = self.http("GET", path)
        assert status == 200, (status, body)
        return body

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> "Relay":
        self.stop()
        self.lines.clear()
        self.raw.clear()
        return self.start()


def enroll_published(relay: Relay, dns, did: str, domain: str) -> dict:
    """Enroll a member that has published its DNS records (in `dns`) and its attestation, approved and verified."""
    assert relay.proofs is not None and relay.proofs.dns is dns, "the relay proves domains in another DNS"
    return relay.enroll(did, domain)


def events_of(relay: Relay, name: str) -> list[dict]:
    """The `data` of each event named `name` the relay emitted, oldest first (its outbox in relay.sqlite)."""
    db = sqlite3.connect(relay.state / "relay.sqlite")
    values = [json.loads(v)["data"] for (v,) in db.execute("SELECT value FROM outbox WHERE topic = ?"
                                                           " ORDER BY id", ("osprey.actions_input",))]
    db.close()
    return [v["data"] for v in values if v["action_name"] == name]
