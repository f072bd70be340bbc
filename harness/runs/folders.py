"""A finished run folder read back: its report rendered again, its outputs scored again.

Nothing here loads a model or imports torch: samples.jsonl and run.json hold all that
is needed (``harness report``, ``harness rescore``, ``harness compare``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import records
from harness.common import files
from harness.errors import HarnessError
from harness.records import Record
from harness.reports import report
from harness.scoring import metrics
from harness.scoring.summary import Summary
from harness.tasks.prompts import Templates, build_prompts
from harness.tasks.spec import LoadedTask, load_task

# The task fields a rescore takes from the task file; the others describe how the
# outputs were made, which a rescore does not change.
SCORING_FIELDS = ("labels", "metrics", "target", "aliases", "rating", "judge")


def rerender(run_dir: str | Path) -> Path:
    """Write the run's reports again from its files; returns index.html."""
    run_dir = Path(run_dir)
    run, found = records.load_run(run_dir)
    try:
        report.write_all(run_dir, run, found)
    except OSError as exc:
        fix = ("free some space and try again" if files.disk_full(exc) else
               "copy the run folder somewhere writable and report that")
        raise HarnessError(f"{run_dir}: cannot write the report there ({files.reason(exc)}); "
                           f"{fix}") from None
    return run_dir / "index.html"


@dataclass
class Rescored:
    run: dict[str, Any]
    records: list[Record]
    task_path: Path
    changed: int  # outputs whose references or scores changed
    summary: Summary  # the one the rewritten report shows
    notes: list[str] = field(default_factory=list)


def rescore(run_dir: str | Path, task_path: str | Path | None = None) -> Rescored:
    """Score the saved outputs again with the task file as it is now, and re-render.

    The task's target, aliases, labels and metrics are read afresh (a corrected label in
    the data counts too); the outputs themselves are left as they were generated.
    samples.jsonl and run.json are replaced whole, never left half written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: no such run folder")
    with files.locked(run_dir, f"rescore {run_dir}"):
        run, found = records.load_run(run_dir)
        try:
            files.probe(run_dir)
        except OSError as exc:
            raise HarnessError(f"rescore {run_dir}: cannot write there ({files.reason(exc)}); "
                               "copy the run folder somewhere writable and rescore that") from None
        return _rescore(run_dir, run, found, task_path)


def _rescore(run_dir: Path, run: dict[str, Any], found: list[Record],
             task_path: str | Path | None) -> Rescored:
    path = Path(task_path) if task_path is not None else _task_path(run, run_dir)
    task = _same_task(path, run, run_dir)
    fresh, changed = _scored_again(path, task, found)
    old, notes = run["task"], []
    ranked = any(r["setting"] == records.LIKELIHOOD for r in found)
    if ranked and task.spec.labels != old.get("labels"):
        notes.append(
            "the likelihood setting ranked the labels of the run, not the new ones; run the "
            "task again to rank those"
        )
    dumped = task.spec.model_dump(mode="json")
    run["task"] = {**old, **{k: dumped.get(k) for k in SCORING_FIELDS}}
    run["rescored"] = {
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "task_path": str(path),
        "changed": changed,
    }
    try:
        records.write_samples(run_dir / "samples.jsonl", fresh)
        records.write_run(run_dir, run)
        summary = report.write_all(run_dir, run, fresh)
    except OSError as exc:
        raise HarnessError(
            f"rescore {run_dir}: cannot write there ({files.reason(exc)}); the outputs are "
            "all kept: free some space and rescore again, which rewrites every file"
        ) from None
    return Rescored(run, fresh, path, changed, summary, notes)


def _same_task(path: Path, run: dict[str, Any], run_dir: Path) -> LoadedTask:
    """The task file at ``path``, once it is known to be the run's task, of its kind."""
    task = load_task(path)
    spec, old = task.spec, run["task"]
    if spec.name != old.get("name"):
        raise HarnessError(
            f"{path}: this is task {spec.name!r}, but {run_dir} is a run of {old.get('name')!r}"
        )
    if spec.kind != old.get("kind"):
        raise HarnessError(
            f"{path}: kind is now {spec.kind}, but the outputs in {run_dir} were made for "
            f"{old.get('kind')}; run the task again"
        )
    build_prompts(task, [0])  # the task's checks: references among the labels, and so on
    return task


def _scored_again(path: Path, task: LoadedTask, found: list[Record]) -> tuple[list[Record], int]:
    """Each record with the task's references and scores as they are now, and how many
    changed; a record whose item the data no longer has, or whose prompt it no longer
    gives, stops the rescore."""
    templates = Templates(task, [0])
    items = task.items
    fresh: list[Record] = []
    changed = 0
    checked: set[int] = set()
    for record in found:
        index = record["item"]
        if index >= len(items):
            raise HarnessError(
                f"{path}: the run has item {index + 1}, but the data now has {len(items)} "
                "items; run the task again"
            )
        if index not in checked:
            query = templates.render("prompt.query", items[index])
            if not record["prompt"].endswith(query):
                raise HarnessError(
                    f"{path}: item {index + 1} no longer gives the prompt the run used (the "
                    "data or prompt.query changed); run the task again"
                )
            checked.add(index)
        new = records.scored(task.spec, record | {"references": templates.references(items[index])})
        changed += any(new.get(k) != record.get(k)
                       for k in (*metrics.SAMPLE_FIELDS, "references"))
        fresh.append(new)
    return fresh, changed


def _task_path(run: dict[str, Any], run_dir: Path) -> Path:
    recorded = run.get("task_path")
    if not recorded:
        raise HarnessError(f"{run_dir}: run.json names no task file; pass --task TASK.yaml")
    path = Path(recorded)
    if not path.is_absolute() and not path.exists():
        # reports/<run>/ usually sits under the folder the run was started from
        beside = run_dir.resolve().parent.parent / recorded
        path = beside if beside.exists() else path
    if not path.exists():
        raise HarnessError(
            f"{run_dir}: the run's task file {recorded} is not here (it is relative to where "
            "the run was started); pass --task TASK.yaml"
        )
    return path
