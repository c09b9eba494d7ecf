"""The fake PLC directory and PDS (tests/tools/fake_atproto.py) as a process."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from harness.ports import free_port, wait_for_port

TOOL = Path(__file__).resolve().parents[1] / "tools" / "fake_atproto.py"


class FakeAtproto:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "FakeAtproto":
        self.proc = subprocess.Popen([sys.executable, str(TOOL), str(self.port), str(self.workdir / "state.json")])
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def _post(self, path: str, body: dict) -> None:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()

    def register(self, did: str) -> None:
        """The DID now resolves to a document naming this server as its PDS."""
        self._post("/register", {"did": did})

    def put_record(self, repo: str, collection: str, rkey: str, record: dict) -> None:
        """What a member does with `com.atproto.repo.putRecord` against its own PDS."""
        self._post("/xrpc/com.atproto.repo.putRecord",
                   {"repo": repo, "collection": collection, "rkey": rkey, "record": record})

    @property
    def config(self) -> dict:
        # The fake PDS is on loopback, where a production relay never fetches from for a member.
        return {"atproto": {"plcUrl": self.url, "timeout": 3, "allowPrivateAddresses": True}}
