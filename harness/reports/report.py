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
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.common import files
from harness.records import Record
from harness.reports import charts, judgement, tables
from harness.scoring import labels, metrics, ratings, stats

# report.summarize: the summary rows that summary.csv, the page and the API share
from harness.scoring.summary import Summary, summarize  # noqa: F401

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_columns() -> list[str]:
    """results.csv: what was asked and answered, each output's scores (the registry's
    per-output fields), then how it ended and the text it came from."""
    return ["task", "item", "shots", "setting", "seed", "sequence", "output", "reference",
            "references", *metrics.sample_fields(), "n_tokens", "mean_logprob",
            "stop_reason", "raw_output", "prompt"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("harness.reports", "templates"),
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


# ---------------------------------------------------------------- CSV


def result_row(record: Record, columns: list[str] | None = None) -> dict[str, Any]:
    """One output as results.csv (and the Python API's ``Run.samples``) shows it: the
    ``csv_columns``, with the first reference and all of them joined by " | "."""
    refs = record.get("references") or []
    row = {**record, "reference": refs[0] if refs else "", "references": " | ".join(refs)}
    return {column: row.get(column) for column in columns or csv_columns()}


def write_csv(path: Path, records: list[Record]) -> None:
    """results.csv: one row per output, UTF-8 with a BOM so that Excel reads Hangul."""
    columns = csv_columns()
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in records:
            writer.writerow([csv_cell(v) for v in result_row(record, columns).values()])


def summary_table(summary: Summary) -> tuple[list[str], list[list[Any]]]:
    """summary.csv (and the Python API's ``Run.summary``): its header and a row per
    setting × shots; each metric with its 95% interval (``_low``, ``_high``) and, where a
    direction is better, its mark among the settings at that shot count (``_mark``: best,
    tied, worse) and Holm-adjusted p-value against the best."""
    keys = summary.row_columns()
    return ["setting", "shots", *keys], [
        [row["setting"], row["shots"], *(row.get(k) for k in keys)] for row in summary.rows
    ]


def write_summary_csv(path: Path, summary: Summary) -> None:
    header, rows = summary_table(summary)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([csv_cell(v) for v in row] for row in rows)


def write_labels_csv(path: Path, summary: Summary) -> None:
    """labels.csv (classification): precision, recall and F1 per label, with intervals."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=labels.LABEL_COLUMNS)
        writer.writeheader()
        for row in labels.label_rows(summary):
            writer.writerow({k: csv_cell(v) for k, v in row.items()})


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


# ---------------------------------------------------------------- the HTML page


def render_html(run: dict[str, Any], records: list[Record],
                summary: Summary | None = None,
                gathered: judgement.Gathered | None = None) -> str:
    """The review page: summary, differences, charts, labels, ratings and the judge, then
    every item's outputs (which a person can rate there)."""
    task = run["task"]
    kind = task["kind"]
    gathered = gathered or judgement.Gathered(records, scale=ratings.Scale.of(run))
    summary = summary or summary_of(run, gathered.records, gathered.extra)
    settings = list(dict.fromkeys(r["setting"] for r in records))
    shots = sorted({r["shots"] for r in records})
    marks = kind in metrics.RIGHT_OR_WRONG  # kinds whose answers are right or wrong
    classification = kind == "classification"
    # What review.js draws: rows × cols of cells per item; each row and column carries the
    # values the filters match (setting, shots); marks: whether outputs are right/wrong.
    data: dict[str, Any] = {
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
    baseline = labels.baseline(records, summary.scope.labels) if classification else None
    return render_template(
        "report.html.j2",
        run=run,
        task=task,
        summary=summary,
        groups=tables.groups(summary),
        comparisons=tables.comparison_tables(summary),
        label_table=tables.label_table(summary) if classification else None,
        confusions=tables.confusion_grid(summary) if classification else None,
        distribution=(labels.distribution(records, summary.scope.labels)
                      if classification else None),
        baseline=baseline,
        setting_args=_setting_args(run),
        totals=_totals(records),
        charts=figures(summary, baseline),
        filters=[("setting", "setting", settings), ("shots", "shots", [str(k) for k in shots])],
        marks=marks,
        classification=classification,
        alpha=stats.ALPHA,
        n_items=len(data["items"]),
        n_outputs=len(records),
        data_json=embed_json(share_prompt_blocks(data, _separator(task))),
        judged=judgement.panels(gathered, summary),
        rating_json=embed_json(_rating_data(run)),
    )


def _rating_data(run: dict[str, Any]) -> dict[str, Any]:
    """What ratings.js needs: the run's id (ratings are kept per run in the browser and
    exported with it), the task, and the scale and criteria to rate on."""
    scale = ratings.Scale.of(run)
    return {"run": ratings.run_id(run), "task": run["task"]["name"],
            "scale": list(scale.points), "criteria": list(scale.criteria),
            "format": ratings.FORMAT}


def summary_of(run: dict[str, Any], records: list[Record],
               extra: list[metrics.Metric] | None = None) -> Summary:
    """The summary of a run as its task asks: its kind, labels and chosen metrics, and
    ``extra`` columns (human ratings, a judge: ``judgement.gather``)."""
    task = run["task"]
    return Summary(task["kind"], records, task.get("labels"), task.get("metrics"),
                   task.get("language"), task.get("bleu_tokenize"), extra or ())


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
        "id": item,
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
            "q": [record.get("seed"), record.get("sequence", 0)],  # which output (ratings)
        }
        if record.get("reasoning") is not None:  # shown folded, beside the answer
            entry["th"] = record["reasoning"]
        if (correct := record.get("correct")) is not None:
            entry["ok"] = int(correct)
        if "predicted" in record:
            entry["p"] = record["predicted"]
        if record.get("label_logprobs"):
            entry["r"] = " · ".join(
                f"{label} {fmt(lp)}" for label, lp in record["label_logprobs"].items()
            )
        elif record.get("choice_logprobs") is not None:  # multiple_choice, ranked
            entry["r"] = " · ".join(
                f"{i}. {choice} {fmt(lp)}" for i, (choice, lp) in enumerate(
                    zip(record["choices"], record["choice_logprobs"], strict=True), start=1))
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
    hold: no '<' (so never '</script>'), '>' or '&' appears as itself, and a number that
    is not finite (a NaN log-probability) is null, as JSON has no NaN."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)
    return Markup(
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


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
        "thinking": stops["thinking"],
    }


VISIBLE = 0.01  # the smallest rate worth a panel of bars from 0 to 1
BASELINE_NOTE = " The dashed line is what always answering the commonest reference scores."
BY_SHOTS = ("Each setting's {metric} against shot count, with 95% intervals over items: "
            "does showing examples help, and which decoding gains most from them?")
ANSWERS = ("The share of answers naming each label, per setting and shot count, under the "
           "references' own distribution: a setting that gives one label for everything "
           "shows as one colour.")

Figure = tuple[str | None, str, str]  # svg, css class, caption


def figures(summary: Summary, baseline: labels.Baseline | None) -> list[dict[str, Any]]:
    """The report's figures: the main metric against shot count, then the charts the
    registry gives the summary's metrics (``Metric.charts``), with their captions, and
    for classification what each setting answers. A chart that could only show zeros,
    or nothing, is left out."""
    rows = summary.rows
    main = summary.metrics[0]
    charted = [(metric, chart) for metric in summary.metrics for chart in metric.charts]
    made = [_by_shots(rows, main, BY_SHOTS.format(metric=charts.label(main.name)), baseline)]
    made += [_by_shots(rows, metric, chart.caption, baseline) for metric, chart in charted
             if chart.kind == "shots" and metric is not main]
    if summary.kind == "classification":
        made.append((_answer_chart(summary), "tall", ANSWERS))
    # a rate under VISIBLE in every cell would draw an empty panel
    bars = [(metric, chart) for metric, chart in charted if chart.kind == "bars"
            and any((row.get(metric.name) or 0) >= VISIBLE for row in rows)]
    made.append((charts.bars_by_setting(rows, [metric.name for metric, _ in bars]),
                 "wide" if len(bars) > 1 else "", " ".join(chart.caption for _, chart in bars)))
    shown = {metric.name for metric, _ in bars}
    made += [(charts.versus(rows, metric.name, chart.other, chart.title), "", chart.caption)
             for metric, chart in charted if chart.kind == "versus"
             and metric.name in shown and chart.other in summary.columns]
    return [{"svg": Markup(svg), "css": css, "caption": caption}
            for svg, css, caption in made if svg]


def _by_shots(rows: list[dict[str, Any]], metric: metrics.Metric, caption: str,
              baseline: labels.Baseline | None) -> Figure:
    """A metric against shot count, with the majority baseline's line where the
    registry gives the metric one."""
    line = None
    if baseline is not None and metric.baseline:
        value = getattr(baseline, metric.baseline)
        line = f"always {baseline.name}: {value:.3f}", value
    return (charts.metric_by_shots(rows, metric.name, line), "",
            caption + (BASELINE_NOTE if line else ""))


def _answer_chart(summary: Summary) -> str | None:
    """Classification: what each setting answers, beside the references."""
    answers = [*summary.scope.labels, labels.NO_LABEL]
    matrices = {key: labels.confusion(summary, key) for key in summary.cells}
    first = next(iter(matrices.values()))
    references = [[*first.sum(axis=1), 0]]  # the outputs of one cell, by reference
    answered = [[*matrix.sum(axis=0)] for matrix in matrices.values()]
    groups = ["references", *(f"{s} · {k}-shot" for s, k in matrices)]
    return charts.answer_distribution(groups, references + answered, answers)


fmt = tables.fmt  # the name the page template and the command line use


def write_all(run_dir: Path, run: dict[str, Any], records: list[Record]) -> Summary:
    """Write results.csv, summary.csv (labels.csv for classification) and index.html for
    a run's records; returns the summary they show."""
    gathered = judgement.gather(run_dir, run, records)
    summary = summary_of(run, gathered.records, gathered.extra)
    # Each file is written beside itself and renamed: a kill or a full disk leaves the
    # earlier file whole, never half a page.
    with files.replacing(run_dir / "results.csv") as scratch:
        write_csv(scratch, records)
    with files.replacing(run_dir / "summary.csv") as scratch:
        write_summary_csv(scratch, summary)
    if summary.kind == "classification":
        with files.replacing(run_dir / "labels.csv") as scratch:
            write_labels_csv(scratch, summary)
    files.write_text(run_dir / "index.html", render_html(run, records, summary, gathered))
    return summary
