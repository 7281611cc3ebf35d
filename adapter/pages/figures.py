"""Plotly figures as plain dicts (https://plotly.com/javascript/reference/): built here, drawn
in the browser by static/pages.js. No Python plotly objects: a dict is all the JSON needs and
costs nothing to build for 10,000 children."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.outcomes.measures import Row
from adapter.pages.states import COLOURS, LEGEND

__all__ = ["change_figure", "bar_figure", "timeline_figure", "series_figure", "with_unit"]

_LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 60}, "height": 340,
           "font": {"family": "system-ui, sans-serif", "size": 12}, "legend": {"orientation": "h"}}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {**_LAYOUT, "title": {"text": title}, **extra}


def change_figure(title: str, visits: Sequence[str], rows: Sequence[Row], unit: str = "") -> dict[str, Any]:
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
            "cliponaxis": False,  # the last visit's label runs past the plot area
            "error_y": {"type": "data", "symmetric": False,
                        "array": [(r.summary.ci_high - r.summary.mean) if r.summary.ci_high is not None
                                  and r.summary.mean is not None else 0 for r in shown],
                        "arrayminus": [(r.summary.mean - r.summary.ci_low) if r.summary.ci_low is not None
                                       and r.summary.mean is not None else 0 for r in shown]},
            "hovertemplate": "%{x}: mean %{y:.2f} (%{text})<extra>" + group + "</extra>",
        })
    return {"data": data, "layout": _layout(title, xaxis={"type": "category", "categoryorder": "array",
                                                          "categoryarray": list(visits)},
                                            yaxis={"title": {"text": with_unit("change from baseline", unit)},
                                                   "zeroline": True})}


def with_unit(text: str, unit: str) -> str:
    return f"{text} ({unit})" if unit else text


def bar_figure(title: str, categories: Sequence[str], series: dict[str, Sequence[int]]) -> dict[str, Any]:
    """Stacked bars: one trace per series (e.g. arm), one bar per category (e.g. site)."""
    data = [{"type": "bar", "name": name, "x": list(categories), "y": list(counts), "text": list(counts),
             "textposition": "auto"} for name, counts in series.items()]
    return {"data": data, "layout": _layout(title, barmode="stack", xaxis={"type": "category"})}


def timeline_figure(title: str, planned: list[dict[str, Any]], actual: list[dict[str, Any]]) -> dict[str, Any]:
    """Planned visits (target day, its window as a horizontal bar) and what was done, by date.
    `planned`: {visit, target, earliest, latest}; `actual`: {visit, date, state, label}, one per
    visit in its state's colour (adapter/pages/states.py: the tables' colours, the same legend)."""
    from datetime import date

    def days(a: date, b: date) -> int:
        return (b - a).days * 86_400_000  # plotly date axes measure error bars in milliseconds
    data: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "markers", "name": "planned (window)",
        "x": [p["target"].isoformat() for p in planned], "y": [p["visit"] for p in planned],
        "marker": {"symbol": "line-ns-open", "size": 14, "color": "#23395d"},
        "error_x": {"type": "data", "symmetric": False, "array": [days(p["target"], p["latest"]) for p in planned],
                    "arrayminus": [days(p["earliest"], p["target"]) for p in planned], "thickness": 6,
                    "color": "#9fb3cf"},
    }]
    for state in LEGEND:  # the legend's order, whatever the child's states
        shown = [a for a in actual if a["state"] == state]
        if not shown:
            continue
        name = LEGEND[state][0]
        data.append({"type": "scatter", "mode": "markers", "name": name,
                     "x": [a["date"].isoformat() for a in shown], "y": [a["visit"] for a in shown],
                     "text": [a["label"] for a in shown],
                     "marker": {"size": 11, "color": COLOURS[state], "line": {"color": "#333", "width": 1}},
                     "hovertemplate": "%{y} (%{x}): %{text}<extra>" + name + "</extra>"})
    visits = list(dict.fromkeys(p["visit"] for p in planned))
    return {"data": data, "layout": _layout(title, height=max(260, 28 * len(visits) + 120),
                                            xaxis={"type": "date"},
                                            yaxis={"type": "category", "categoryorder": "array",
                                                   "categoryarray": visits[::-1]})}


def series_figure(title: str, axis: str, lines: dict[str, list[tuple[str, float, str, str, str]]], unit: str = "",
                  scores: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """One outcome over time: per line (a body site, or "" for the child), (date, value, visit,
    ...) points labelled by visit; `scores`, when the values are changes, the scores they are
    changes of (on hover)."""
    data = []
    for name, points in lines.items():
        if scores is not None:
            hover = [f"{p[2]}: {p[1]:+g} (value {s:g}{' ' + unit if unit else ''})"
                     for p, s in zip(points, scores[name], strict=True)]
        else:
            hover = [f"{p[2]}: {p[1]:g}{' ' + unit if unit else ''}" for p in points]
        data.append({"type": "scatter", "mode": "lines+markers+text", "name": name or title,
                     "x": [p[0] for p in points], "y": [p[1] for p in points], "customdata": hover,
                     "text": [p[2] for p in points] if len(lines) == 1 else [], "textposition": "top center",
                     "cliponaxis": False,  # the last visit's label (month 12) ran past the plot area
                     "hovertemplate": "%{customdata}<extra>" + (name or "") + "</extra>"})
    return {"data": data,
            "layout": {**_layout(title, height=280, margin={"l": 70, "r": 50, "t": 50, "b": 40},
                              xaxis={"type": "date"}, yaxis={"title": {"text": axis}, "zeroline": scores is not None},
                              showlegend=len(lines) > 1), "title": {"text": title, "font": {"size": 13}}}}
