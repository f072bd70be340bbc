"""The run as one flow: task file -> prompts -> requests -> outputs -> scores -> reports.

``prepare`` does everything that needs no model (and so finds every mistake in a task
before a model loads); ``execute`` generates with a backend and writes the run folder;
``run`` is ``harness run`` whole (the command line and the Python API call it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import records
from harness.common import files
from harness.common.version import __version__
from harness.engines.contract import Backend, ModelInfo, Options, Parallel
from harness.errors import HarnessError
from harness.records import LIKELIHOOD
from harness.reports import report
from harness.runs import runner
from harness.runs.cache import ResultCache, open_cache
from harness.runs.cache import scope as cache_scope
from harness.scoring.summary import Summary
from harness.tasks import chat, context
from harness.tasks.decoding import Setting, expand
from harness.tasks.prompts import Prompt, build_prompts, item_digest
from harness.tasks.spec import LoadedTask, load_task, seed_problem, shots_problem


@dataclass
class Overrides:
    """Command-line choices that replace the task file's."""

    shots: list[int] | None = None
    presets: list[str] | None = None
    seeds: list[int] | None = None
    limit: int | None = None
    model: str | None = None
    chat: str | None = None  # none, turns or single (--chat)
    tokenizer: Any = None  # a loaded model's, for its chat template (else --model's is read)


@dataclass
class Plan:
    task: LoadedTask
    prompts: list[Prompt]
    settings: list[Setting]
    seeds: list[int]
    requests: list[runner.Request]
    options: Options
    model: str
    chat: str = "none"  # how the prompts went through the model's chat template
    cuts: list[context.Cut] = field(default_factory=list)  # prompts cut to fit the context

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
    if overrides.shots is not None and (problem := shots_problem(overrides.shots)):
        raise HarnessError(f"--shots: {problem}")
    if overrides.seeds is not None and (problem := seed_problem(overrides.seeds)):
        raise HarnessError(f"--seed: {problem}")
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
    model = overrides.model or spec.model
    mode = overrides.chat or spec.chat
    if mode != "none":
        from harness.engines.models import load_tokenizer

        tokenizer = overrides.tokenizer if overrides.tokenizer is not None else load_tokenizer(model)
        prompts = chat.templated(task, prompts, mode, tokenizer, model, shots)
    requests = runner.plan(prompts, settings, seeds)
    return Plan(task, prompts, settings, seeds, requests, options, model, mode)


def fit_to_context(plan: Plan, count: context.Count, limit: int | None) -> Plan:
    """The plan with every prompt checked against the model's context of ``limit``
    tokens: refused, or cut from the left where the task says ``too_long: cut_left``."""
    room = max([s.args.get("max_new_tokens", plan.options.max_new_tokens)
                for s in plan.settings], default=0)
    if plan.likelihood:  # the longest label (or choice) follows the prompt
        follow = set(plan.task.spec.labels or []) | {c for p in plan.prompts for c in p.choices}
        room = max(room, max(count([f" {label}" for label in sorted(follow)]), default=0))
    prompts, cuts = context.fit(plan.prompts, count, limit, room,
                                plan.task.spec.too_long == "cut_left", str(plan.task.path),
                                chat=plan.chat != "none")
    if not cuts:
        return plan
    requests = runner.plan(prompts, plan.settings, plan.seeds)
    return dataclasses.replace(plan, prompts=prompts, requests=requests, cuts=cuts)


def fit_without_weights(plan: Plan) -> Plan:
    """``fit_to_context`` with the model's tokenizer and config alone (``validate
    --model``); a model whose config is not at hand (a .gguf file) is not checked."""
    from harness.engines.models import context_length, load_config, load_tokenizer
    from harness.engines.tokens import prompt_ids

    config = load_config(plan.model)
    if config is None:
        return plan
    tokenizer = load_tokenizer(plan.model)
    return fit_to_context(plan, lambda texts: [len(ids) for ids in prompt_ids(tokenizer, texts)],
                          context_length(config))


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
        files.probe(out)
    except OSError as exc:
        raise HarnessError(
            f"--out {out}: cannot write the report there ({files.reason(exc)})"
        ) from None


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


