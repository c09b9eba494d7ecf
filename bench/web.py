"""The HTTP side: enroll wizard, dashboard pages and the Lambda-compatible invoke API, timed on a live relay.

Members are created through boto3's Invoke of the `member` function (the
wizard throttles one address to a few enrollments an hour), then the pages
an operator reads are fetched as a browser and as curl would.

    .venv/bin/python -m bench.web [--members N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from harness.actions import plc_did  # noqa: E402
from harness.atproto import FakeAtproto  # noqa: E402
from harness.dns import Bind  # noqa: E402
from harness.relay import Relay  # noqa: E402


def _timed(calls, threads: int) -> tuple[float, list[float]]:
    """(calls per second, each call's latency) for zero-argument callables run on `threads` threads."""
    def one(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(one, calls))
    return len(latencies) / (time.perf_counter() - started), latencies


def _p(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1] * 1000 if len(latencies) > 1 else latencies[0] * 1000


def _get(relay: Relay, path: str, accept: str) -> None:
    request = urllib.request.Request(relay.http_url + path, headers={
        "Accept": accept, "Authorization": f"Bearer {relay.admin_token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def run(work: Path, members: int = 100, threads: int = 4) -> dict[str, float]:
    bind = Bind(work / "web-bind").start()
    atproto = FakeAtproto(work / "web-atproto").start()
    relay = Relay(work / "web-relay", config={**bind.config, **atproto.config})
    out: dict[str, float] = {}
    try:
        relay.start()
        lam = boto3.client("lambda", endpoint_url=relay.http_url, region_name="us-east-1",
                           aws_access_key_id=relay.config["invoke"]["accessKeyId"],
                           aws_secret_access_key=relay.config["invoke"]["secretAccessKey"],
                           config=Config(retries={"max_attempts": 0}, max_pool_connections=threads * 2))
        # A signature is accepted once; identical calls within one second need a signed nonce (README).
        lam.meta.events.register("before-sign.lambda",
                                 lambda request, **_: request.headers.__setitem__("X-Request-Nonce", uuid.uuid4().hex))

        def invoke(payload: dict):
            def call() -> dict:
                answer = lam.invoke(FunctionName="member", Payload=json.dumps(payload).encode())
                if answer.get("FunctionError"):
                    raise RuntimeError(answer["Payload"].read().decode())
                return json.loads(answer["Payload"].read())
            return call

        dids = [plc_did(i, "webbench") for i in range(members)]
        rate, lat = _timed([invoke({"action": "enroll", "did": d, "domain": f"m{i}.web.example"})
                            for i, d in enumerate(dids)], threads)
        out["enrolls_per_s"], out["enroll_p50_ms"] = rate, _p(lat, 50)
        rate, lat = _timed([invoke({"action": "show", "did": dids[i % members]}) for i in range(500)], threads)
        out["invoke_api_calls_per_s"], out["invoke_api_p50_ms"] = rate, _p(lat, 50)
        for accept, name in (("application/json", "json"), ("text/html", "html")):
            rate, lat = _timed([lambda: _get(relay, "/admin/members", accept)] * 50, threads)
            out[f"members_list_{members}_{name}_p50_ms"] = _p(lat, 50)
        detail = "/admin/members/" + urllib.parse.quote(dids[0], safe=":")
        rate, lat = _timed([lambda: _get(relay, detail, "text/html")] * 50, threads)
        out["member_detail_html_p50_ms"] = _p(lat, 50)
        rate, lat = _timed([lambda: _get(relay, "/admin/events?limit=100", "text/html")] * 50, threads)
        out["events_page_p50_ms"] = _p(lat, 50)
    finally:
        relay.stop()
        atproto.stop()
        bind.stop()
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.web")
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="atmos-bench-web-") as tmp:
        for key, value in run(Path(tmp), args.members, args.threads).items():
            print(f"{key:<34} {value:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
