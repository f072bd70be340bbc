"""A model as judge of a finished run (``harness judge``, and ``harness rescore`` when the
task names a judge): no generating model needed, only the outputs and the judge.

Pointwise, the judge reads the task's rubric rendered for each output and answers with
a point of the rating scale. Pairwise, it reads two settings' outputs for the same item
and shot count (each cell's first output) and answers A, B or tie; every pair is asked
in both orders, so that a judge that favours the first position shows it, and the two
answers count as two judgements. Replies are read by rule (scoring/judges.py); a reply
that cannot be read is kept and counted, never scored.

Every question and reply goes to judge.jsonl at once, keyed by the judge's fingerprint
and the prompt, so an interrupted judging resumes where it stopped and a repeated one
asks nothing twice. The judge answers greedily, up to the rubric's max_new_tokens
(a small base model often starts its answer on a new line, so no stop string cuts it).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import records
from harness.common import files
from harness.engines import registry
from harness.engines.contract import Options
from harness.errors import HarnessError
from harness.records import Record, judged
from harness.reports import report
from harness.runs.folders import _task_path
from harness.scoring import judges
from harness.scoring.ratings import Scale, output_key
from harness.tasks.decoding import Setting
from harness.tasks.sandbox import compile_template, render
from harness.tasks.spec import JudgeSpec, LoadedTask, load_task

if TYPE_CHECKING:
    from harness.engines.contract import Backend

BATCH = 16  # judge prompts per generate call, at most


@dataclass
class Judged:
    asked: int  # questions the judging needed
    new: int  # of them, put to the model now (the others were in judge.jsonl)
    unparsed: int  # replies the rules could not read
    model: str


def judge_run(run_dir: str | Path, task_path: str | Path | None = None,
              model: str | None = None, backend: Backend | None = None,
              device: str = "auto", progress: Callable[[int, int], None] | None = None
              ) -> Judged:
    """Judge a run's outputs as its task's ``judge`` says, then render the report again.
    ``backend`` (a loaded judge) is used as is; else ``model`` (or the task's) is loaded,
    and only when a question is not in judge.jsonl yet. ``progress(done, todo)`` is
    called after each batch."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: no such run folder")
    with files.locked(run_dir, f"judge {run_dir}"):
        return _judge_run(run_dir, task_path, model, backend, device, progress)


def _judge_run(run_dir: Path, task_path: str | Path | None, model: str | None,
               backend: Backend | None, device: str,
               progress: Callable[[int, int], None] | None) -> Judged:
    run, found = records.load_run(run_dir)
    task = load_task(Path(task_path) if task_path else _task_path(run, run_dir))
    spec = task.spec.judge
    if spec is None:
        raise HarnessError(f"{task.path}: the task has no judge (add judge: with a rubric)")
    questions = _questions(task, spec, run, found)
    name = model or (str(backend.describe().get("name")) if backend is not None else spec.model)
    known = {line["id"]: line for line in judged.read_judge(run_dir)}
    opened: list[Backend] = [backend] if backend is not None else []

    def judge_backend() -> Backend:
        if not opened:
            opened.append(registry.open_backend(registry.choose("auto", device), name, device))
        return opened[0]

    fingerprint = _fingerprint(name, backend)
    todo = []
    for question in questions:
        question["id"] = _digest(fingerprint, question["prompt"], spec.max_new_tokens)
        question["judge"] = name
        if question["id"] not in known:
            todo.append(question)
    try:
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            replies = judge_backend().generate(
                [q["prompt"] for q in batch], Setting("greedy"), [None] * len(batch),
                Options(max_new_tokens=spec.max_new_tokens))
            for question, reply in zip(batch, replies, strict=True):
                question["reply"] = reply[0].text
                question["read"] = judges.read(question["mode"], reply[0].text,
                                               Scale.of(run).points)
            judged.append_judge(run_dir, batch)
            if progress is not None:
                progress(start + len(batch), len(todo))
    finally:
        if backend is None and opened:
            opened[0].close()
    lines = {line["id"]: line for line in judged.read_judge(run_dir)}
    points = Scale.of(run).points
    unparsed = sum(1 for q in questions if q["id"] not in lines or judges.read(
        q["mode"], lines[q["id"]].get("reply", ""), points) is None)
    run["judge"] = {"model": name, "fingerprint": fingerprint, "mode": spec.mode,
                    "ids": [q["id"] for q in questions]}
    records.write_run(run_dir, run)
    report.write_all(run_dir, run, found)
    return Judged(len(questions), len(todo), unparsed, name)


def _fingerprint(name: str, backend: Backend | None) -> str:
    """What names the judge in the cache: its weights' fingerprint where known."""
    if backend is not None:
        return str(backend.describe().get("fingerprint") or backend.describe().get("name"))
    return name


def _digest(fingerprint: str, prompt: str, max_new_tokens: int) -> str:
    return hashlib.sha256(f"{fingerprint}\x00{max_new_tokens}\x00{prompt}".encode()
                          ).hexdigest()[:32]


def _questions(task: LoadedTask, spec: JudgeSpec, run: dict[str, Any], found: list[Record]
               ) -> list[dict[str, Any]]:
    """Every question the judging asks, with its rendered prompt."""
    where = f"{task.path}: judge.rubric"
    rubric = compile_template(spec.rubric, where)
    scale = Scale.of(run)
    common = {"scale": " / ".join(scale.points), "criteria": ", ".join(scale.criteria)}

    def context(record: Record) -> dict[str, Any]:
        item = task.items[record["item"]] if record["item"] < len(task.items) else {}
        refs = record.get("references") or []
        return {**item, **common, "prompt": record["prompt"],
                "reference": refs[0] if refs else ""}

    if spec.mode == "pointwise":
        return [{"mode": "pointwise", "key": list(output_key(r)),
                 "prompt": render(rubric, {**context(r), "output": r["output"]}, where)}
                for r in found]
    firsts: dict[tuple[int, int], dict[str, Record]] = {}
    for record in found:  # each cell's first output, per item and shot count
        firsts.setdefault((record["item"], record["shots"]), {}).setdefault(
            record["setting"], record)
    out = []
    for cells in firsts.values():
        for a, b in itertools.combinations(cells.values(), 2):
            for first, second, order in ((a, b, "ab"), (b, a, "ba")):
                prompt = render(rubric, {**context(first), "output_a": first["output"],
                                         "output_b": second["output"]}, where)
                out.append({"mode": "pairwise", "a": list(output_key(a)),
                            "b": list(output_key(b)), "order": order, "prompt": prompt})
    return out
