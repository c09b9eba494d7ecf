"""Debian's nginx running infra/nginx/atmos-relay.conf in front of a test relay.

The sample is used as it ships, with only what ties it to a production host
rewritten: its listen ports to loopback test ports, its certificate to a
throwaway one, and the relay's HTTP and labeler ports to the test relay's.
Each rewrite must find its text, so a change to the sample that this file
does not know about fails loudly instead of testing something else.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from harness.certs import self_signed
from harness.ports import free_port, wait_for_port

SAMPLE = Path(__file__).resolve().parents[2] / "infra" / "nginx" / "atmos-relay.conf"
SERVER_NAME = "smtp.atmos.email"


def installed() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


class Nginx:
    def __init__(self, workdir: Path, relay_http: int, relay_labeler: int) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.https_port, self.http_port = free_port(), free_port()
        cert, key = self_signed(self.workdir / "tls", SERVER_NAME)
        site = SAMPLE.read_text()
        for old, new in [
            ("listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"),
            ("listen [::]:443 ssl;", "# (IPv6 listener left out on the test host)"),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen [::]:80;", "# (IPv6 listener left out on the test host)"),
            (f"/etc/letsencrypt/live/{SERVER_NAME}/fullchain.pem", str(cert)),
            (f"/etc/letsencrypt/live/{SERVER_NAME}/privkey.pem", str(key)),
            ("http://127.0.0.1:8080", f"http://127.0.0.1:{relay_http}"),
            ("http://127.0.0.1:8081", f"http://127.0.0.1:{relay_labeler}"),
        ]:
            assert old in site, f"{SAMPLE} no longer has {old!r}: update tests/harness/nginx.py"
            site = site.replace(old, new)
        (self.workdir / "atmos-relay.conf").write_text(site)
        (self.workdir / "nginx.conf").write_text(self._main_config())
        self.proc: subprocess.Popen | None = None

    def _main_config(self) -> str:
        """What /etc/nginx/nginx.conf holds on a host, pointed at the test's directory."""
        d = self.workdir
        temp = "\n".join(f"    {kind}_temp_path {d / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private directory
        return (f"daemon off;\n{user}worker_processes 1;\npid {d / 'nginx.pid'};\nerror_log {d / 'error.log'} info;\n"
                "events { worker_connections 2048; }\n"
                f"http {{\n    access_log {d / 'access.log'};\n{temp}\n    include {d / 'atmos-relay.conf'};\n}}\n")

    def start(self) -> "Nginx":
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        check = subprocess.run([binary, "-t", "-p", str(self.workdir), "-e", str(self.workdir / "error.log"),
                                "-c", str(self.workdir / "nginx.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([binary, "-p", str(self.workdir), "-e", str(self.workdir / "error.log"),
                                      "-c", str(self.workdir / "nginx.conf")])
        wait_for_port(self.https_port)
        return self

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Until nginx's error log (at info) says `text`."""
        deadline = time.monotonic() + timeout
        log = self.workdir / "error.log"
        while text not in (log.read_text(errors="replace") if log.exists() else ""):
            assert time.monotonic() < deadline, f"nginx never logged {text!r}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None
