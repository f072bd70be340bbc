"""Runs of one task side by side: metric deltas per setting × shots, and the items whose
outputs differ (two models, or one model before and after fine-tuning).

Each later run is compared with the first on the items both answered, paired (as the
settings of one run are: summary.paired), and the page's comparisons are one family,
Holm-corrected: a change shows as better or worse only when it is significant.
Like the run report, a pure function of the runs' files: no model is loaded.
"""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from harness.common import files
from harness.errors import HarnessError
from harness.records import Record, load_run
from harness.reports import charts, report, tables
from harness.scoring import metrics, stats
from harness.scoring.summary import Summary, paired

Key = tuple[str, int]  # (setting, shots)


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
        self.summary: Summary | None = None

    def keep_items(self, items: set[int], labels: tuple[str, ...]) -> None:
        """Compare on the items every run has (a run may have used --limit), with one
        label order for all runs (their confusion counts must line up)."""
        self.records = [r for r in self.records if r["item"] in items]
        self.summary = Summary(self.kind, self.records, labels, self.task.get("metrics"))

    @property
    def scores(self) -> Summary:
        """The summary over the items kept (``load_runs`` has called ``keep_items``)."""
        assert self.summary is not None, "keep_items makes the summary"
        return self.summary

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
    for line in pair_by_content(runs):
        print(line, file=sys.stderr)
    common = set.intersection(*({r["item"] for r in run.records} for run in runs))
    if not common:
        raise HarnessError("compare: the runs have no item in common (by content: the "
                           "items' fields and references differ)")
    kept = [r for run in runs for r in run.records if r["item"] in common]
    labels = metrics.scope_of(first.kind, kept, first.task.get("labels")).labels
    for run in runs:
        run.keep_items(common, labels)
    return runs


def pair_by_content(runs: list[Run]) -> list[str]:
    """Number every run's items as the first run numbers the same item, found by content
    (run.json's ``item_digests``: the item's fields and references), so that a data file
    changed between two runs (rows reordered, added or edited) pairs like with like.
    Items with no match keep numbers of their own (past the first run's), and are left
    out as any item not in every run is. The lines to print: how many matched, and why
    any did not. Runs written before item digests are paired by position, as said."""
    recorded = [run.run.get("item_digests") for run in runs]
    digests = [d for d in recorded if isinstance(d, list)]
    if len(digests) < len(runs):
        old = [str(run.folder) for run, d in zip(runs, recorded) if not isinstance(d, list)]
        return [f"note: compare: {', '.join(old)} records no item digests (an older run), so "
                "items are paired by position, not by content"]
    numbered: dict[tuple[str, int], int] = {}  # (digest, its nth copy) -> item number
    for item, key in enumerate(_occurrences(digests[0])):
        numbered[key] = item
    spare = len(digests[0])
    lines = []
    for run, found in zip(runs[1:], digests[1:]):
        renumber: dict[int, int] = {}
        for item, key in enumerate(_occurrences(found)):
            if key in numbered:
                renumber[item] = numbered[key]
            else:
                renumber[item], spare = spare, spare + 1
        run.records = [{**r, "item": renumber.get(r["item"], -1 - r["item"])}
                       for r in run.records]
        matched = sum(1 for n in renumber.values() if n < len(digests[0]))
        lines.append(f"compare: {matched} of {run.letter}'s {len(found)} items match one of "
                     f"A's {len(digests[0])} by content")
        if matched < max(len(found), len(digests[0])):
            lines.append(f"note: compare: items whose fields or references differ between A "
                         f"and {run.letter} are left out ({run.folder})")
    return lines


def _occurrences(digests: list[str]) -> list[tuple[str, int]]:
    """Each digest with its copy number, so that two equal items pair with two."""
    seen: dict[str, int] = defaultdict(int)
    keys = []
    for digest in digests:
        keys.append((digest, seen[digest]))
        seen[digest] += 1
    return keys


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
    """Per (setting, shots) and metric: each run's value and 95% interval, and each later
    run's change from the first, paired over their items, with its interval, p-value,
    Holm-adjusted p-value (one family per metric) and mark (``up``, ``down``: a
    significant change for the better or the worse; ``same``: none; "": no direction)."""
    first = runs[0].summary
    assert first is not None
    columns = [m.name for m in first.metrics if not m.count]
    keys = list(dict.fromkeys(k for run in runs for k in run.scores.cells))
    table: dict[Key, dict[str, Any]] = {key: {} for key in keys}
    for column in columns:
        metric = metrics.get(column)
        found: list[tuple[Key, int, stats.Difference]] = []
        for key in keys:
            estimates = [run.scores.estimate(key, metric) if key in run.scores.cells
                         else (None, None, None) for run in runs]
            changes: list[stats.Difference | None] = []
            for i, run in enumerate(runs[1:], start=1):
                changes.append(_change(runs[0], run, key, metric))
                if changes[-1] is not None:
                    found.append((key, i, changes[-1]))
            table[key][column] = {
                "values": [e[0] for e in estimates], "lows": [e[1] for e in estimates],
                "highs": [e[2] for e in estimates],
                "deltas": [None if c is None else c.diff for c in changes],
                "changes": changes, "p_holm": [None] * len(changes), "marks": [""] * len(changes),
            }
        adjusted = stats.holm([d.p for _, _, d in found])
        for (key, i, difference), p in zip(found, adjusted, strict=True):
            cell = table[key][column]
            cell["p_holm"][i - 1] = p
            cell["marks"][i - 1] = mark(metric, difference, p)
    return keys, columns, table


