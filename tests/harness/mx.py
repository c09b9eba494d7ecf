"""The recipient MX process (tests/tools/sink_mx.py) and what it received."""
from __future__ import annotations

import email
import json
import subprocess
import sys
import time
from email.message import Message
from pathlib import Path

from harness.ports import free_port, wait_for_port

TOOL = Path(__file__).resolve().parents[1] / "tools" / "sink_mx.py"


class SinkMX:
    def __init__(self, workdir: Path, port: int | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.workdir = Path(workdir)
        self.maildir = self.workdir / "maildir"
        self.behaviour = self.workdir / "behaviour.json"
        self.port = port or free_port()
        self.tls = tls
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SinkMX":
        args = [sys.executable, str(TOOL), "--port", str(self.port), "--maildir", str(self.maildir),
                "--behaviour", str(self.behaviour)]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def behave(self, rcpt: dict[str, str] | None = None, data: str = "250", pipelining: bool = True) -> None:
        self.behaviour.write_text(json.dumps({"rcpt": rcpt or {}, "data": data, "pipelining": pipelining}))

    def messages(self) -> list[tuple[dict, bytes]]:
        out = []
        for path in sorted(self.maildir.glob("*.eml")):
            meta = json.loads(path.with_suffix(".json").read_text())
            out.append((meta, path.read_bytes()))
        return out

    def parsed(self) -> list[tuple[dict, Message]]:
        return [(meta, email.message_from_bytes(raw)) for meta, raw in self.messages()]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages()
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"MX received {len(self.messages())} messages, expected {count} within {timeout}s")
