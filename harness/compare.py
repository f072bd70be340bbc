"""Runs of one task side by side: metric deltas per setting × shots, and the items whose
outputs differ (two models, or one model before and after fine-tuning).

Like the run report, a pure function of the runs' files: no model is loaded.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from . import charts, files, metrics, report
from .errors import HarnessError
from .runs import load_run

Record = dict[str, Any]
Key = tuple[str, int]  # (setting, shots)
NEUTRAL = ("stop_eos", "stop_string", "stop_length", "n")


class Run:
    """One run folder, read back, with the label the page gives it."""

    def __init__(self, folder: Path, letter: str) -> None:
        self.folder = folder
        self.run, self.records = load_run(folder)
        model = str(self.run.get("model", {}).get("name", "?"))
        self.model = Path(model).name or model
        self.letter = letter
        self.label = f"{self.model} · {folder.resolve().name}"
        self.n_items = len({r["item"] for r in self.records})
        self.n_outputs = len(self.records)
        self.summary: dict[Key, dict[str, Any]] = {}

    def keep_items(self, items: set[int]) -> None:
        """Compare on the items every run has (a run may have used --limit)."""
        self.records = [r for r in self.records if r["item"] in items]
        self.summary = {
            (row["setting"], row["shots"]): row
            for row in report.summarize(self.kind, self.records)
        }

    @property
    def task(self) -> dict[str, Any]:
        return self.run["task"]

    @property
    def kind(self) -> str:
        return self.run["task"]["kind"]


def load_runs(folders: list[Path]) -> list[Run]:
    if len(folders) < 2:
        raise HarnessError("compare needs two run folders or more")
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) < len(resolved):
        raise HarnessError("compare: the same run folder is named twice")
    runs = [Run(folder, chr(ord("A") + i)) for i, folder in enumerate(folders)]
    first = runs[0]
    for other in runs[1:]:
        if (other.task.get("name"), other.kind) != (first.task.get("name"), first.kind):
            raise HarnessError(
                f"compare: runs of different tasks: {first.folder} is "
                f"{first.task.get('name')} ({first.kind}), {other.folder} is "
                f"{other.task.get('name')} ({other.kind}); compare runs of one task"
            )
    common = set.intersection(*({r["item"] for r in run.records} for run in runs))
    if not common:
        raise HarnessError("compare: the runs have no item in common")
    for run in runs:
        run.keep_items(common)
    return runs


def compare(folders: list[Path], out: Path | None = None) -> Path:
    """Write compare.html and compare.csv into ``out``; returns the page's path."""
    runs = load_runs(folders)
    name = runs[0].task["name"]
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = runs[0].folder.resolve().parent / f"compare-{name}-{stamp}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"--out {out}: cannot write there ({exc.strerror})") from None
    keys, columns, table = deltas(runs)
    page = render(runs, keys, columns, table)
    try:
        with files.replacing(out / "compare.csv") as scratch:
            write_csv(scratch, runs, keys, columns, table)
        files.write_text(out / "compare.html", page)
    except OSError as exc:
        raise HarnessError(f"--out {out}: cannot write there ({files.reason(exc)})") from None
    return out / "compare.html"


def deltas(runs: list[Run]) -> tuple[list[Key], list[str], dict[Key, dict[str, Any]]]:
    """Per (setting, shots): each run's value of each metric, and each later run's
    change from the first (None where a run lacks the setting or the metric)."""
    kind = runs[0].kind
    columns = [c for c in report.metric_columns(kind, runs[0].task.get("metrics"))
               if c not in NEUTRAL]
    keys = list(dict.fromkeys(k for run in runs for k in run.summary))
    table: dict[Key, dict[str, Any]] = {}
    for key in keys:
        row: dict[str, Any] = {}
        for column in columns:
            values = [run.summary.get(key, {}).get(column) for run in runs]
            base = values[0]
            row[column] = {
                "values": values,
                "deltas": [None if base is None or v is None else v - base for v in values[1:]],
            }
        table[key] = row
    return keys, columns, table


def direction(column: str, delta: float | None) -> str:
    """'up' for a change for the better, 'down' for the worse, 'same' (nothing that
    shows at the page's precision) or '' (no direction, or no value)."""
    better = metrics.HIGHER_IS_BETTER.get(column)
    if delta is None:
        return ""
    if delta_text(column, delta) in ("0", "0.0", "0.000"):
        return "same"
    if better is None:
        return ""
    return "up" if (delta > 0) == better else "down"


