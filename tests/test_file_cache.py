"""Files the operator changes while the relay runs are parsed once per version, and every change is seen."""
from __future__ import annotations

import os

import pytest

from functions.dkim import operator_keys
from functions.reputation import policy
from runtime.file_cache import FileCache


def test_a_file_is_parsed_again_only_when_it_changes(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("one")
    reads = []
    cache = FileCache(lambda p: reads.append(p) or open(p).read())
    assert cache.get(path) == "one" and cache.get(str(path)) == "one"
    assert len(reads) == 1
    path.write_text("three")                      # edited in place
    assert cache.get(path) == "three"
    staged = tmp_path / "doc.tmp"
    staged.write_text("fours")                    # same size, replaced atomically: a new inode
    os.replace(staged, path)
    assert cache.get(path) == "fours"
    assert len(reads) == 3
    path.unlink()
    with pytest.raises(FileNotFoundError):
        cache.get(path)


def test_rotated_operator_keys_sign_at_once(tmp_path):
    doc, created = operator_keys.ensure(tmp_path, 1_000_000.0)
    assert created
    first = [k.selector for k in operator_keys.signing_keys(tmp_path, 1_000_000.0)]
    assert first == [k["selector"] for k in doc["keys"]]
    rotated = operator_keys.rotate(tmp_path, 1_000_100.0, overlap_seconds=60)
    now = [k.selector for k in operator_keys.signing_keys(tmp_path, 1_000_110.0)]
    assert now == [k["selector"] for k in rotated["keys"]] + first
    assert [k.selector for k in operator_keys.signing_keys(tmp_path, 1_000_200.0)] == now[:2]
    signing = operator_keys.signing_identities(tmp_path, "atmos.test", 1_000_200.0)
    assert [(k.domain, k.selector) for k in signing] == [("atmos.test", s) for s in now[:2]]


def test_an_edited_policy_file_is_read_again(tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text("warming:\n  tiers: []\n")
    assert policy.load(str(path)).warming.tiers == ()
    path.write_text("warming:\n  tiers:\n    - {name: warming, maxAgeDays: 7, hourly: 5, daily: 20}\n")
    assert [t.hourly for t in policy.load(str(path)).warming.tiers] == [5]
    path.unlink()
    with pytest.raises(policy.PolicyError, match="rules file not found"):
        policy.load(str(path))
