"""The harness from Python (``import harness``): what the command line does, as calls.

    import harness
    m = harness.load_model("default")                  # loading is the slow part: once
    run = harness.run("tasks/emotion.yaml", model=m, limit=8, shots=[0, 1])
    run.summary                                        # DataFrame: setting × shot count
    run.samples                                        # DataFrame: one row per output
    harness.load("reports/emotion-20261204-101500")   # a finished run, no model

``run`` is ``harness run`` (the same files, result cache and resume) and ``load`` reads
what ``harness report`` reads. A mistake raises HarnessError with the line the command
line prints; nothing here exits the interpreter.
"""

from __future__ import annotations

import html
import math
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import fields
from functools import cached_property
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

# In Jupyter without ipywidgets, tqdm.auto draws text progress bars, as in a terminal,
# after a warning that names a file of its own installation: the bars are what matter.
# Set before the imports below, which bring in transformers, which imports tqdm.auto.
warnings.filterwarnings("ignore", message="IProgress not found")

from harness import records
from harness.errors import HarnessError
from harness.reports import frames, report, tables
from harness.runs import pipeline
from harness.scoring import labels
from harness.tasks import spec

if TYPE_CHECKING:
    import pandas as pd

    from harness.engines.contract import Backend, ModelInfo
    from harness.scoring.summary import Summary
    from harness.tools.finetune import Result


class Model:
    """A model loaded once, for any number of ``run`` calls (``harness.load_model``)."""

    def __init__(self, backend: Backend, name: str) -> None:
        self.backend = backend
        self.name = name

    def describe(self) -> ModelInfo:
        """The model as run.json records it: name, fingerprint, type, device, dtype, ..."""
        return self.backend.describe()

    def close(self) -> None:
        """Let go of the model's memory (and an engine's processes)."""
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.describe()
        return (f"<harness model {self.name}: {info.get('type')} on {info.get('device')} "
                f"({info.get('dtype')}) with {self.backend.name}>")


def load_model(
    name: str | Path = "default", *, backend: str = "auto", device: str = "auto",
    plain: bool = False,
) -> Model:
    """Load a model as ``harness run --model`` does: default, a folder, a .gguf file or a
    hub id; ``backend`` auto, hf or vllm; ``plain``: transformers' own generate."""
    from harness.engines import registry

    engine = registry.choose(backend, device)
    return Model(registry.open_backend(engine, str(name), device, fast=not plain), str(name))


