"""flufl.bounce's corpus of real-world bounces, with the addresses its authors expect from each file.

The sdist is fetched by tests/setup/install-deps.sh into tests/.cache; the
expectations are the DETECTORS table of its test_detectors.py, read as data
(a file listed under several detectors expects what any of them finds).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / ".cache" / "flufl_bounce" / "tests"


@dataclass(frozen=True)
class Sample:
    path: Path
    addresses: frozenset[str]
    temporary: bool


def samples() -> list[Sample]:
    tree = ast.parse((ROOT / "test_detectors.py").read_text())
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "DETECTORS" for t in node.targets))
    expected: dict[str, set[str]] = {}
    temporary: dict[str, bool] = {}
    for _, filename, addresses, is_temporary in ast.literal_eval(table):
        expected.setdefault(filename, set()).update(a.decode() for a in addresses)
        temporary[filename] = temporary.get(filename, True) and bool(is_temporary)
    return [Sample(ROOT / "data" / name, frozenset(found), temporary[name]) for name, found in expected.items()]


def available() -> bool:
    return (ROOT / "test_detectors.py").exists()