def run_metadata(plan: Plan, backend: Backend, timings: dict[str, float]) -> dict[str, Any]:
    """Everything needed to understand, repeat and re-render the run."""
    import torch
    import transformers

    return {
        "harness_version": __version__,
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "task_path": str(plan.task.path),
        "task": plan.task.spec.model_dump(mode="json"),
        "data": plan.task.sources,  # a Hub dataset's name, revision and fingerprint
        "shots": sorted({p.shots for p in plan.prompts}),
        "items": len({p.item for p in plan.prompts}),
        # each item's content (fields and references): compare pairs runs' items by it
        "item_digests": item_digests(plan),
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
        "chat": plan.chat,
        "cut_prompts": [cut.record() for cut in plan.cuts],
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


def item_digests(plan: Plan) -> list[str]:
    """``prompts.item_digest`` of each item the plan asks about, in item order."""
    references = {p.item: p.references for p in plan.prompts}
    return [item_digest(plan.task.items[i], references[i]) for i in sorted(references)]


def plan_id(plan: Plan) -> str:
    """A digest of everything that decides a run's requests (not the model)."""
    content = {
        "task": plan.task.spec.model_dump(mode="json"),
        "prompts": [[p.item, p.shots, p.text, *p.choices] for p in plan.prompts],
        "settings": [[s.name, s.args] for s in plan.settings],
        "seeds": plan.seeds,
        "options": [plan.options.max_new_tokens, plan.options.stop, plan.options.bad_words],
    }
    if plan.task.sources:  # a Hub dataset's name, revision and fingerprint
        content["data"] = plan.task.sources
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


def earlier_records(run_dir: Path, plan: Plan) -> list[records.Record]:
    """The records a run folder holds, once it is known to be a run of this plan.

    Damaged lines (cut short, not UTF-8, not records) are left out, with a note.
    """
    try:
        earlier = records.read_run(run_dir)
    except (OSError, ValueError):
        raise HarnessError(f"--resume {run_dir}: not a run folder (no readable run.json)") from None
    if not isinstance(earlier, dict) or earlier.get("plan_id") != plan_id(plan):
        raise HarnessError(
            f"--resume {run_dir}: that run had another task file, data or options; "
            "run without --resume to start afresh"
        )
    path = run_dir / "samples.jsonl"
    try:
        found, skipped = records.scan_samples(path) if path.exists() else ([], 0)
    except OSError as exc:
        raise HarnessError(f"--resume {path}: cannot read it ({files.reason(exc)})") from None
    if skipped:
        say(f"note: {path}: {skipped} damaged line(s) left out (cut short, not UTF-8, or "
            "not an output); their requests run again")
    return found


def kept_records(
    found: list[records.Record], plan: Plan, batches: list[list[runner.Request]]
) -> list[records.Record]:
    """What a resumed run keeps of ``found``: the records of batches that are there
    whole (``runner.done_batches``), so that what runs again forms the same batches as
    an uninterrupted run did. A request's partial outputs, a half-written batch and
    duplicated lines are dropped."""
    done = runner.done_batches(found, batches)
    if plan.likelihood:
        done |= runner.done_chunks(found, plan.prompts)
    return [r for r in found if records.record_id(r) in done]


def execute(plan: Plan, backend: Backend, run_dir: Path, *rest: Any,
            **named: Any) -> list[records.Record]:
    """``executed``, for a caller that wants only the records."""
    return executed(plan, backend, run_dir, *rest, **named)[0]


def executed(
    plan: Plan,
    backend: Backend,
    run_dir: Path,
    cache: ResultCache | None = None,
    done: list[records.Record] | None = None,
    batches: list[list[runner.Request]] | None = None,
    tally: runner.Tally | None = None,
) -> tuple[list[records.Record], Summary]:
    """Generate every output not in ``done`` into run_dir, then write the reports: the
    run's records and the summary the reports show, made once for all who show it.

    run.json is written first, so an interrupted run can be resumed; outputs are
    appended to samples.jsonl a batch at a time. ``done`` holds whole batches (see
    ``kept_records``); ``batches`` is ``runner.layout`` of the whole plan. run.json's
    timings say how many outputs a resume kept and how many the result cache gave
    (``tally`` counts them).
    """
    from tqdm.auto import tqdm

    done = done or []
    tally = tally if tally is not None else runner.Tally()
    finished = {records.record_id(r) for r in done}
    batches = batches if batches is not None else runner.layout(plan.requests, backend)
    info = backend.describe()
    load_s = info.get("load_s", 0.0)
    started = time.perf_counter()
    records.write_run(run_dir, run_metadata(plan, backend, {"load_s": load_s}))
    scope = cache_scope(info.get("fingerprint"), backend.identity())
    with (
        (run_dir / "samples.jsonl").open("a", encoding="utf-8") as samples,
        tqdm(total=plan.n_outputs, initial=len(done), unit="out", desc=plan.task.spec.name,
             dynamic_ncols=True) as bar,
    ):
        new = runner.run(plan.task.spec, plan.requests, backend, plan.options, samples,
                         bar.update, cache, scope, finished, batches, tally=tally)
        if plan.likelihood:
            new += runner.rank(plan.task.spec, plan.prompts, backend, samples, bar.update,
                               done=finished)
    order = records.sort_key([*(s.name for s in plan.settings), LIKELIHOOD])
    made = sorted(done + new, key=order)
    timings = {
        "load_s": load_s,
        "generate_s": round(time.perf_counter() - started, 2),
        "resumed_outputs": len(done),
        "cached_outputs": tally.cached,
    }
    run = run_metadata(plan, backend, timings)
    records.write_run(run_dir, run)
    summary = report.write_all(run_dir, run, made)
    if summary.signatures:  # how each corpus metric was computed, to reproduce it
        records.write_run(run_dir, run | {"signatures": summary.signatures})
    return made, summary


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
    parallel: Parallel = field(default_factory=Parallel)  # vLLM: tensor/data parallel, Ray
    out: Path = Path("reports")
    resume: Path | None = None  # a run folder, or LATEST
    cache: bool = True
    python: bool = False  # called from Python (harness.run): errors say how to resume there


@dataclass
class Finished:
    plan: Plan
    run_dir: Path
    records: list[records.Record]
    summary: Summary  # the one the reports show: the console and the API show it too
    cached: int | None = None  # outputs the result cache gave; None: no cache was used


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during generation: what is finished is kept in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(config: RunConfig, backend: Backend | None = None) -> Finished:
    """Prepare, load (unless ``backend`` is given), generate, score and report a task.

    A backend opened here is closed before returning; one passed in is left open. The
    run folder is locked while the run writes it. A run that fails leaves no empty run
    folder behind; one that fails after finishing some outputs keeps them, and its error
    says how to resume.
    """
    from harness.engines import registry

    plan = prepare(config.task, config.overrides)
    say(plan.describe())
    engine = registry.choose(config.backend, config.device) if backend is None else backend.name
    # before any model loads; a backend given loaded answers for its own class
    registry.check(registry.engine(engine) if backend is None else type(backend),
                   plan.settings, plan.options)
    with contextlib.ExitStack() as stack:
        resumed = _claim_resumed(config, plan, stack)
        cache = _open_result_cache(config, stack)
        if backend is None:
            backend = registry.open_backend(engine, plan.model, config.device, fast=config.fast,
                                           parallel=config.parallel)
            stack.callback(backend.close)
        info = backend.describe()
        cache = _ready(plan, backend, info, cache)
        plan = _fitted(plan, backend, info)
        batches = runner.layout(plan.requests, backend)
        run_dir, done = _run_dir(config, plan, backend, batches, resumed, stack)
        tally = runner.Tally()
        try:
            made, summary = executed(plan, backend, run_dir, cache, done, batches, tally)
        except KeyboardInterrupt:
            raise Interrupted(run_dir) from None
        except BaseException as exc:
            raise _failed(config, plan, batches, run_dir, resumed is None, exc) from None
    return Finished(plan, run_dir, made, summary,
                    tally.cached if cache is not None else None)


def _claim_resumed(config: RunConfig, plan: Plan, stack: contextlib.ExitStack) -> Path | None:
    """The run folder ``--resume`` names, locked and known writable; without --resume,
    None once the reports folder is known writable (both before any model loads)."""
    run_dir = config.resume
    if run_dir is None:
        check_writable(config.out)
        return None
    if run_dir == LATEST:
        run_dir = latest_run(config.out, plan.task.spec.name)
    what = f"--resume {run_dir}"
    if not (run_dir / "run.json").is_file():
        raise HarnessError(f"{what}: not a run folder (no readable run.json)")
    stack.enter_context(files.locked(run_dir, what))
    try:
        files.probe(run_dir)
    except OSError as exc:
        raise HarnessError(f"{what}: cannot write there ({files.reason(exc)})") from None
    return run_dir


def _open_result_cache(config: RunConfig, stack: contextlib.ExitStack) -> ResultCache | None:
    """The result cache (closed with ``stack``), unless the run is told not to use it or
    none can be had."""
    from harness.engines.models import cache_root

    cache = open_cache(cache_root() / "results.sqlite") if config.cache else None
    if cache is not None:
        stack.callback(cache.close)
    return cache


def _ready(plan: Plan, backend: Backend, info: ModelInfo,
           cache: ResultCache | None) -> ResultCache | None:
    """Say which model is ready, and what of it matters; the cache to use, which is none
    for a model whose files cannot be identified (its key would not tell models apart)."""
    say(f"model {info.get('name')} on {info.get('device')} ({info.get('dtype')}) with "
        f"{backend.name}, ready in {info.get('load_s', 0.0):.1f} s")
    if cache is not None and not info.get("fingerprint"):
        say("harness: warning: the model's files or hub revision cannot be identified, "
            "so the result cache is not used for this run")
        cache.close()
        cache = None
    if plan.chat == "none" and info.get("chat_template"):
        say(chat.PLAIN_NOTE)
    return cache


def _fitted(plan: Plan, backend: Backend, info: ModelInfo) -> Plan:
    """The plan fitted to the model's context, saying which prompts were cut."""
    plan = fit_to_context(plan, backend.count_tokens, info.get("context_length"))
    for cut in plan.cuts:
        say(f"cut item {cut.item + 1} ({cut.shots} shots) from the left: {cut.tokens} "
            f"tokens -> {cut.kept}, to fit the model's context (too_long: cut_left)")
    return plan


def _run_dir(config: RunConfig, plan: Plan, backend: Backend,
             batches: list[list[runner.Request]], resumed: Path | None,
             stack: contextlib.ExitStack) -> tuple[Path, list[records.Record]]:
    """Where the run writes, locked, and the outputs it has already: a resumed folder's
    whole batches (after the cuts: they are part of what the earlier run was asked), or
    a new folder and none."""
    if resumed is None:
        run_dir = new_run_dir(config.out, plan.task.spec.name)
        stack.enter_context(files.locked(run_dir, f"--out {run_dir}"))
        return run_dir, []
    found = earlier_records(resumed, plan)
    check_same_model(resumed, backend)
    done = kept_records(found, plan, batches)
    _rewrite_samples(resumed, done, found)
    say(f"resuming {resumed}: {len(done)} of {plan.n_outputs} outputs done")
    return resumed, done


def _rewrite_samples(run_dir: Path, kept: list[records.Record],
                     found: list[records.Record]) -> None:
    """samples.jsonl with only what a resumed run keeps (untouched when that is all)."""
    path = run_dir / "samples.jsonl"
    if len(kept) == len(found) and (not path.exists() or _clean(path)):
        return
    try:
        records.write_samples(path, kept)
    except OSError as exc:
        raise HarnessError(
            f"--resume {run_dir}: cannot write there ({files.reason(exc)})"
        ) from None


def _clean(path: Path) -> bool:
    """Whether every line of a samples.jsonl is a record (nothing to repair)."""
    return records.scan_samples(path)[1] == 0


def _failed(config: RunConfig, plan: Plan, batches: list[list[runner.Request]], run_dir: Path,
            fresh: bool, exc: BaseException) -> BaseException:
    """What a run that stopped on ``exc`` raises, after tidying its run folder: a new
    folder with no whole batch of outputs in it is removed (a resume would make them all
    again); otherwise the error says how many outputs a resume keeps, and how."""
    samples = run_dir / "samples.jsonl"
    try:
        found = records.scan_samples(samples)[0] if samples.exists() else []
    except OSError:
        found = []
    kept = kept_records(found, plan, batches)
    if fresh and not kept:
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            return HarnessError(f"--out {run_dir.parent}: cannot write the run there "
                                f"({files.reason(exc)}); nothing was kept")
        return exc
    resume = (f'harness.run(task, resume="{run_dir}")' if config.python
              else f"harness run {config.task} --resume {run_dir}")
    if isinstance(exc, HarnessError):
        return HarnessError(f"{exc} (the {len(kept)} outputs finished so far are kept in "
                            f"{run_dir}; {resume} finishes the run)")
    if not isinstance(exc, OSError):
        return exc
    fix = "free some space" if files.disk_full(exc) else "once it can be written"
    return HarnessError(
        f"{run_dir}: cannot write the run ({files.reason(exc)}); the {len(kept)} outputs "
        f"finished so far are kept there: {fix}, then resume with: {resume}"
    )
