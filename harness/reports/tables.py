"""The summary as people read it: numbers with their intervals and marks for the page,
the tables of paired comparisons and per-label scores, and plain text for the terminal.

Formatting only: every number comes from summary.py and labels.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.scoring import labels, metrics, stats
from harness.scoring.summary import Comparison, Key, Summary

MARK_HELP = {
    "best": "the best at this shot count",
    "tied": "not significantly different from the best at this shot count",
    "worse": "significantly worse than the best at this shot count",
}
TERMINAL_MARKS = {"best": "*", "tied": " ", "worse": "v", None: " "}
LEGEND = ("95% intervals over items; * best at its shot count, v significantly worse "
          f"(paired test, Holm, p < {stats.ALPHA})")


def fmt(value: Any, column: str = "") -> str:
    """A number as the report and the command line show it (digits from the registry)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    metric = metrics.find(column)
    if metric is not None and metric.count:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{metric.digits if metric else 3}f}"
    return str(value)


def fmt_interval(low: float | None, high: float | None, column: str = "") -> str:
    """[low, high] with one digit fewer than the value (0.275 [0.15, 0.43])."""
    if low is None or high is None:
        return ""
    metric = metrics.find(column)
    digits = max(1, (metric.digits if metric else 3) - 1)
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def fmt_signed(value: float | None, column: str = "") -> str:
    """A difference: signed, and never "-0.000"."""
    if value is None or math.isnan(value):
        return "–"
    text = fmt(float(value), column)
    if text.lstrip("-").strip("0.") == "":
        return text.lstrip("-")
    return text if text.startswith("-") else "+" + text


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p: float) -> str:
    """p = 0.012, or p < 0.001"""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---------------------------------------------------------------- the summary table


@dataclass(frozen=True)
class Shown:
    """One summary cell on the page."""

    text: str
    interval: str
    mark: str | None
    value: float | None  # what the column sorts by
    title: str


def cell(summary: Summary, row: dict[str, Any], metric: metrics.Metric) -> Shown:
    name = metric.name
    value = row.get(name)
    interval = fmt_interval(row.get(f"{name}_low"), row.get(f"{name}_high"), name)
    mark = row.get(f"{name}_mark")
    title = [f"95% interval {interval}"] if interval else []
    if mark == "best":
        title.append(MARK_HELP["best"])
    elif mark is not None:
        found = summary.comparison((row["setting"], row["shots"]), metric)
        if found is not None:
            title.append(f"{MARK_HELP[mark]} ({found.against[0]}): {describe(found)}")
    return Shown(fmt(value, name), interval, mark, value, " · ".join(title))


def groups(summary: Summary) -> list[dict[str, Any]]:
    """The summary's rows grouped by shot count, each with its cells in column order."""
    out = []
    for k in summary.shots:
        rows = [row for row in summary.rows if row["shots"] == k]
        out.append({"shots": k, "rows": [
            {"setting": row["setting"], "shots": k,
             "cells": [cell(summary, row, m) for m in summary.metrics]}
            for row in rows]})
    return out


# ---------------------------------------------------------------- comparisons


def describe(found: Comparison) -> str:
    """-0.250 [-0.40, -0.10], p = 0.003 (McNemar; Holm: p = 0.009)"""
    d = found.difference
    return (f"{fmt_signed(d.diff, found.metric)} {fmt_interval(d.low, d.high, found.metric)}, "
            f"{p_is(d.p)} ({d.test}; Holm: {p_is(found.p_holm)})").replace(" ,", ",")


def verdict(found: Comparison) -> str:
    if found.worse:
        return "worse"
    if found.better:
        return "better"
    return "no real difference"


