"""A new operator's first minutes: `make run` on the embedded defaults, and what infra/ ships."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.relay import ROOT

DEFAULT_PORTS = {"submission": 2587, "smtps": 2465, "mx": 2525, "http": 8080, "labeler": 8081}


def _tracked_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        src = ROOT / name
        if not src.is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
        os.utime(target, (src.stat().st_atime, src.stat().st_mtime))
    (dest / ".venv").symlink_to(ROOT / ".venv")


def _ports_free() -> bool:
    for port in DEFAULT_PORTS.values():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def _run_make(workdir: Path, lines: list[dict], raw: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(["make", "run"], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "ATMOS_RELAY_CONFIG"})

    def pump() -> None:
        for line in proc.stdout:
            raw.append(line)
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while not any(r.get("event") == "relay.started" for r in lines):
        assert proc.poll() is None, "".join(raw)
        assert time.monotonic() < deadline, "".join(raw[-30:])
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


@pytest.mark.skipif(not _ports_free(), reason="the default ports are taken on this machine")
def test_make_run_starts_the_relay_on_its_embedded_defaults(tmp_path):
    _tracked_copy(tmp_path)
    lines: list[dict] = []
    raw: list[str] = []
    proc = _run_make(tmp_path, lines, raw)
    try:
        for port in DEFAULT_PORTS.values():
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
        with socket.create_connection(("127.0.0.1", DEFAULT_PORTS["submission"]), timeout=5) as s:
            assert s.recv(200).startswith(b"220 localhost.localdomain ESMTP")
        token_lines = [r for r in lines if r.get("event") == "admin_token.generated"]
        assert len(token_lines) == 1 and len(token_lines[0]["admin_token"]) >= 32
        started = next(r for r in lines if r.get("event") == "relay.started")
        assert started["state_dir"] == str(tmp_path / "state") and started["kafka"] is False
        assert (tmp_path / "state" / "relay.sqlite").exists()
        assert (tmp_path / "state" / "tls" / "cert.pem").exists()
        assert (tmp_path / "state" / "queue" / "segments").is_dir()
        assert oct((tmp_path / "state" / "operator-dkim-keys.json").stat().st_mode & 0o777) == "0o600"
        assert oct((tmp_path / "state" / "labeler-key.json").stat().st_mode & 0o777) == "0o600"
    finally:
        _stop(proc)
    lines.clear()
    proc = _run_make(tmp_path, lines, raw)
    try:
        assert not [r for r in lines if r.get("event") in ("admin_token.generated", "operator_dkim.first_boot",
                                                          "labeler.first_boot")]
    finally:
        _stop(proc)


def test_sample_production_config_is_valid():
    from runtime.settings import load_settings

    settings = load_settings(ROOT / "infra" / "config.production.json")
    assert settings.listen.mx == ("0.0.0.0", 25)
    assert settings.listen.submission == ("0.0.0.0", 587)
    assert settings.delivery.port == 25 and settings.delivery.maxAge == 5 * 86400


def test_sample_policy_is_the_built_in_policy():
    from functions.reputation import policy

    shipped = policy.load(str(ROOT / "infra" / "policy.yml"))
    built_in = policy.load("")
    assert shipped.warming == built_in.warming
    assert shipped.rules == built_in.rules


def test_systemd_units_run_the_relay_hardened():
    serve = (ROOT / "infra" / "systemd" / "atmos-relay.service").read_text()
    assert "atmos-relay serve --config" in serve
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in serve
    assert "User=atmos-relay" in serve and "StateDirectory=atmos-relay" in serve
    assert "NoNewPrivileges=yes" in serve and "ProtectSystem=strict" in serve
    worker = (ROOT / "infra" / "systemd" / "atmos-relay-worker@.service").read_text()
    assert "atmos-relay worker --config" in worker
    assert "CapabilityBoundingSet=\n" in worker


def test_bad_config_is_refused_with_the_key_named(tmp_path):
    from harness.relay import BIN

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"listen": {"mx": "nowhere"}, "delivery": {"maxAge": "soon"}, "typo": 1,
                                  "atproto": {"plcUrl": "ftp://plc.example"}, "labeler": {"publicUrl": "https:///"}}))
    result = subprocess.run([str(BIN), "serve", "--config", str(config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    for key in ("listen.mx", "delivery.maxAge", "typo", "atproto.plcUrl", "labeler.publicUrl"):
        assert key in result.stderr, key
