"""A member's send activity per day as an inline SVG, drawn on the server.

No scripts and no external assets: the dashboard's CSP allows neither,
and an operator should see the chart in any browser, even a text-mode one
that shows the table below it instead.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from html import escape

SERIES = (("sent", "#1f6feb"), ("delivered", "#1a7f37"), ("bounced", "#bf8700"), ("complained", "#cf222e"))
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 240, 44, 12, 14, 40


def daily_activity(conn: sqlite3.Connection, did: str, now: float, days: int = 30) -> list[dict]:
    """One row per day for the last `days` days, oldest first, zeros where nothing happened."""
    today = datetime.fromtimestamp(now, timezone.utc).date()
    first = today - timedelta(days=days - 1)
    rows = {r["day"]: r for r in conn.execute(
        "SELECT day, sent, delivered, bounced, complained FROM member_daily_stats WHERE did = ? AND day >= ?",
        (did, first.isoformat()))}
    out = []
    for i in range(days):
        day = (first + timedelta(days=i)).isoformat()
        row = rows.get(day)
        out.append({"day": day, **{name: int(row[name]) if row else 0 for name, _ in SERIES}})
    return out


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def svg(activity: list[dict]) -> str:
    peak = _nice_max(max((d[name] for d in activity for name, _ in SERIES), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(activity) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(v: int) -> float:
        return TOP + plot_h - plot_h * v / peak

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="activity-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="100%" role="img" aria-labelledby="activity-title">',
             '<title id="activity-title">Messages sent, delivered, bounced and complained about per day</title>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d0d7de"/>']
    for frac in (0, 0.5, 1):
        value = round(peak * frac)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#eaeef2"/><text x="{LEFT - 6}" y="{y(value) + 4:.1f}" font-size="11" '
                     f'text-anchor="end" fill="#57606a">{value}</text>')
    for i, day in enumerate(activity):
        if i % 7 == (len(activity) - 1) % 7:
            anchor = "end" if i == len(activity) - 1 else "middle"
            parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" text-anchor="{anchor}" '
                         f'fill="#57606a">{escape(day["day"][5:])}</text>')
    for name, colour in SERIES:
        points = " ".join(f"{x(i):.1f},{y(d[name]):.1f}" for i, d in enumerate(activity))
        total = sum(d[name] for d in activity)
        parts.append(f'<polyline class="series" data-series="{name}" data-total="{total}" fill="none" '
                     f'stroke="{colour}" stroke-width="2" points="{points}"/>')
    for k, (name, colour) in enumerate(SERIES):
        lx = LEFT + k * 150
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="{HEIGHT - 5}" font-size="12" fill="#1b1f24">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)