def _rows(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    return [{
        "key": c.key, "against": c.against, "verdict": verdict(c),
        "diff": fmt_signed(c.difference.diff, c.metric),
        "interval": fmt_interval(c.difference.low, c.difference.high, c.metric),
        "p": fmt_p(c.difference.p), "p_holm": fmt_p(c.p_holm), "test": c.difference.test,
        "n_items": c.difference.items,
    } for c in comparisons]


def comparison_tables(summary: Summary) -> list[dict[str, Any]]:
    """Per metric with a direction: settings against the best at each shot count, and shot
    counts against the fewest for each setting."""
    out = []
    for metric in summary.metrics:
        if metric.higher is None:
            continue
        settings = [c for k in summary.shots
                    for c in summary.settings_compared.get((metric.name, k), [])]
        shots = [c for s in summary.settings
                 for c in summary.shots_compared.get((metric.name, s), [])]
        if settings or shots:
            out.append({"metric": metric.name, "heading": metric.title, "help": metric.help,
                        "settings": _rows(settings), "shots": _rows(shots)})
    return out


# ---------------------------------------------------------------- classification


def label_table(summary: Summary) -> dict[str, Any]:
    """Per setting × shots, per label: precision, recall, F1 (2 digits) with intervals."""
    found = labels.label_rows(summary)
    by_key: dict[Key, list[dict[str, Any]]] = {}
    for row in found:
        by_key.setdefault((row["setting"], row["shots"]), []).append(row)
    two = lambda v: "–" if v is None else f"{v:.2f}"
    rows = []
    for k in summary.shots:
        for setting in summary.settings:
            if (setting, k) not in by_key:
                continue
            rows.append({"setting": setting, "shots": k, "cells": [
                {"p": two(r["precision"]), "r": two(r["recall"]), "f1": two(r["f1"]),
                 "title": (f"{r['label']}: {r['support']} references, {r['answered']} answers; "
                           f"F1 {two(r['f1'])} [{two(r['f1_low'])}, {two(r['f1_high'])}], "
                           f"precision {two(r['precision'])} [{two(r['precision_low'])}, "
                           f"{two(r['precision_high'])}], recall {two(r['recall'])} "
                           f"[{two(r['recall_low'])}, {two(r['recall_high'])}]")}
                for r in by_key[(setting, k)]]})
    return {"labels": list(summary.scope.labels), "rows": rows}


def confusion_grid(summary: Summary) -> dict[str, Any]:
    """The confusion matrices as small tables, settings down and shot counts across: each
    cell's count of outputs, and its share of the row (for the shading)."""
    answers = [*summary.scope.labels, labels.NO_LABEL]
    rows = []
    for setting in summary.settings:
        panels: list[dict[str, Any] | None] = []
        for k in summary.shots:
            if (setting, k) not in summary.cells:
                panels.append(None)
                continue
            matrix = labels.confusion(summary, (setting, k))
            totals = matrix.sum(axis=1)
            right = sum(matrix[i, i] for i in range(len(summary.scope.labels)))
            panels.append({
                "title": f"{setting} · {k}-shot", "right": int(right),
                "outputs": int(matrix.sum()),
                "rows": [[(int(n), round(float(n / totals[i]), 2) if totals[i] else 0.0)
                          for n in matrix[i]] for i in range(len(matrix))],
            })
        rows.append({"setting": setting, "panels": panels})
    return {"labels": list(summary.scope.labels), "answers": answers,
            "shots": summary.shots, "rows": rows}


# ---------------------------------------------------------------- the terminal


def text(summary: Summary, width: int = 4) -> str:
    """The summary for the terminal: the first ``width`` metrics with their intervals,
    grouped by shot count and marked (* best, v significantly worse), then the
    significant differences of the main metric."""
    shown = plain_metrics(summary)[:width]
    header = ["setting", "shots", *(m.name for m in shown)]
    lines_in = [[row["setting"], str(k), *(plain_cell(row, m) for m in shown)]
                for k in summary.shots for row in summary.rows if row["shots"] == k]
    widths = [max(len(x) for x in col) for col in zip(header, *lines_in, strict=True)]
    table = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, *lines_in]]
    table.append(LEGEND)
    return "\n".join(table + findings(summary))


def plain_metrics(summary: Summary) -> list[metrics.Metric]:
    """The metrics a plain summary shows (the terminal's, the notebook's): all but counts."""
    return [m for m in summary.metrics if not m.count]


def plain_cell(row: dict[str, Any], metric: metrics.Metric) -> str:
    """A summary cell as plain text: value, interval and mark (* best, v significantly
    worse), as the terminal and a notebook show it."""
    name = metric.name
    interval = fmt_interval(row.get(f"{name}_low"), row.get(f"{name}_high"), name)
    mark = TERMINAL_MARKS[row.get(f"{name}_mark")]
    return f"{fmt(row.get(name), name)} {interval} {mark}".rstrip()


def findings(summary: Summary) -> list[str]:
    """One line per shot count for the main metric: the best, and what is worse."""
    main = next((m for m in summary.metrics if m.higher is not None), None)
    if main is None:
        return []
    out = []
    for k in summary.shots:
        family = summary.settings_compared.get((main.name, k))
        if not family:
            continue
        best = family[0].against
        value, low, high = summary.estimate(best, main)
        worse = [c for c in family if c.worse]
        said = "; ".join(f"{c.key[0]} {fmt(summary.estimate(c.key, main)[0], main.name)} "
                         f"({describe(c)})" for c in worse) or "none"
        out.append(f"{k}-shot {main.name}: best {best[0]} {fmt(value, main.name)} "
                   f"{fmt_interval(low, high, main.name)}; significantly worse: {said}")
    return out