class Run:
    """A finished run: its folder, run.json, and its outputs as records and DataFrames."""

    def __init__(self, run_dir: Path, info: dict[str, Any], found: list[records.Record],
                 summary: Summary | None = None) -> None:
        self.run_dir = run_dir
        self.info = info  # run.json
        self.records = found  # the record contract (harness.records), in the report's order
        self._summary = summary  # a run just made: the one its reports were written with

    @property
    def task(self) -> str:
        return self.info["task"]["name"]

    @property
    def report_path(self) -> Path:
        """index.html, the review page."""
        return self.run_dir / "index.html"

    @cached_property
    def samples(self) -> pd.DataFrame:
        """One row per output: results.csv's columns and rows."""
        return frames.samples(self.records)

    @cached_property
    def statistics(self) -> Summary:
        """Every number of the summary (intervals, tests of difference), as the report
        computes them: ``harness.scoring.summary.Summary`` (with the human and judge
        columns where the run has ratings or a judging)."""
        if self._summary is not None:
            return self._summary
        from harness.reports.judgement import gather

        gathered = gather(self.run_dir, self.info, self.records)
        return report.summary_of(self.info, gathered.records, gathered.extra)

    @property
    def ratings(self) -> pd.DataFrame:
        """People's ratings kept in the run (``harness ratings``): one row per rater,
        output and criterion (item, setting, shots, seed, sequence, criterion, point,
        value on the scale, note, output text); empty where nobody rated."""
        return frames.ratings(self.run_dir, self.info, self.records)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per setting × shot count: summary.csv's columns and rows (each metric
        with its 95% interval, its mark among the settings and its Holm p-value)."""
        return frames.summary(self.statistics)

    def __repr__(self) -> str:
        return (f"<harness run {self.task}: {len(self.records)} outputs, "
                f"{len(self.statistics.rows)} setting × shots rows; {self.report_path}>")

    def _repr_html_(self) -> str:
        """Jupyter shows a run as its summary (values with intervals and marks, as the
        report's page) and its charts."""
        task = self.info["task"]
        model = self.info.get("model", {})
        head = " · ".join(
            html.escape(str(part)) for part in (
                task.get("description") or "", f"{len(self.records)} outputs",
                f"model {model.get('name')} ({model.get('device')}, {model.get('dtype')})",
            ) if part
        )
        summary = self.statistics
        baseline = (labels.baseline(self.records, summary.scope.labels)
                    if summary.kind == "classification" else None)
        charts = "".join(
            # the report's charts at the width they were drawn for (the SVG fills its box)
            f'<figure style="display:inline-block;vertical-align:top;max-width:100%;'
            f'width:{690 if chart["css"] == "wide" else 460}px;margin:8px 16px 8px 0">'
            f'{chart["svg"]}<figcaption style="font-size:12px;color:#57606a">'
            f"{html.escape(chart['caption'])}</figcaption></figure>"
            for chart in report.figures(summary, baseline)
        )
        notes = "".join(f"<br>{html.escape(line)}" for line in tables.findings(summary))
        return (
            f"<div><p><b>{html.escape(self.task)}</b> · {head}<br>"
            f"<code>{html.escape(str(self.report_path))}</code></p>{_summary_html(summary)}"
            f"<p style=\"font-size:12px\">{html.escape(tables.LEGEND)}{notes}</p>{charts}</div>"
        )


def _summary_html(summary: Summary) -> str:
    """The summary as an HTML table: each metric's value, interval and mark in one cell."""
    shown = tables.plain_metrics(summary)
    head = "".join(f"<th>{html.escape(name)}</th>"
                   for name in ["setting", "shots", *(m.name for m in shown)])
    body = []
    for row in summary.rows:
        cells = [str(row["setting"]), str(row["shots"]),
                 *(tables.plain_cell(row, m) for m in shown)]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def load(run_dir: str | Path) -> Run:
    """The ``Run`` of a finished run folder, read from its files without a model."""
    run_dir = _path("run_dir", run_dir)
    info, found = records.load_run(run_dir)
    return Run(run_dir, info, found)


def rate(run: Run | str | Path, scores: Any, *, rater: str) -> Run:
    """People's ratings typed in Python, kept as ``harness ratings RUN_DIR FILE`` keeps a
    file exported from the report; the run read again, with them (``ratings``, the human
    columns of ``summary``). ``scores``: a DataFrame (or a list of mappings) with a row
    per rated output: item, setting, shots, seed and sequence as ``samples`` has them, a
    column per criterion of the task's rating (``overall`` where it names none) holding
    a point of its scale (empty: not rated on it), and an optional ``note``. A rater
    rating again replaces their earlier ratings."""
    from harness.runs import rating
    from harness.scoring import ratings

    run_dir = run.run_dir if isinstance(run, Run) else _path("run", run)
    info = records.read_run(run_dir)
    scale = ratings.Scale.of(info)
    if _is_frame(scores):
        rows = scores.to_dict("records")
    elif isinstance(scores, list | tuple) and all(isinstance(r, Mapping) for r in scores):
        rows = [dict(row) for row in scores]
    else:
        raise HarnessError("scores: expected a DataFrame or a list of mappings, one per "
                           "rated output")
    outputs = []
    for row in rows:
        given = {c: _point(row[c]) for c in scale.criteria if c in row}
        outputs.append({"item": _whole(row.get("item")), "setting": row.get("setting"),
                        "shots": _whole(row.get("shots")), "seed": _whole(row.get("seed")),
                        "sequence": _whole(row.get("sequence", 0)),
                        "scores": {c: p for c, p in given.items() if p is not None},
                        "note": "" if _missing(row.get("note")) else str(row["note"])})
    data = {"harness_ratings": ratings.FORMAT, "run": ratings.run_id(info), "rater": rater,
            "scale": list(scale.points), "criteria": list(scale.criteria),
            "outputs": outputs, "pairs": []}
    rating.keep_ratings(run_dir, [(f"ratings of {rater!r}", data)])
    return load(run_dir)


def judge(run: Run | str | Path, *, model: str | Path | Model | None = None,
          task: str | Path | None = None, device: str = "auto") -> Run:
    """``harness judge``: a model scores the run's outputs as its task's ``judge:`` says
    (its answers kept in the run folder, so judging again asks nothing twice); the run
    read again, with the judge's column in ``summary``. ``model``: a name, or a ``Model``
    from ``load_model`` (used and left loaded); by default the task's judge model."""
    from harness.runs.judging import judge_run

    run_dir = run.run_dir if isinstance(run, Run) else _path("run", run)
    given = model if isinstance(model, Model) else None
    judge_run(run_dir, None if task is None else _path("task", task, "a task file's path"),
              model=given.name if given is not None else None if model is None else str(model),
              backend=given.backend if given is not None else None, device=device)
    return load(run_dir)


def _point(value: Any) -> str | None:
    """A point as the scale spells it: 4 and 4.0 as "4"; empty as None."""
    if _missing(value):
        return None
    if isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(float(value)))
    return str(value)


