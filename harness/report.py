"""Reports of a finished run: summary, CSV and a self-contained HTML page.

Everything here is a pure function of the run's records and its run.json, so a report
can be rendered again (``harness report``) without the model.

The HTML page holds no reference to anything outside itself: its style, script and
charts (inline SVG) are in the page, and every output travels as JSON inside it, drawn a
page of items at a time, so that a run of thousands of outputs stays quick to open.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from . import charts, metrics
from .records import Record

CSV_COLUMNS = [
    "task", "item", "shots", "setting", "seed", "sequence", "output", "reference",
    "references", "predicted", "correct", "invalid", "exact_match", "f1", "contains",
    "repetition", "n_tokens", "mean_logprob", "stop_reason", "raw_output", "prompt",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COUNT_COLUMNS = ("n", "invalid", "stop_eos", "stop_string", "stop_length")

# What each summary column means, shown when the pointer rests on its heading.
COLUMN_HELP = {
    "accuracy": "share of outputs whose first named label is the reference",
    "invalid": "outputs that name none of the labels",
    "exact_match": "share of outputs equal to a reference (normalized)",
    "f1": "character F1 against the best reference, as KorQuAD's evaluation",
    "contains": "share of outputs that contain a reference",
    "bleu": "corpus BLEU, 0-100 (sacrebleu)",
    "chrf": "corpus chrF, 0-100 (sacrebleu)",
    "distinct_1": "distinct words / words, over all outputs",
    "distinct_2": "distinct word pairs / word pairs, over all outputs",
    "repetition": "mean share of an output's word 3-grams that repeat an earlier one",
    "length": "mean tokens generated",
    "logprob": "mean log-probability per generated token under the model",
    "stop_eos": "outputs that ended with the end-of-sequence token",
    "stop_string": "outputs cut at a stop string",
    "stop_length": "outputs that ran to max_new_tokens",
    "n": "outputs",
}
HEADINGS = {"stop_eos": "eos", "stop_string": "stop str", "stop_length": "max len"}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("harness", "templates"),
    autoescape=True,  # every output, prompt and reference is shown as text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The page's stylesheet and script, put in as they are (Jinja does not read them).
_ENV.globals["asset"] = lambda name: Markup(
    _ENV.loader.get_source(_ENV, name)[0]  # type: ignore[union-attr]
)


def render_template(name: str, **context: Any) -> str:
    """One of the package's page templates (report, compare), with the shared helpers."""
    return _ENV.get_template(name).render(fmt=fmt, **context)


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
        if direction is None or len(set(values)) < 2:  # nothing to choose between
            continue
        best[column] = max(values) if direction else min(values)
    return best


# ---------------------------------------------------------------- CSV


def result_row(record: Record) -> dict[str, Any]:
    """One output as results.csv (and the Python API's ``Run.samples``) shows it: the
    CSV_COLUMNS, with the first reference and all of them joined by " | "."""
    refs = record.get("references") or []
    row = {**record, "reference": refs[0] if refs else "", "references": " | ".join(refs)}
    return {column: row.get(column) for column in CSV_COLUMNS}


def write_csv(path: Path, records: list[Record]) -> None:
    """results.csv: one row per output, UTF-8 with a BOM so that Excel reads Hangul."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for record in records:
            writer.writerow([csv_cell(v) for v in result_row(record).values()])


def summary_table(task: dict[str, Any], records: list[Record]) -> tuple[list[str], list[list]]:
    """summary.csv (and ``Run.summary``): its header and one row per setting × shots."""
    summary = summarize(task["kind"], records)
    columns = metric_columns(task["kind"], task.get("metrics"))
    return ["setting", "shots", *columns], [
        [row["setting"], row["shots"], *(row.get(c) for c in columns)] for row in summary
    ]


def write_summary_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([csv_cell(v) for v in row] for row in rows)


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


# ---------------------------------------------------------------- the HTML page


def render_html(run: dict[str, Any], records: list[Record]) -> str:
    """The review page: summary, charts, then every item's outputs side by side."""
    task = run["task"]
    kind = task["kind"]
    summary = summarize(kind, records)
    columns = metric_columns(kind, task.get("metrics"))
    settings = list(dict.fromkeys(r["setting"] for r in records))
    shots = sorted({r["shots"] for r in records})
    marks = kind in ("classification", "qa")
    # What review.js draws: rows × cols of cells per item; each row and column carries the
    # values the filters match (setting, shots); marks: whether outputs are right/wrong.
    data = {
        "marks": marks,
        "differ": "item",
        "rows": [{"label": s, "setting": s} for s in settings],
        "cols": [{"label": f"{k}-shot", "shots": str(k)} for k in shots],
        "corner": "setting",
        "items": [
            _item_data(item, records_by_cell, settings, shots)
            for item, records_by_cell in _by_item(records).items()
        ],
    }
    main = columns[0]
    return render_template(
        "report.html.j2",
        run=run,
        task=task,
        summary=summary,
        columns=columns,
        headings=HEADINGS,
        help=COLUMN_HELP,
        higher=metrics.HIGHER_IS_BETTER,
        best=best_values(summary, columns),
        setting_args=_setting_args(run),
        totals=_totals(records),
        charts=figures(summary, main),
        filters=[("setting", "setting", settings), ("shots", "shots", [str(k) for k in shots])],
        marks=marks,
        classification=kind == "classification",
        n_items=len(data["items"]),
        n_outputs=len(records),
        data_json=embed_json(share_prompt_blocks(data, _separator(task))),
    )


