"""`atmos-relay worker` as a process: a Faust worker of the reputation stream app."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from harness.relay import BIN


class Worker:
    def __init__(self, config_path: Path, workdir: Path, env: dict) -> None:
        self.config_path = config_path
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.lines: list[dict] = []

    def start(self) -> "Worker":
        self.lines = []
        self.proc = subprocess.Popen([str(BIN), "worker", "--config", str(self.config_path)], cwd=self.workdir,
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": "raw", "message": line.rstrip()})

    def ready(self) -> bool:
        return any("Worker]: Ready" in str(r.get("message", "")) for r in self.lines)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.lines[-10:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout}s: {self.lines[-10:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
