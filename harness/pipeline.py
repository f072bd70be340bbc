"""The run as one flow: task file -> prompts -> requests -> outputs -> scores -> reports.

``prepare`` does everything that needs no model (and so finds every mistake in a task
before a model loads); ``execute`` generates with a backend and writes the run folder;
``run`` is ``harness run`` whole (the command line and the Python API call it).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import __version__, records, report, runner
from .backend import Backend, Options
from .cache import ResultCache
from .decoding import Setting, expand
from .errors import HarnessError
from .prompts import Prompt, build_prompts
from .records import LIKELIHOOD
from .tasks import LoadedTask, load_task


@dataclass
class Overrides:
    """Command-line choices that replace the task file's."""

    shots: list[int] | None = None
    presets: list[str] | None = None
    seeds: list[int] | None = None
    limit: int | None = None
    model: str | None = None


@dataclass
class Plan:
    task: LoadedTask
    prompts: list[Prompt]
    settings: list[Setting]
    seeds: list[int]
    requests: list[runner.Request]
    options: Options
    model: str

    @property
    def likelihood(self) -> bool:
        """Whether labels are also ranked by log-probability (task ``scoring``)."""
        return self.task.spec.scoring != "generate"

    @property
    def n_outputs(self) -> int:
        return runner.count_outputs(self.requests) + (len(self.prompts) if self.likelihood else 0)

    def describe(self) -> str:
        spec = self.task.spec
        ranked = f" + labels ranked by likelihood ({len(self.prompts)} prompts)"
        if spec.scoring == "likelihood":
            return (
                f"{spec.name}: {len({p.item for p in self.prompts})} items × shots "
                f"{sorted({p.shots for p in self.prompts})}, scoring: likelihood (decoding "
                f"settings not used) → {len(self.prompts)} prompts, {self.n_outputs} outputs"
            )
        return (
            f"{spec.name}: {len({p.item for p in self.prompts})} items × shots "
            f"{sorted({p.shots for p in self.prompts})} × {len(self.settings)} settings "
            f"→ {len(self.requests)} prompts, {self.n_outputs} outputs"
            + (ranked if self.likelihood else "")
        )


def prepare(task: str | Path | LoadedTask, overrides: Overrides | None = None) -> Plan:
    """Load and check a task (a task file, or one loaded already), render every prompt
    and lay out every request."""
    overrides = overrides or Overrides()
    if not isinstance(task, LoadedTask):
        task = load_task(task)
    if overrides.limit is not None:
        if overrides.limit < 1:
            raise HarnessError("--limit must be 1 or more")
        # Without a few-shot file, examples come from the data: the whole of it, so that
        # a limited run's prompts are those of a full run.
        pool = task.pool if task.pool is not None else task.items
        task = task.model_copy(update={"items": task.items[: overrides.limit], "pool": pool})
    spec = task.spec
    shots = overrides.shots if overrides.shots is not None else spec.shots
    if any(k < 0 for k in shots):
        raise HarnessError("--shots takes counts of 0 or more")
    prompts = build_prompts(task, shots)
    try:
        settings = expand(spec.decoding, overrides.presets)
    except HarnessError as exc:
        raise HarnessError(f"{task.path}: {exc}") from None
    if spec.scoring == "likelihood":
        settings = []  # checked above all the same; only the labels' likelihood is scored
    elif spec.scoring == "both" and LIKELIHOOD in {s.name for s in settings}:
        raise HarnessError(
            f"{task.path}: decoding: {LIKELIHOOD!r} names the label ranking of "
            "scoring: both; give your setting another name"
        )
    seeds = overrides.seeds if overrides.seeds is not None else spec.seeds
    options = Options(
        spec.decoding.max_new_tokens, tuple(spec.decoding.stop), tuple(spec.decoding.bad_words)
    )
    requests = runner.plan(prompts, settings, seeds)
    model = overrides.model or spec.model
    return Plan(task, prompts, settings, seeds, requests, options, model)


