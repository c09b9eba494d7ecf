"""A stand-in for the PLC directory and members' PDSes, which cannot run here.

Serves DID documents at /<did> (as plc.directory does) and
com.atproto.repo.getRecord / putRecord for the records in a JSON file, so
a test writes an attestation the way a member would (putRecord) and the
relay reads it the way it reads a real PDS.

    python fake_atproto.py PORT STATE.json
"""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

PORT, STATE = int(sys.argv[1]), Path(sys.argv[2])
BASE = f"http://127.0.0.1:{PORT}"
LOCK = threading.Lock()


def load() -> dict:
    with LOCK:
        return json.loads(STATE.read_text()) if STATE.exists() else {"dids": [], "records": {}}


def save(state: dict) -> None:
    with LOCK:
        STATE.write_text(json.dumps(state))


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        state = load()
        if url.path == "/xrpc/com.atproto.repo.getRecord":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            record = state["records"].get(q.get("repo", ""), {}).get(q.get("collection", ""), {}).get(q.get("rkey", ""))
            if record is None:
                return self._send(400, {"error": "RecordNotFound", "message": "Could not locate record"})
            uri = f"at://{q['repo']}/{q['collection']}/{q['rkey']}"
            return self._send(200, {"uri": uri, "cid": "bafyfake", "value": record})
        did = unquote(url.path.lstrip("/"))
        if did in state["dids"]:
            return self._send(200, {
                "@context": ["https://www.w3.org/ns/did/v1"], "id": did,
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": BASE}]})
        self._send(404, {"message": "DID not registered"})

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        state = load()
        if url.path == "/register":
            if body["did"] not in state["dids"]:
                state["dids"].append(body["did"])
        elif url.path == "/xrpc/com.atproto.repo.putRecord":
            state["records"].setdefault(body["repo"], {}).setdefault(body["collection"], {})[body["rkey"]] = body["record"]
        else:
            return self._send(404, {"error": "NotFound"})
        save(state)
        self._send(200, {"ok": True})

    def log_message(self, *args) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