def _whole(value: Any) -> Any:
    """An integer column read back from a DataFrame (4.0, numpy ints; NaN as None)."""
    if _missing(value):
        return None
    if isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(float(value))
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        type(value).__name__ in ("NAType", "NaTType"))


def run(
    task: str | Path | Mapping[str, Any],
    *,
    model: str | Path | Model | None = None,
    backend: str = "auto",
    limit: int | None = None,
    shots: int | Iterable[int] | None = None,
    presets: str | Iterable[str] | None = None,
    seed: int | Iterable[int] | None = None,
    out: str | Path = "reports",
    device: str = "auto",
    resume: bool | str | Path = False,
    cache: bool = True,
    plain: bool = False,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout: float = 120.0,
    chat_args: Mapping[str, Any] | None = None,
    thinking_budget: int | None = None,
) -> Run:
    """``harness run``: render, generate, score and write the run folder; its ``Run``.

    ``task``: a task file's path, a dict of its fields (``data`` and ``fewshot`` may be
    DataFrames or lists of mappings; paths in it are relative to the working folder) or
    its YAML text. ``model``: a name as ``--model`` takes it (the task's own by default),
    or a ``Model`` from ``load_model``, which is used and left loaded. ``resume``: True for
    the task's newest run under ``out``, or a run folder. The other options are those of
    ``harness run``; ``base_url``, ``api_key_env``, ``concurrency``, ``timeout`` and
    ``thinking_budget`` are for ``backend="openai"`` (a model behind a server), and
    ``chat_args`` go to the chat template (``{"enable_thinking": False}``).
    """
    from harness.engines.contract import Server

    loaded = load_task(task)
    given = model if isinstance(model, Model) else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise HarnessError(f"limit: expected a whole number, got {limit!r}")
    config = pipeline.RunConfig(
        task=loaded,
        overrides=_overrides(model, limit, shots, presets, seed, chat_args),
        backend=backend, device=device, fast=not plain, out=_path("out", out),
        server=Server(base_url or Server.base_url, api_key_env=api_key_env,
                      concurrency=concurrency, timeout=timeout, chat_args=dict(chat_args or {}),
                      thinking_budget=thinking_budget)
        if backend == "openai" else None,
        resume=_resume(resume), cache=cache, python=True,
    )
    try:
        finished = pipeline.run(config, backend=given.backend if given is not None else None)
    except pipeline.Interrupted as stop:
        print(f"harness: interrupted; finished outputs are kept in {stop.run_dir}; "
              f"resume=\"{stop.run_dir}\" finishes the run", file=sys.stderr)
        raise
    return Run(finished.run_dir, records.read_run(finished.run_dir), finished.records,
               finished.summary)


def _overrides(model: str | Path | Model | None, limit: int | None,
               shots: int | Iterable[int] | None, presets: str | Iterable[str] | None,
               seed: int | Iterable[int] | None, chat_args: Mapping[str, Any] | None
               ) -> pipeline.Overrides:
    """What ``run``'s options change in the task, checked as the command line checks them."""
    given = model if isinstance(model, Model) else None
    return pipeline.Overrides(
        shots=_numbers("shots", shots), presets=_names("presets", presets),
        seeds=_numbers("seed", seed), limit=limit,
        model=given.name if given is not None else None if model is None else str(model),
        # a Model's own tokenizer lays out chat turns, not the task's model field's
        tokenizer=getattr(given.backend, "tokenizer", None) if given is not None else None,
        chat_args=dict(chat_args) if chat_args else None,
    )


