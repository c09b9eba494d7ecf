"""The signed label log (`labels.signed_labels`): one row per published change, in seq order, never rewritten.

Triggers in the schema refuse UPDATE and DELETE, so a seq a subscriber
has seen always names the same signed bytes. The current state of a
(src, uri, val) is its row with the highest seq.
"""
from __future__ import annotations

import sqlite3
from typing import Any

_LATEST = ("NOT EXISTS (SELECT 1 FROM labels.signed_labels later WHERE later.src = s.src"
           " AND later.uri = s.uri AND later.val = s.val AND later.seq > s.seq)")


def append(conn: sqlite3.Connection, label: dict[str, Any]) -> int:
    cur = conn.execute(
        "INSERT INTO labels.signed_labels (src, uri, val, neg, cts, exp, sig) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (label["src"], label["uri"], label["val"], 1 if label.get("neg") else 0, label["cts"], label.get("exp"),
         label["sig"]))
    return int(cur.lastrowid)


def asserted(conn: sqlite3.Connection, src: str, uri: str, val: str) -> bool:
    """Whether the latest published label for (src, uri, val) asserts it (False when none or negated)."""
    row = conn.execute("SELECT neg FROM labels.signed_labels WHERE src = ? AND uri = ? AND val = ?"
                       " ORDER BY seq DESC LIMIT 1", (src, uri, val)).fetchone()
    return bool(row) and not row["neg"]


def bounds(conn: sqlite3.Connection) -> tuple[int, int]:
    """(oldest seq kept, latest seq), (0, 0) when nothing was published."""
    row = conn.execute("SELECT MIN(seq) AS oldest, MAX(seq) AS latest FROM labels.signed_labels").fetchone()
    return int(row["oldest"] or 0), int(row["latest"] or 0)


def after(conn: sqlite3.Connection, cursor: int, limit: int) -> list[sqlite3.Row]:
    """Every change after `cursor`, negations included: what the label stream replays."""
    return conn.execute("SELECT * FROM labels.signed_labels WHERE seq > ? ORDER BY seq LIMIT ?",
                        (cursor, limit)).fetchall()


def current(conn: sqlite3.Connection, exact: list[str], prefixes: list[str], sources: list[str],
            cursor: int, limit: int) -> list[sqlite3.Row]:
    """Labels in force (latest per (src, uri, val), not negated) on matching subjects, by seq after `cursor`."""
    subject = ["s.uri = ?"] * len(exact) + ["substr(s.uri, 1, ?) = ?"] * len(prefixes)
    args: list[Any] = list(exact)
    for prefix in prefixes:
        args += [len(prefix), prefix]
    where = [f"({' OR '.join(subject)})" if subject else "1", "s.neg = 0", "s.seq > ?", _LATEST]
    args.append(cursor)
    if sources:
        where.append(f"s.src IN ({', '.join('?' * len(sources))})")
        args += sources
    args.append(limit)
    return conn.execute(f"SELECT s.* FROM labels.signed_labels s WHERE {' AND '.join(where)}"
                        " ORDER BY s.seq LIMIT ?", args).fetchall()