def delta_text(column: str, delta: float | None) -> str:
    """A change as the page shows it: signed, and never "-0.000"."""
    if delta is None:
        return "–"
    text = report.fmt(delta, column)
    if text.lstrip("-") in ("0", "0.0", "0.000"):
        return text.lstrip("-")
    return text if text.startswith("-") else "+" + text


def differing_items(runs: list[Run]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The page's rows (setting × shots) and the items where the runs' outputs differ,
    each with only the rows that differ, in the form review.js draws."""
    cells: list[dict[tuple[int, str, int], list[Record]]] = []
    for run in runs:
        grouped: dict[tuple[int, str, int], list[Record]] = defaultdict(list)
        for record in run.records:
            grouped[(record["item"], record["setting"], record["shots"])].append(record)
        cells.append(grouped)
    keys = list(dict.fromkeys(k for run in runs for k in run.summary))
    rows = [{"label": f"{s} · {k}-shot", "setting": s, "shots": str(k)} for s, k in keys]
    prompts: dict[int, dict[str, str]] = defaultdict(dict)
    refs: dict[int, list[str]] = {}
    for grouped in cells:
        for (item, _, k), records in grouped.items():
            prompts[item].setdefault(f"{k}-shot", records[0]["prompt"])
            refs.setdefault(item, records[0].get("references") or [])
    items = []
    for item in sorted(prompts):
        found = []
        for r, (setting, k) in enumerate(keys):
            present = [(c, g[(item, setting, k)]) for c, g in enumerate(cells)
                       if (item, setting, k) in g]
            if len(present) > 1 and _differ([records for _, records in present]):
                found += [[r, c, report.grouped_outputs(records)] for c, records in present]
        if found:
            items.append({
                "title": f"item {item + 1}",
                "refs": refs[item],
                "prompts": sorted(prompts[item].items(), key=lambda p: int(p[0].split("-")[0])),
                "cells": found,
            })
    return rows, items


def _differ(groups: list[list[Record]]) -> bool:
    """Do the runs' outputs for one cell differ, in text or in right/wrong?"""
    seen = {(tuple(sorted(r["output"] for r in records)),
             tuple(sorted(str(r.get("correct")) for r in records))) for records in groups}
    return len(seen) > 1


def render(runs: list[Run], keys: list[Key], columns: list[str],
           table: dict[Key, dict[str, Any]]) -> str:
    first = runs[0]
    kind = first.kind
    rows, items = differing_items(runs)
    marks = kind in ("classification", "qa")
    main = columns[0]
    groups = [f"{s} {k}-shot" for s, k in keys]
    chart = charts.grouped_bars(
        groups, {f"{run.letter}: {run.model}": [table[key][main]["values"][i] for key in keys]
                 for i, run in enumerate(runs)},
        charts.LABELS.get(main, main), f"{charts.LABELS.get(main, main)} per setting, each run",
    )
    data = {"marks": marks, "differ": "row", "rows": rows, "corner": "setting · shots",
            "cols": [{"label": f"{run.letter}: {run.label}"} for run in runs], "items": items}
    data = report.share_prompt_blocks(data, report._separator(first.task))
    return report.render_template(
        "compare.html.j2", task=first.task, runs=runs, keys=keys, columns=columns, table=table,
        headings=report.HEADINGS, help=report.COLUMN_HELP, direction=direction,
        delta_text=delta_text,
        chart=Markup(chart) if chart else None,
        filters=[("setting", "setting", list(dict.fromkeys(s for s, _ in keys))),
                 ("shots", "shots", sorted({str(k) for _, k in keys}, key=int))],
        marks=marks, classification=kind == "classification",
        n_items=len(items), common=len({r["item"] for r in first.records}),
        data_json=report.embed_json(data),
    )


def write_csv(path: Path, runs: list[Run], keys: list[Key], columns: list[str],
              table: dict[Key, dict[str, Any]]) -> None:
    """compare.csv: one row per setting, shots and metric; each run's value, the deltas."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["setting", "shots", "metric", *(f"{r.letter}: {r.label}" for r in runs),
                         *(f"{r.letter}-{runs[0].letter}" for r in runs[1:])])
        for setting, k in keys:
            for column in columns:
                cell = table[(setting, k)][column]
                writer.writerow([report.csv_cell(setting), k, column,
                                 *("" if v is None else v for v in cell["values"]),
                                 *("" if d is None else d for d in cell["deltas"])])