def _change(base: Run, other: Run, key: Key, metric: metrics.Metric) -> stats.Difference | None:
    a, b = other.summary, base.summary
    if a is None or b is None or key not in a.cells or key not in b.cells:
        return None
    found = paired(metric, a.scope, a.cells[key], b.cells[key])
    # no change to report (not "nan with p = 1.0") when there is no value to compare
    return None if found.items == 0 or math.isnan(found.diff) else found


def mark(metric: metrics.Metric, difference: stats.Difference, p_holm: float) -> str:
    """'up' for a significant change for the better, 'down' for the worse, 'same' for a
    change that is not significant, '' for a metric with no better direction."""
    if metric.higher is None:
        return ""
    if p_holm >= stats.ALPHA or difference.diff == 0 or math.isnan(difference.diff):
        return "same"
    return "up" if (difference.diff > 0) == metric.higher else "down"


def differing_items(runs: list[Run]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The page's rows (setting × shots) and the items where the runs' outputs differ,
    each with only the rows that differ, in the form review.js draws."""
    cells: list[dict[tuple[int, str, int], list[Record]]] = []
    for run in runs:
        grouped: dict[tuple[int, str, int], list[Record]] = defaultdict(list)
        for record in run.records:
            grouped[(record["item"], record["setting"], record["shots"])].append(record)
        cells.append(grouped)
    keys = list(dict.fromkeys(k for run in runs for k in run.scores.cells))
    rows = [{"label": f"{s} · {k}-shot", "setting": s, "shots": str(k)} for s, k in keys]
    prompts: dict[int, dict[str, str]] = defaultdict(dict)
    refs: dict[int, list[str]] = {}
    for grouped in cells:
        for (item, _, k), records in grouped.items():
            prompts[item].setdefault(f"{k}-shot", records[0]["prompt"])
            refs.setdefault(item, records[0].get("references") or [])
    items: list[dict[str, Any]] = []
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
    marks = kind in metrics.RIGHT_OR_WRONG
    main = columns[0]
    groups = [f"{s} {k}-shot" for s, k in keys]
    chart = charts.grouped_bars(
        groups, {f"{run.letter}: {run.model}": [table[key][main]["values"][i] for key in keys]
                 for i, run in enumerate(runs)},
        charts.label(main), f"{charts.label(main)} per setting, each run (95% intervals)",
        errors={f"{run.letter}: {run.model}": [(table[key][main]["lows"][i],
                                               table[key][main]["highs"][i]) for key in keys]
                for i, run in enumerate(runs)},
    )
    data = {"marks": marks, "differ": "row", "rows": rows, "corner": "setting · shots",
            "cols": [{"label": f"{run.letter}: {run.label}"} for run in runs], "items": items}
    data = report.share_prompt_blocks(data, report._separator(first.task))
    return report.render_template(
        "compare.html.j2", task=first.task, runs=runs, keys=keys, table=table,
        metrics=[metrics.get(c) for c in columns], interval=tables.fmt_interval,
        signed=tables.fmt_signed, fmt_p=tables.fmt_p, alpha=stats.ALPHA,
        chart=Markup(chart) if chart else None,
        filters=[("setting", "setting", list(dict.fromkeys(s for s, _ in keys))),
                 ("shots", "shots", sorted({str(k) for _, k in keys}, key=int))],
        marks=marks, classification=kind == "classification",
        n_items=len(items), common=len({r["item"] for r in first.records}),
        data_json=report.embed_json(data),
    )


def write_csv(path: Path, runs: list[Run], keys: list[Key], columns: list[str],
              table: dict[Key, dict[str, Any]]) -> None:
    """compare.csv: one row per setting, shots and metric; each run's value with its 95%
    interval, then each later run's change from the first with its interval, p-value,
    Holm-adjusted p-value and test."""
    base = runs[0].letter
    header = ["setting", "shots", "metric"]
    for r in runs:
        header += [f"{r.letter}: {r.label}", f"{r.letter} low", f"{r.letter} high"]
    for r in runs[1:]:
        change = f"{r.letter}-{base}"
        header += [change, f"{change} low", f"{change} high", f"{change} p",
                   f"{change} p Holm", f"{change} test"]
    blank = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for setting, k in keys:
            for column in columns:
                cell = table[(setting, k)][column]
                row: list[Any] = [report.csv_cell(setting), k, column]
                for v, lo, hi in zip(cell["values"], cell["lows"], cell["highs"], strict=True):
                    row += [blank(v), blank(lo), blank(hi)]
                for d, p in zip(cell["changes"], cell["p_holm"], strict=True):
                    row += (["", "", "", "", "", ""] if d is None else
                            [d.diff, blank(d.low), blank(d.high), d.p, p, d.test])
                writer.writerow(row)
