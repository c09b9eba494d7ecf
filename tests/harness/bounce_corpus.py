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


# Sisimai's public set: real bounces from some 70 MTAs, with Sisimai's reading of each (tests/data/bounces-sisimai).
SISIMAI = Path(__file__).resolve().parents[1] / "data" / "bounces-sisimai"

GOALS = {"recognised": 0.97, "recipients": 0.97, "hard_soft": 0.92, "reasons": 0.85}


@dataclass(frozen=True)
class Expected:
    path: Path
    results: tuple[dict, ...]

    @property
    def bounced(self) -> list[dict]:
        return [r for r in self.results if r["hard"] >= 0]

    @property
    def is_feedback(self) -> bool:
        return any(r["reason"] == "feedback" for r in self.results)


def sisimai_samples() -> list[Expected]:
    import json

    lines = (SISIMAI / "expected.jsonl").read_text().splitlines()
    return [Expected(SISIMAI / d["file"], tuple(d["results"])) for d in map(json.loads, lines)]


@dataclass
class Score:
    """The five measures against Sisimai, with the misses that explain them."""

    bounce_files: int = 0
    recognised: int = 0
    recipients: int = 0
    found: int = 0
    hard_soft: int = 0
    reasons_given: int = 0
    reasons_agree: int = 0
    arf_files: int = 0
    arf_complaints: int = 0
    misses: list = None

    def as_dict(self) -> dict:
        return {"sisimai_bounces_recognised": self.recognised, "sisimai_bounce_files": self.bounce_files,
                "sisimai_recipients_found": self.found, "sisimai_recipients": self.recipients,
                "sisimai_hard_soft_agree": self.hard_soft, "sisimai_reasons_agree": self.reasons_agree,
                "sisimai_reasons_given": self.reasons_given, "sisimai_arf_complaints": self.arf_complaints,
                "sisimai_arf_files": self.arf_files}

    def ratio(self, measure: str) -> float:
        num, den = {"recognised": (self.recognised, self.bounce_files), "recipients": (self.found, self.recipients),
                    "hard_soft": (self.hard_soft, self.found), "reasons": (self.reasons_agree, self.reasons_given)
                    }[measure]
        return num / den if den else 1.0


def score(read) -> Score:
    """`read(raw bytes) -> (classification, [{"address", "kind", "reason"}])` scored the way the issue measures."""
    result = Score(misses=[])
    for sample in sisimai_samples():
        classification, recipients = read(sample.path.read_bytes())
        by_address = {r["address"].lower(): r for r in recipients}
        if sample.is_feedback:
            result.arf_files += 1
            result.arf_complaints += classification == "complaint"
            if classification != "complaint":
                result.misses.append(f"{sample.path.name}: {classification}, expected complaint")
        bounced = sample.bounced
        if not bounced:
            continue
        result.bounce_files += 1
        result.recognised += classification == "bounce"
        for want in bounced:
            result.recipients += 1
            got = by_address.get(want["recipient"].lower()) if classification == "bounce" else None
            if got is None:
                result.misses.append(f"{sample.path.name}: {want['recipient']} not found in {classification} "
                                     f"{sorted(by_address)}")
                continue
            result.found += 1
            result.hard_soft += got["kind"] == ("hard" if want["hard"] == 1 else "soft")
            if want["reason"]:
                result.reasons_given += 1
                result.reasons_agree += got["reason"] == want["reason"]
                if got["reason"] != want["reason"]:
                    result.misses.append(f"{sample.path.name}: {want['recipient']} {got['reason']} "
                                         f"(Sisimai: {want['reason']} {want['status']})")
    return result