def load_task(task: str | Path | Mapping[str, Any]) -> spec.LoadedTask:
    """A task from its file's path, a dict of its fields, or its YAML text (a string of
    more than one line, or a one-line ``{...}``)."""
    if isinstance(task, Mapping):
        fields_ = dict(task)
        for key in ("data", "fewshot"):
            if _is_frame(fields_.get(key)):
                fields_[key] = frames.items(fields_[key], f"<dict>: {key}")
        return spec.load_task_mapping(fields_, Path("<dict>"), Path.cwd())
    if isinstance(task, str) and ("\n" in task or task.lstrip().startswith("{")):
        return spec.load_task_text(task, Path("<yaml>"), Path.cwd())
    if isinstance(task, str | Path):
        return spec.load_task(task)
    raise HarnessError(
        f"task: expected a task file's path, a dict of its fields or its YAML text, "
        f"got {type(task).__name__}"
    )


def fine_tune(data: str | Path, out: str | Path, *, model: str | Path | Model = "default",
              **options: Any) -> Result:
    """``harness finetune``: train ``model`` on the question/answer pairs of ``data`` and
    save it to ``out`` (a folder ``run(..., model=out)`` loads). ``options`` are those of
    the command, with underscores: epochs, lr, batch_size, question_column, force, ..."""
    from harness.tools import finetune

    kinds = {f.name: str(f.type) for f in fields(finetune.Config)}
    known = sorted(set(kinds) - {"data", "out", "model"})
    for name in options:
        if name not in known:
            raise HarnessError(f"fine_tune: unknown option {name!r}; use {', '.join(known)}")
    checked = {name: _option(name, kinds[name], value) for name, value in options.items()}
    name = model.name if isinstance(model, Model) else str(_path("model", model, "a model's name"))
    return finetune.finetune(finetune.Config(
        data=_path("data", data, "a data file's path"), out=_path("out", out), model=name,
        **checked))


def _is_frame(value: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is imported already
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _numbers(option: str, value: int | Iterable[int] | None) -> list[int] | None:
    """shots=3 or shots=[0, 1, 3] (numpy's integers too) as a list of ints."""
    if value is None:
        return None
    values = _listed(value, Integral)
    if not values or any(isinstance(v, bool) or not isinstance(v, Integral) for v in values):
        raise HarnessError(f"{option}: expected a whole number or a list of them, got {value!r}")
    return [int(v) for v in values]


def _names(option: str, value: str | Iterable[str] | None) -> list[str] | None:
    """presets="greedy" or presets=["greedy", "beam"] as a list of names."""
    if value is None:
        return None
    values = _listed(value, str)
    if not values or not all(isinstance(v, str) for v in values):
        raise HarnessError(f"{option}: expected a name or a list of names, got {value!r}")
    return values


def _listed(value: Any, single: type) -> list[Any]:
    if isinstance(value, single):
        return [value]
    try:
        return list(value)
    except TypeError:
        return []


def _resume(value: bool | str | Path) -> Path | None:
    if value is True:
        return pipeline.LATEST
    if value is False or value is None:
        return None
    return _path("resume", value, "True or a run folder")


def _path(option: str, value: Any, expected: str = "a folder's path") -> Path:
    """A path option (a str or a Path), or a one-line HarnessError naming the option."""
    if isinstance(value, str | Path) and str(value):
        return Path(value)
    raise HarnessError(f"{option}: expected {expected}, got {value!r}")


# fine_tune's options by the type finetune.Config declares for them
_OPTION_TYPES: dict[str, tuple[type[Any], ...]] = {
    "int": (Integral,), "float": (Real,), "bool": (bool,), "str": (str,),
}


def _option(name: str, kind: str, value: Any) -> Any:
    """One fine_tune option checked against its declared type (numpy's numbers too), so
    that epochs="3" is one line, not a TypeError from inside the training loop."""
    wanted = _OPTION_TYPES.get(kind)
    if wanted is None:
        return value
    if not isinstance(value, wanted) or (isinstance(value, bool) and kind != "bool"):
        article = "an" if kind == "int" else "a"
        raise HarnessError(f"fine_tune: {name} expected {article} {kind}, got {value!r}")
    return int(value) if kind == "int" else float(value) if kind == "float" else value