def _by_item(records: list[Record]) -> dict[int, dict[tuple[str, int], list[Record]]]:
    by_item: dict[int, dict[tuple[str, int], list[Record]]] = {}
    for record in records:
        by_item.setdefault(record["item"], defaultdict(list))
        by_item[record["item"]][(record["setting"], record["shots"])].append(record)
    return dict(sorted(by_item.items()))


def _item_data(item: int, cells: dict[tuple[str, int], list[Record]], settings: list[str],
               shots: list[int]) -> dict[str, Any]:
    """One item for the page's script: reference, prompts, and the grid's cells."""
    first = next(iter(cells.values()))[0]
    prompts = {k: rows[0]["prompt"] for (_, k), rows in cells.items()}
    row = {s: i for i, s in enumerate(settings)}
    col = {k: i for i, k in enumerate(shots)}
    return {
        "title": f"item {item + 1}",
        "refs": first.get("references") or [],
        "prompts": [[f"{k}-shot", prompts[k]] for k in sorted(prompts)],
        "cells": [
            [row[setting], col[k], grouped_outputs(rows)]
            for (setting, k), rows in cells.items()
        ],
    }


def grouped_outputs(records: list[Record]) -> list[dict[str, Any]]:
    """A cell's outputs for the page; identical ones (several returned sequences or
    seeds) once, with a count, the most frequent first."""
    merged: dict[str, dict[str, Any]] = {}
    for record in records:
        text = record["output"]
        if text in merged:
            merged[text]["n"] += 1
            continue
        raw = record.get("raw_output") or text
        entry: dict[str, Any] = {
            "t": text,
            "x": raw[len(text):] if raw.startswith(text) else "",  # what a stop string cut
            "s": record.get("stop_reason"),
            "k": record.get("n_tokens"),
            "lp": _round(record.get("mean_logprob")),
            "n": 1,
        }
        if record.get("correct") is not None:
            entry["ok"] = int(record["correct"])
        if "predicted" in record:
            entry["p"] = record["predicted"]
        if record.get("label_logprobs"):
            entry["r"] = " · ".join(
                f"{label} {fmt(lp)}" for label, lp in record["label_logprobs"].items()
            )
        merged[text] = entry
    return sorted(merged.values(), key=lambda e: -e["n"])


def share_prompt_blocks(data: dict[str, Any], separator: str) -> dict[str, Any]:
    """Store each prompt as indices into one table of its blocks (instruction, examples,
    query), since few-shot prompts repeat the same examples item after item: a run's
    prompts then cost about what its items do. Splitting at the separator and joining
    again gives back every prompt exactly, whatever the blocks hold."""
    blocks: dict[str, int] = {}
    for item in data["items"]:
        item["prompts"] = [
            [label, [blocks.setdefault(part, len(blocks))
                     for part in (text.split(separator) if separator else [text])]]
            for label, text in item["prompts"]
        ]
    return {**data, "sep": separator, "blocks": list(blocks)}


def _separator(task: dict[str, Any]) -> str:
    return (task.get("prompt") or {}).get("separator", "\n")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def embed_json(data: Any) -> str:
    """JSON that can sit inside <script type="application/json"> whatever the outputs
    hold: no '<' (so never '</script>'), '>' or '&' appears as itself."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Markup(
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )


def _setting_args(run: dict[str, Any]) -> dict[str, str]:
    """Each setting's generate() arguments, as one line for a tooltip."""
    return {
        s["name"]: ", ".join(f"{k}={v}" for k, v in s.get("args", {}).items()) or "defaults"
        for s in run.get("settings", [])
    }


def _totals(records: list[Record]) -> dict[str, int]:
    stops = Counter(r.get("stop_reason") for r in records)
    return {
        "invalid": int(sum(r.get("invalid") or 0 for r in records)),
        "eos": stops["eos"], "stop": stops["stop"], "length": stops["length"],
    }


def figures(summary: list[dict[str, Any]], main: str) -> list[dict[str, str]]:
    """The report's figures with their captions; a chart with nothing to show is left out."""
    no_repeats = all(not row.get("repetition") for row in summary)
    quiet = " No output repeats a 3-gram here (short answers), so every rate is 0." if (
        no_repeats) else ""
    made = [
        (charts.metric_by_shots(summary, main), False,
         f"{charts.LABELS.get(main, main)} against shot count, one line per setting: "
         "does showing examples help, and which decoding gains most from them?"),
        (charts.likelihood_vs_repetition(summary), False,
         "The trade-off between likely and varied text: greedy and beam search sit high "
         "(likely) and often to the right (looping); sampling lower and to the left." + quiet),
        (charts.repetition_by_setting(summary), True,
         "How much each setting loops (repeated word 3-grams within an output; lower is "
         "better) and how varied its outputs are (distinct word pairs; higher is more "
         "varied)." + quiet),
    ]
    return [{"svg": Markup(svg), "wide": wide, "caption": caption}
            for svg, wide, caption in made if svg]


def fmt(value: Any, column: str = "") -> str:
    """A number as the report and the command line show it."""
    if value is None:
        return "–"
    if column in COUNT_COLUMNS:
        return str(int(value))
    if column in ("bleu", "chrf", "length"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


_fmt = fmt  # the name the command line imported first


def write_all(run_dir: Path, run: dict[str, Any], records: list[Record]) -> None:
    """Write results.csv, summary.csv and index.html for a run's records."""
    task = run["task"]
    write_csv(run_dir / "results.csv", records)
    write_summary_csv(run_dir / "summary.csv", *summary_table(task, records))
    (run_dir / "index.html").write_text(render_html(run, records), encoding="utf-8")