def new_run_dir(out: Path, name: str) -> Path:
    """reports/<task>-<time>/, created now so that an unwritable folder fails early."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for attempt in range(100):
            run_dir = out / (f"{name}-{stamp}" + (f"-{attempt}" if attempt else ""))
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except OSError as exc:
        raise HarnessError(f"--out {out}: cannot write the report there ({exc.strerror})") from None
    raise HarnessError(f"--out {out}: too many runs of {name} in one second")


def check_writable(out: Path) -> None:
    """Fail before any model loads when the reports folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"--out {out}: cannot write the report there ({exc.strerror})") from None


def check_same_model(run_dir: Path, backend: Backend) -> None:
    earlier = records.read_run(run_dir)
    if earlier.get("model", {}).get("fingerprint") != backend.describe().get("fingerprint"):
        raise HarnessError(
            f"--resume {run_dir}: that run used another model; run without --resume"
        )
    if earlier.get("backend", backend.identity()) != backend.identity():
        raise HarnessError(
            f"--resume {run_dir}: that run used another backend ({earlier['backend']}); "
            "resume it with the same --backend and --device, or run without --resume"
        )


def run_metadata(plan: Plan, backend: Backend, timings: dict[str, float]) -> dict:
    """Everything needed to understand, repeat and re-render the run."""
    import torch
    import transformers

    return {
        "harness_version": __version__,
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "task_path": str(plan.task.path),
        "task": plan.task.spec.model_dump(mode="json"),
        "shots": sorted({p.shots for p in plan.prompts}),
        "items": len({p.item for p in plan.prompts}),
        "settings": [{"name": s.name, "args": s.args} for s in plan.settings]
        + ([{"name": LIKELIHOOD, "args": {"scoring": "likelihood"}}]
           if plan.likelihood else []),
        "seeds": plan.seeds,
        "options": {
            "max_new_tokens": plan.options.max_new_tokens,
            "stop": list(plan.options.stop),
            "bad_words": list(plan.options.bad_words),
        },
        "model": backend.describe(),
        "backend": backend.identity(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "harness": __version__,
        },
        "command": sys.argv,
        "timings": timings,
        "n_outputs": plan.n_outputs,
        "plan_id": plan_id(plan),
    }


