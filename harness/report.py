"""Reports of a finished run: summary, CSV and a self-contained HTML page.

Everything here is a pure function of the run's records and its run.json, so a report
can be rendered again (``harness report``) without the model.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from . import metrics
from .runner import Record

CSV_COLUMNS = [
    "task", "item", "shots", "setting", "seed", "sequence", "output", "reference",
    "references", "predicted", "correct", "invalid", "exact_match", "f1", "contains",
    "repetition", "n_tokens", "mean_logprob", "stop_reason", "raw_output", "prompt",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("harness", "templates"),
    autoescape=True,  # every output, prompt and reference is shown as text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def summarize(kind: str, records: list[Record]) -> list[dict[str, Any]]:
    """One row per (setting, shots), in the records' order, with every aggregate metric."""
    groups: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record["setting"], record["shots"])].append(record)
    return [
        {"setting": setting, "shots": shots, **metrics.aggregate(kind, rows)}
        for (setting, shots), rows in groups.items()
    ]


def metric_columns(kind: str, chosen: list[str] | None) -> list[str]:
    """The summary's metric columns: the task's chosen ones first, then the rest."""
    every = [
        m for m in metrics.metric_names(kind)
        if kind != "generation" or m in metrics.COMMON_METRICS or m in (chosen or [])
    ]
    every += ["stop_eos", "stop_string", "stop_length", "n"]
    first = [m for m in chosen or [] if m in every]
    return first + [m for m in every if m not in first]


def best_values(summary: list[dict[str, Any]], columns: list[str]) -> dict[str, float]:
    """The best value of each column that has a direction (ties all count as best)."""
    best = {}
    for column in columns:
        direction = metrics.HIGHER_IS_BETTER.get(column)
        values = [row[column] for row in summary if row.get(column) is not None]
        if direction is None or not values:
            continue
        best[column] = max(values) if direction else min(values)
    return best


def write_csv(path: Path, records: list[Record]) -> None:
    """results.csv: one row per output, UTF-8 with a BOM so that Excel reads Hangul."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            row = dict(record)
            refs = record.get("references") or []
            row["reference"] = refs[0] if refs else ""
            row["references"] = " | ".join(refs)
            writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})


def write_summary_csv(path: Path, summary: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["setting", "shots", *columns])
        for row in summary:
            writer.writerow([_cell(row["setting"]), row["shots"], *(row.get(c) for c in columns)])


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def render_html(run: dict[str, Any], records: list[Record]) -> str:
    """The review page: summary, then every item's outputs side by side."""
    task = run["task"]
    kind = task["kind"]
    summary = summarize(kind, records)
    columns = metric_columns(kind, task.get("metrics"))
    settings = list(dict.fromkeys(r["setting"] for r in records))
    shots = sorted({r["shots"] for r in records})
    items = _items(records, settings, shots)
    return _ENV.get_template("report.html.j2").render(
        run=run,
        task=task,
        summary=summary,
        columns=columns,
        best=best_values(summary, columns),
        main_metric=columns[0],
        settings=settings,
        shots=shots,
        items=items,
        n_outputs=len(records),
        fmt=_fmt,
    )


def _items(records: list[Record], settings: list[str], shots: list[int]) -> list[dict[str, Any]]:
    """Per item: its reference, its prompts by shot count, outputs by (setting, shots)."""
    by_item: dict[int, dict[str, Any]] = {}
    for record in records:
        item = by_item.setdefault(
            record["item"],
            {"index": record["item"], "references": record["references"], "prompts": {},
             "cells": defaultdict(list)},
        )
        item["prompts"][record["shots"]] = record["prompt"]
        item["cells"][(record["setting"], record["shots"])].append(_grouped_output(record))
    for item in by_item.values():
        for key, outputs in item["cells"].items():
            item["cells"][key] = _merge_identical(outputs)
    return [by_item[i] for i in sorted(by_item)]


def _grouped_output(record: Record) -> dict[str, Any]:
    raw, text = record.get("raw_output", record["output"]), record["output"]
    return {
        "text": text,
        "cut": raw[len(text):] if raw.startswith(text) else "",
        "correct": record.get("correct"),
        "predicted": record.get("predicted"),
        "stop_reason": record["stop_reason"],
        "logprob": record.get("mean_logprob"),
        "count": 1,
    }


def _merge_identical(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Identical outputs (several returned sequences or seeds) shown once with a count."""
    merged: dict[str, dict[str, Any]] = {}
    for output in outputs:
        if output["text"] in merged:
            merged[output["text"]]["count"] += 1
        else:
            merged[output["text"]] = dict(output)
    return list(merged.values())


def _fmt(value: Any, column: str = "") -> str:
    if value is None:
        return "–"
    if column in ("n", "invalid", "stop_eos", "stop_string", "stop_length"):
        return str(int(value))
    if column in ("bleu", "chrf", "length"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_all(run_dir: Path, run: dict[str, Any], records: list[Record]) -> None:
    """Write results.csv, summary.csv and index.html for a run's records."""
    task = run["task"]
    summary = summarize(task["kind"], records)
    columns = metric_columns(task["kind"], task.get("metrics"))
    write_csv(run_dir / "results.csv", records)
    write_summary_csv(run_dir / "summary.csv", summary, columns)
    (run_dir / "index.html").write_text(render_html(run, records), encoding="utf-8")


def save_run_json(run_dir: Path, run: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
    scratch.replace(path)
