"""Plotly figures as plain dicts (https://plotly.com/javascript/reference/): built here, drawn
in the browser by static/pages.js. No Python plotly objects: a dict is all the JSON needs and
costs nothing to build for 10,000 children."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.outcomes.measures import Row

__all__ = ["change_figure", "bar_figure", "timeline_figure", "series_figure"]

_LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 60}, "height": 340,
           "font": {"family": "system-ui, sans-serif", "size": 12}, "legend": {"orientation": "h"}}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {**_LAYOUT, "title": {"text": title}, **extra}


def change_figure(title: str, visits: Sequence[str], rows: Sequence[Row]) -> dict[str, Any]:
    """Mean change from baseline per visit, one trace per group, 95% CI as error bars and
    n written under each point (visible text, not only on hover). Visits where a group has
    no change at all get no point: there is nothing to draw (and a group without any, no trace)."""
    data = []
    for i, group in enumerate(sorted({r.group for r in rows})):
        shown = [r for v in visits for r in rows if r.group == group and r.visit == v and r.summary.mean is not None]
        if not shown:
            continue  # a group with no change at any visit: its table rows say n=0
        means = [r.summary.mean for r in shown]
        data.append({
            "type": "scatter", "mode": "lines+markers+text", "name": group,
            "x": [r.visit for r in shown], "y": means,
            "text": [f"n={r.summary.n}" for r in shown], "textposition": "bottom right" if i % 2 == 0 else "top left",  # apart
            "error_y": {"type": "data", "symmetric": False,
                        "array": [(r.summary.ci_high - r.summary.mean) if r.summary.ci_high is not None
                                  and r.summary.mean is not None else 0 for r in shown],
                        "arrayminus": [(r.summary.mean - r.summary.ci_low) if r.summary.ci_low is not None
                                       and r.summary.mean is not None else 0 for r in shown]},
            "hovertemplate": "%{x}: mean %{y:.2f} (%{text})<extra>" + group + "</extra>",
        })
    return {"data": data, "layout": _layout(title, xaxis={"type": "category", "categoryorder": "array",
                                                          "categoryarray": list(visits)},
                                            yaxis={"title": {"text": "change from baseline"}, "zeroline": True})}


def bar_figure(title: str, categories: Sequence[str], series: dict[str, Sequence[int]]) -> dict[str, Any]:
    """Stacked bars: one trace per series (e.g. arm), one bar per category (e.g. site)."""
    data = [{"type": "bar", "name": name, "x": list(categories), "y": list(counts), "text": list(counts),
             "textposition": "auto"} for name, counts in series.items()]
    return {"data": data, "layout": _layout(title, barmode="stack", xaxis={"type": "category"})}


def timeline_figure(title: str, planned: list[dict[str, Any]], actual: list[dict[str, Any]]) -> dict[str, Any]:
    """Planned visits (target day, its window as a horizontal bar) and what was done, by date.
    `planned`: {visit, target, earliest, latest}; `actual`: {visit, date, status, label}."""
    from datetime import date

    def days(a: date, b: date) -> int:
        return (b - a).days * 86_400_000  # plotly date axes measure error bars in milliseconds
    data: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "markers", "name": "planned (window)",
        "x": [p["target"].isoformat() for p in planned], "y": [p["visit"] for p in planned],
        "marker": {"symbol": "line-ns-open", "size": 14},
        "error_x": {"type": "data", "symmetric": False, "array": [days(p["target"], p["latest"]) for p in planned],
                    "arrayminus": [days(p["earliest"], p["target"]) for p in planned], "thickness": 6},
    }]
    for status in sorted({a["status"] for a in actual}):
        shown = [a for a in actual if a["status"] == status]
        data.append({"type": "scatter", "mode": "markers", "name": status,
                     "x": [a["date"].isoformat() for a in shown], "y": [a["visit"] for a in shown],
                     "text": [a["label"] for a in shown], "marker": {"size": 9},
                     "hovertemplate": "%{y}: %{text} on %{x}<extra>" + status + "</extra>"})
    visits = list(dict.fromkeys(p["visit"] for p in planned))
    return {"data": data, "layout": _layout(title, height=max(260, 28 * len(visits) + 120),
                                            xaxis={"type": "date"},
                                            yaxis={"type": "category", "categoryorder": "array",
                                                   "categoryarray": visits[::-1]})}


def series_figure(title: str, unit: str, points: list[tuple[str, float, str]]) -> dict[str, Any]:
    """One score over time: (date, value, visit) points."""
    return {"data": [{"type": "scatter", "mode": "lines+markers+text", "name": title,
                      "x": [p[0] for p in points], "y": [p[1] for p in points],
                      "text": [p[2] for p in points], "textposition": "top center"}],
            "layout": _layout(title, height=280, xaxis={"type": "date"}, yaxis={"title": {"text": unit}},
                              showlegend=False)}