def plan_id(plan: Plan) -> str:
    """A digest of everything that decides a run's requests (not the model)."""
    content = {
        "task": plan.task.spec.model_dump(mode="json"),
        "prompts": [[p.item, p.shots, p.text] for p in plan.prompts],
        "settings": [[s.name, s.args] for s in plan.settings],
        "seeds": plan.seeds,
        "options": [plan.options.max_new_tokens, plan.options.stop, plan.options.bad_words],
    }
    text = json.dumps(content, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def latest_run(out: Path, name: str) -> Path:
    """The newest run folder of task ``name`` under ``out`` (for a bare --resume)."""
    runs = sorted(
        (p for p in out.glob(f"{name}-*") if (p / "run.json").exists()),
        key=lambda p: (p / "run.json").stat().st_mtime,
    )
    if not runs:
        raise HarnessError(f"--resume: no earlier run of {name} under {out}")
    return runs[-1]


def finished_records(run_dir: Path, plan: Plan) -> list[records.Record]:
    """The outputs a run folder already holds, checked against the plan.

    A request counts as done only when all its returned sequences are there; partial
    ones (and a line cut short by a crash) are dropped, and samples.jsonl is rewritten
    with what is kept, so that resuming never duplicates a row.
    """
    try:
        earlier = records.read_run(run_dir)
    except (OSError, ValueError):
        raise HarnessError(f"--resume {run_dir}: not a run folder (no readable run.json)") from None
    if earlier.get("plan_id") != plan_id(plan):
        raise HarnessError(
            f"--resume {run_dir}: that run had another task file, data or options; "
            "run without --resume to start afresh"
        )
    path = run_dir / "samples.jsonl"
    found = records.read_samples(path) if path.exists() else []
    expected = {r.id: r.setting.sequences for r in plan.requests}
    if plan.likelihood:
        expected |= {(LIKELIHOOD, None, p.item, p.shots): 1 for p in plan.prompts}
    counts = Counter(records.record_id(r) for r in found)
    kept = [r for r in found if counts[records.record_id(r)] == expected.get(records.record_id(r))]
    records.write_samples(path, kept)
    return kept


def execute(
    plan: Plan,
    backend: Backend,
    run_dir: Path,
    cache: ResultCache | None = None,
    done: list[records.Record] | None = None,
) -> list[records.Record]:
    """Generate every output not in ``done`` into run_dir, then write the reports.

    run.json is written first, so an interrupted run can be resumed; outputs are
    appended to samples.jsonl as they finish.
    """
    from tqdm.auto import tqdm

    done = done or []
    finished = {records.record_id(r) for r in done}
    pending = [r for r in plan.requests if r.id not in finished]
    load_s = backend.describe().get("load_s", 0.0)
    started = time.perf_counter()
    records.write_run(run_dir, run_metadata(plan, backend, {"load_s": load_s}))
    scope = {"model": backend.describe().get("fingerprint", ""), **backend.identity()}
    with (
        (run_dir / "samples.jsonl").open("a", encoding="utf-8") as samples,
        tqdm(total=plan.n_outputs, initial=len(done), unit="out", desc=plan.task.spec.name,
             dynamic_ncols=True) as bar,
    ):
        new = runner.run(plan.task.spec, pending, backend, plan.options, samples, bar.update,
                         cache, scope)
        if plan.likelihood:
            unranked = [p for p in plan.prompts
                        if (LIKELIHOOD, None, p.item, p.shots) not in finished]
            new += runner.rank(plan.task.spec, unranked, backend, samples, bar.update)
    order = records.sort_key([*(s.name for s in plan.settings), LIKELIHOOD])
    made = sorted(done + new, key=order)
    timings = {
        "load_s": load_s,
        "generate_s": round(time.perf_counter() - started, 2),
        "resumed_outputs": len(done),
    }
    run = run_metadata(plan, backend, timings)
    records.write_run(run_dir, run)
    report.write_all(run_dir, run, made)
    return made


# ---------------------------------------------------------------- harness run, whole

LATEST = Path("<latest>")  # resume: the newest run of the task under ``out``


@dataclass
class RunConfig:
    """Everything ``harness run`` takes."""

    task: Path | LoadedTask  # a task file, or a task loaded from a dict or YAML text
    overrides: Overrides = field(default_factory=Overrides)
    backend: str = "auto"  # auto, hf or vllm
    device: str = "auto"
    fast: bool = True  # the transformers backend's speed-ups (False: plain transformers)
    out: Path = Path("reports")
    resume: Path | None = None  # a run folder, or LATEST
    cache: bool = True


@dataclass
class Finished:
    plan: Plan
    run_dir: Path
    records: list[records.Record]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during generation: what is finished is kept in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(config: RunConfig, backend: Backend | None = None) -> Finished:
    """Prepare, load (unless ``backend`` is given), generate, score and report a task.

    A backend opened here is closed before returning; one passed in is left open.
    """
    from . import engines
    from .models import cache_root

    plan = prepare(config.task, config.overrides)
    say(plan.describe())
    engine = engines.choose(config.backend, config.device) if backend is None else backend.name
    engines.check(engine, plan.settings, plan.options)  # before any model loads
    done: list[records.Record] = []
    run_dir = config.resume
    if run_dir is not None:
        if run_dir == LATEST:
            run_dir = latest_run(config.out, plan.task.spec.name)
        done = finished_records(run_dir, plan)
        say(f"resuming {run_dir}: {len(done)} of {plan.n_outputs} outputs done")
    else:
        check_writable(config.out)
    opened = backend is None
    if backend is None:
        backend = engines.open_backend(engine, plan.model, config.device, fast=config.fast)
    try:
        info = backend.describe()
        say(f"model {info.get('name')} on {info.get('device')} ({info.get('dtype')}) with "
            f"{backend.name}, ready in {info.get('load_s', 0.0):.1f} s")
        if run_dir is not None:
            check_same_model(run_dir, backend)
        else:
            run_dir = new_run_dir(config.out, plan.task.spec.name)
        cache = ResultCache(cache_root() / "results.sqlite") if config.cache else None
        try:
            made = execute(plan, backend, run_dir, cache, done)
        except KeyboardInterrupt:
            raise Interrupted(run_dir) from None
        finally:
            if cache:
                cache.close()
    finally:
        if opened:
            backend.close()
    return Finished(plan, run_dir, made)
