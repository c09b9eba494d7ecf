"""Where the relay's time goes under the bench load: py-spy sampling the relay and its edge processes.

`make bench BENCH_ARGS="--parts relay --profile DIR"` records each relay
round's measured load (not the warm-up) as collapsed stacks (`DIR/rN.txt`,
one line per distinct stack with its sample count; `python -m bench.profile
DIR/r0.txt` lists the functions by their share of the samples). py-spy reads the processes from outside, so the relay runs
the code it always runs; it needs ptrace rights (root, or
kernel.yama.ptrace_scope 0).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def recording(pid: int, out: Path, rate: int = 50) -> Iterator[None]:
    """py-spy samples `pid` and its children while the block runs; collapsed stacks to `out`.

    Only the thread holding the GIL is sampled: the stacks say where the Python CPU goes, not who waits.
    """
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if spy is None:
        raise RuntimeError("--profile needs py-spy (.venv/bin/pip install -e '.[bench]')")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--rate", str(rate),
                             "--gil", "--nonblocking", "--format", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU of `pid` and its live descendants (the relay and its edge processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@contextmanager
def cpu_used(pid: int, into: dict) -> Iterator[None]:
    """`into["cpu_seconds"]`: the CPU the process tree of `pid` used while the block ran."""
    before = tree_cpu_seconds(pid)
    yield
    into["cpu_seconds"] = tree_cpu_seconds(pid) - before


def hottest(collapsed: Path, limit: int = 40) -> list[tuple[str, float]]:
    """Functions by the share of samples they were on the stack in (inclusive), highest first."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(frame, n / total) for frame, n in inclusive.most_common(limit)] if total else []


if __name__ == "__main__":
    for frame, share in hottest(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40):
        print(f"{share * 100:5.1f}%  {frame}")
