"""The ``harness`` command. A user's mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from harness.common.version import __version__
from harness.engines import registry
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.records import Record

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
LATEST = Path("<latest>")  # --resume with no folder named (pipeline.LATEST)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line as one line like any other."""

    def error(self, message: str) -> NoReturn:
        raise HarnessError(f"{message} (see {self.prog} --help)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    restore = _terminate_as_interrupt()
    try:
        args = parser.parse_args(argv)
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `harness preview ... | head` closed the pipe: nothing to say
        # Python flushes stdout once more at exit; point it at /dev/null so that the
        # closed pipe does not print a traceback then.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        restore()


def _terminate_as_interrupt() -> Callable[[], object]:
    """SIGTERM (``kill``, a scheduler stopping a job) ends a command as Ctrl-C does: the
    finished outputs are kept and a serving engine's processes are shut down. Returns
    what puts the earlier handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    earlier = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, earlier)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness", description="Evaluate prompts on causal language models."
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a task and write its report")
    run.add_argument("task", type=Path, help="the task file (YAML)")
    run.add_argument("--model", help="default, a model folder, a .gguf file or a hub id")
    run.add_argument("--limit", type=int, metavar="N", help="only the first N items")
    run.add_argument("--shots", type=_int_list, metavar="0,1,3", help="shot counts")
    run.add_argument("--presets", type=_str_list, metavar="a,b", help="presets instead of the task's settings")
    run.add_argument("--seed", type=_seed_list, metavar="S", help="seed(s) for sampled settings")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    run.add_argument("--backend", default="auto", choices=registry.NAMES,
                     help="transformers (hf) or vLLM; auto: vLLM where CUDA and vLLM are there")
    run.add_argument("--plain", action="store_true",
                     help="transformers' own generate, without the harness's speed-ups")
    _add_chat(run)
    _add_parallel(run)
    _add_server(run)
    run.add_argument("--scoring", choices=["generate", "likelihood", "both"],
                     help="instead of the task's scoring (likelihood: labels ranked by "
                     "log-probability)")
    run.add_argument("--out", type=Path, default=Path("reports"), help="where run folders go")
    run.add_argument(
        "--resume", nargs="?", type=Path, const=LATEST, metavar="RUN_DIR",
        help="finish an interrupted run (default: the newest run of this task under --out)",
    )
    run.add_argument("--no-cache", action="store_true", help="neither read nor fill the result cache")
    run.set_defaults(command=cmd_run)

    validate = sub.add_parser("validate", help="check task files without loading a model")
    validate.add_argument("tasks", type=Path, nargs="+")
    validate.add_argument("--model", help="also check the prompts against this model's context "
                          "(its tokenizer and config; no weights load)")
    _add_chat(validate)
    validate.set_defaults(command=cmd_validate)

    bench = sub.add_parser(
        "bench", help="time the runner against the lessons' one-call-per-prompt loop"
    )
    bench.add_argument("--task", default=str(TASKS_DIR / "emotion.yaml"), help="task file")
    bench.add_argument("--model", default="default")
    bench.add_argument("--presets", type=_str_list, default=["greedy", "beam", "top_p"])
    bench.add_argument("--shots", type=_int_list, default=[0, 1, 3])
    bench.add_argument("--sample", type=int, default=16, help="prompts the loop is timed on, per setting")
    bench.add_argument("--tokens", type=int, default=32, help="new tokens per output")
    bench.add_argument("--limit", type=int, metavar="N", help="only the first N items")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--quick", action="store_true", help="greedy only, 8 items, 0/1 shots, 16 tokens")
    bench.add_argument("--json", action="store_true", help="also print the figures as JSON, last line")
    bench.add_argument("--backend", default="hf", choices=[*registry.ENGINES, "both"],
                       help="the engine(s) timed: transformers (default), vLLM, or both side by side")
    bench.add_argument("--raw-vllm", action="store_true",
                       help="also time vLLM's own LLM.generate on the same prompts (a second engine, after)")
    _add_parallel(bench)
    bench.set_defaults(command=cmd_bench)

    doctor = sub.add_parser(
        "doctor", help="what this machine has, both engines checked against each other and timed"
    )
    doctor.add_argument("--model", default="default")
    doctor.add_argument("--limit", type=int, default=4, metavar="N", help="items per task")
    doctor.add_argument("--presets", type=_str_list, help="only these of the tasks' presets")
    doctor.add_argument("--device", default="auto")
    doctor.add_argument("--no-raw", action="store_true",
                        help="leave out vLLM's own LLM.generate (a second engine)")
    _add_parallel(doctor)
    doctor.set_defaults(command=cmd_doctor)

    _add_finetune(sub)
    _add_authoring(sub)
    _add_review(sub)
    _add_judgement(sub)

    listing = sub.add_parser("list", help="list the shipped tasks and the presets")
    listing.set_defaults(command=cmd_list)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runs import pipeline

    config = pipeline.RunConfig(
        task=args.task,
        overrides=pipeline.Overrides(
            shots=args.shots, presets=args.presets, seeds=args.seed, limit=args.limit,
            model=args.model, chat=args.chat, chat_args=_chat_args(args) or None,
            scoring=args.scoring,
        ),
        backend=args.backend, device=args.device, fast=not args.plain, out=args.out,
        parallel=_parallel(args), server=_server(args),
        resume=pipeline.LATEST if args.resume == LATEST else args.resume,
        cache=not args.no_cache,
    )
    try:
        done = pipeline.run(config)
    except pipeline.Interrupted as stop:
        print(
            f"\nharness: interrupted; finished outputs are kept in {stop.run_dir}\n"
            f"resume with: harness run {args.task} --resume {stop.run_dir}",
            file=sys.stderr,
        )
        return 130
    from harness.reports.tables import text

    print(text(done.summary))
    if done.cached is not None:
        print(f"{done.cached} of {done.plan.n_outputs} outputs from the result cache")
    print(f"report: {done.run_dir / 'index.html'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from harness.tools.bench import format_table, run_bench

    if args.quick:
        args.presets, args.shots, args.limit, args.tokens, args.sample = ["greedy"], [0, 1], 8, 16, 8
    backends = ("hf", "vllm") if args.backend == "both" else (args.backend,)
    for name in {*backends, *(["vllm"] if args.raw_vllm else [])}:
        missing = registry.engine(name).available()
        if missing:
            raise HarnessError(missing)
    figures = run_bench(
        args.task, args.model, args.presets, args.shots, args.sample, args.tokens,
        args.limit, args.device, backends=backends, raw_vllm=args.raw_vllm,
        parallel=_parallel(args),
    )
    print(format_table(figures))
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    return 0


def _add_server(parser: argparse.ArgumentParser) -> None:
    """--backend openai: a model behind an OpenAI-compatible server."""
    parser.add_argument("--base-url", metavar="URL",
                        help="openai: the server's API, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                        help="openai: the environment variable holding the key "
                        "(default OPENAI_API_KEY; none needed for a local server)")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N",
                        help="openai: requests in flight at once (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="openai: seconds one request may take (default 120)")
    parser.add_argument("--thinking-budget", type=int, metavar="N",
                        help="openai: reasoning tokens at most, where the server takes it (vLLM)")
    parser.add_argument("--chat-arg", type=_chat_arg, action="append", metavar="KEY=VALUE",
                        help="a chat template argument, e.g. enable_thinking=false "
                        "(repeatable; the value is read as YAML)")


def _chat_arg(text: str) -> dict[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. enable_thinking=false")
    return {key.strip(): yaml.safe_load(value)}


def _chat_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for one in args.chat_arg or [] for k, v in one.items()}


def _server(args: argparse.Namespace) -> Any:
    """The server of --backend openai (None for the other engines)."""
    from harness.engines.contract import Server

    chat_args = _chat_args(args)
    if args.backend != "openai":
        given = [name for name, value in (("--base-url", args.base_url),
                                          ("--thinking-budget", args.thinking_budget))
                 if value is not None]
        if given:
            raise HarnessError(f"{given[0]} is for --backend openai")
        return None
    return Server(base_url=args.base_url or Server.base_url, api_key_env=args.api_key_env,
                  concurrency=args.concurrency, timeout=args.timeout, chat_args=chat_args,
                  thinking_budget=args.thinking_budget)


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness.tools.doctor import format_report, run_doctor

    figures = run_doctor(args.model, args.limit, args.presets, device=args.device,
                         raw=not args.no_raw, parallel=_parallel(args))
    print(format_report(figures))
    return 1 if figures["failed"] else 0


def _add_parallel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tensor-parallel", type=int, default=1, metavar="N",
                        help="vLLM: split the model over N GPUs")
    parser.add_argument("--data-parallel", type=int, default=1, metavar="N",
                        help="vLLM: N copies of the model, sharing the requests")
    parser.add_argument("--ray", action="store_true",
                        help="vLLM: run on the Ray cluster this machine belongs to (several machines)")


def _parallel(args: argparse.Namespace) -> Any:
    from harness.engines.contract import Parallel

    return Parallel(args.tensor_parallel, args.data_parallel, args.ray)


def _add_finetune(sub: argparse._SubParsersAction[_Parser]) -> None:
    tune = sub.add_parser(
        "finetune", help="fine-tune a model on question/answer pairs (the lessons' chit-chat)"
    )
    tune.add_argument("--model", default="default", help="default, a folder, .gguf or hub id")
    tune.add_argument("--data", type=Path, required=True, help="CSV, TSV, JSONL, .xlsx or .parquet of pairs")
    tune.add_argument("--out", type=Path, required=True, help="the folder to write the model to")
    tune.add_argument("--question-column", default="Q", metavar="NAME", help="default Q")
    tune.add_argument("--answer-column", default="A", metavar="NAME", help="default A")
    tune.add_argument("--epochs", type=int, default=3, help="default 3")
    tune.add_argument("--lr", type=float, default=1e-4, help="AdamW's learning rate; default 1e-4")
    tune.add_argument("--batch-size", type=int, default=4, help="default 4")
    tune.add_argument("--max-length", type=int, default=128, help="tokens per pair; default 128")
    tune.add_argument("--seed", type=int, default=42, help="for the split, the order, dropout")
    tune.add_argument("--val-share", type=float, default=0.1, help="pairs held out; default 0.1")
    tune.add_argument("--answer-only", action="store_true", help="no loss on the question")
    tune.add_argument("--query-template", metavar="JINJA", help="question, bos, eos; default "
                      "'{{ bos }}{{ question }}{{ eos }}{{ bos }}'")
    tune.add_argument("--answer-template", metavar="JINJA", help="answer, bos, eos; default "
                      "'{{ answer }}{{ eos }}'")
    tune.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    tune.add_argument("--force", action="store_true", help="replace --out if it exists")
    tune.set_defaults(command=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from harness.tools import finetune

    defaults = {
        "query_template": finetune.DEFAULT_QUERY, "answer_template": finetune.DEFAULT_ANSWER
    }
    options = {k: v for k, v in vars(args).items() if k != "command"}
    options |= {k: options[k] or v for k, v in defaults.items()}
    result = finetune.finetune(finetune.Config(**options))
    losses = result.record["losses"]
    val = losses["validation"]
    shown = f"; validation loss {val[0]:.4f} -> {val[-1]:.4f}" if val[0] is not None else ""
    print(f"saved {result.out} (train loss {losses['train'][-1]:.4f}{shown})")
    print(f"chart: {result.out / 'loss.svg'}")
    print(f"its prompts: prompt.query: {result.record['format']['task_query']!r}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.runs import pipeline

    failed = 0
    for path in args.tasks:
        try:
            plan = pipeline.prepare(path, pipeline.Overrides(model=args.model, chat=args.chat))
            if args.model:
                plan = pipeline.fit_without_weights(plan)
        except HarnessError as exc:
            failed += 1
            print(f"harness: error: {exc}", file=sys.stderr)
            continue
        names = ", ".join(s.name for s in plan.settings)
        if any(s.sampled for s in plan.settings):
            names += f"; seeds {', '.join(map(str, plan.seeds))}"
        print(f"ok  {path}  {plan.describe()}  [{names}]")
        for cut in plan.cuts:
            print(f"    item {cut.item + 1} ({cut.shots} shots) is cut from the left to fit "
                  f"{plan.model}: {cut.tokens} tokens -> {cut.kept}")
    return 2 if failed else 0


def _add_chat(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chat", nargs="?", const="turns", choices=["none", "turns", "single"],
        help="send prompts through the model's chat template: turns (bare --chat; "
        "instruction, examples and query as turns) or single (one user turn); none: plain",
    )


def cmd_list(args: argparse.Namespace) -> int:
    from harness.scoring.metrics import KINDS, METRICS
    from harness.tasks.decoding import PRESETS
    from harness.tasks.spec import load_spec, load_task

    print("tasks:")
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        try:
            spec = load_task(path).spec
            print(f"  {path.name:<20} {spec.kind:<15} {spec.description}")
        except HarnessError as exc:
            print(f"  {path.name:<20} (invalid: {exc})")
    # benchmarks read Hub data: named here from their files alone, no download
    benchmarks = sorted((TASKS_DIR / "benchmarks").glob("*.yaml"))
    if benchmarks:
        print("benchmarks (tasks/benchmarks/, data from the Hugging Face Hub):")
    for path in benchmarks:
        try:
            spec = load_spec(path)
            print(f"  {path.name:<32} {spec.kind:<15} {spec.description}")
        except HarnessError as exc:
            print(f"  {path.name:<32} (invalid: {exc})")
    print("presets:")
    for name, args_ in PRESETS.items():
        shown = ", ".join(f"{k}={v}" for k, v in args_.items()) or "(transformers' defaults)"
        print(f"  {name:<18} {shown}")
    print("metrics (kinds; ↑ higher or ↓ lower is better):")
    for metric in METRICS:
        if not metric.count:
            way = " " if metric.higher is None else "↑" if metric.higher else "↓"
            kinds = "every kind" if metric.kinds == KINDS else ", ".join(metric.kinds)
            print(f"  {metric.name:<12} {way} {kinds:<28} {metric.help}")
    return 0


def _add_authoring(sub: argparse._SubParsersAction[_Parser]) -> None:
    preview = sub.add_parser(
        "preview", help="print a task's prompts exactly as the model gets them, no model run"
    )
    preview.add_argument("task", type=Path, help="the task file (YAML)")
    preview.add_argument("--item", type=int, default=1, metavar="N", help="which item, from 1")
    preview.add_argument(
        "--shots", type=_int_list, metavar="K", help="shot count(s); default the task's"
    )
    preview.add_argument(
        "--model", help="count tokens with this model's tokenizer (no weights load)"
    )
    preview.add_argument("--raw", action="store_true", help="only the prompt's text, byte for byte")
    _add_chat(preview)
    preview.set_defaults(command=cmd_preview)

    new = sub.add_parser("new", help="write a starter task file for a data file")
    new.add_argument("name", help="the task's name: letters, digits, - and _")
    new.add_argument("--data", type=Path, required=True, help="CSV, TSV, JSONL, .xlsx or .parquet of the items")
    new.add_argument(
        "--kind", default="classification", help="classification, qa, translation or generation"
    )
    new.add_argument(
        "--text-column", metavar="NAME", help="what the prompt shows (text, question, source)"
    )
    new.add_argument(
        "--label-column", metavar="NAME", help="the answer (label, answer, translation)"
    )
    new.add_argument("--out", type=Path, help="the file to write; default NAME.yaml beside the data")
    new.set_defaults(command=cmd_new)

    schema = sub.add_parser("schema", help="print the task file's JSON Schema (for editors)")
    schema.add_argument("--out", type=Path, help="write it to this file instead")
    schema.set_defaults(command=cmd_schema)


def cmd_preview(args: argparse.Namespace) -> int:
    from harness.tools.authoring import format_preview, preview

    shown = preview(args.task, args.item, args.shots, args.model, args.chat)
    if not args.raw:
        print(format_preview(shown))
        return 0
    if len(shown.prompts) != 1:
        raise HarnessError("--raw prints one prompt; choose a shot count with --shots K")
    (prompt,), (tokens,) = shown.prompts, shown.tokens
    counted = f"{tokens} tokens ({shown.model})" if tokens is not None else f"tokens {shown.model}"
    shots = f"{prompt.shots} shot{'s' * (prompt.shots != 1)}"
    print(f"item {args.item}, {shots}, {counted}", file=sys.stderr)
    sys.stdout.write(prompt.text)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from harness.tools.authoring import new_task

    made = new_task(args.name, args.data, args.kind, args.out, args.text_column, args.label_column)
    print(f"wrote {made.path}  {made.summary}")
    print(f"  columns: {made.columns.describe()}")
    if made.labels is not None:
        print(f"  labels: {', '.join(made.labels)}")
    print(f"  next: harness preview {made.path}, then harness run {made.path}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.tasks.schema import schema_text

    if args.out is None:
        sys.stdout.write(schema_text())
        return 0
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(schema_text(), encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"--out {args.out}: cannot write the schema ({exc.strerror})") from None
    print(f"wrote {args.out}")
    return 0


def _add_review(sub: argparse._SubParsersAction[_Parser]) -> None:
    again = sub.add_parser("report", help="render a finished run's report again (no model)")
    again.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    again.set_defaults(command=cmd_report)

    rescore = sub.add_parser(
        "rescore", help="score a finished run's outputs again with its task file as it is now"
    )
    rescore.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    rescore.add_argument("--task", type=Path, metavar="TASK.yaml",
                         help="the task file; default the one named in run.json")
    rescore.set_defaults(command=cmd_rescore)

    compare = sub.add_parser("compare", help="set runs of one task side by side in one page")
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="two or more")
    compare.add_argument("--out", type=Path, metavar="DIR",
                         help="where compare.html goes; default a new folder beside the first run")
    compare.set_defaults(command=cmd_compare)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.runs.folders import rerender

    print(f"report: {rerender(args.run_dir)}")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from harness.reports.tables import text
    from harness.runs.folders import rescore

    done = rescore(args.run_dir, args.task)
    if done.run["task"].get("judge") is None and (done.run.get("judge") or {}).get("ids"):
        print("note: the task has no judge now; the earlier judging is still shown",
              file=sys.stderr)
    if _task_judge(done.task_path):
        # the judge re-reads the outputs (its answers cached in judge.jsonl); no generating model
        _judge(args.run_dir, done.task_path, None)
    else:
        print(text(done.summary))
    print(f"rescored {len(done.records)} outputs with {done.task_path}: {done.changed} changed")
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report: {args.run_dir / 'index.html'}")
    return 0


def _task_judge(path: Path) -> bool:
    from harness.tasks.spec import load_task

    return load_task(path).spec.judge is not None


def _add_judgement(sub: argparse._SubParsersAction[_Parser]) -> None:
    rated = sub.add_parser("ratings", help="take ratings exported from a run's report into "
                           "the run (checked, merged by rater) and render it again")
    rated.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    rated.add_argument("files", type=Path, nargs="+", metavar="FILE",
                       help="ratings files exported from the report, one per rater")
    rated.set_defaults(command=cmd_ratings)

    judge = sub.add_parser("judge", help="score a finished run's outputs with a judge model "
                           "(the task's judge: rubric; no generating model needed)")
    judge.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    judge.add_argument("--model", help="the judge: default, a model folder, a .gguf file or a "
                       "hub id (default: the task's judge.model)")
    judge.add_argument("--task", type=Path, metavar="TASK.yaml",
                       help="the task file; default the one named in run.json")
    judge.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    judge.set_defaults(command=cmd_judge)


def cmd_ratings(args: argparse.Namespace) -> int:
    from harness.reports import report
    from harness.reports.judgement import gather
    from harness.reports.tables import text
    from harness.runs.rating import import_ratings

    done = import_ratings(args.run_dir, args.files)
    for added in done.added:
        print(f"{added['rater']}: {len(added['outputs'])} outputs, {len(added['pairs'])} pairs")
    run, found = _run_of(args.run_dir)
    gathered = gather(args.run_dir, run, found)
    print(text(report.summary_of(run, gathered.records, gathered.extra)))
    print(f"ratings of {len(done.stored['raters'])} rater(s) kept in "
          f"{args.run_dir / 'ratings.json'}")
    print(f"report: {args.run_dir / 'index.html'}")
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    _judge(args.run_dir, args.task, args.model, args.device)
    return 0


def _judge(run_dir: Path, task: Path | None, model: str | None, device: str = "auto") -> None:
    from harness.reports import report
    from harness.reports.judgement import gather
    from harness.reports.tables import text
    from harness.runs.judging import judge_run

    def progress(done: int, todo: int) -> None:
        print(f"\rjudge: {done}/{todo} questions asked", end="" if done < todo else "\n",
              file=sys.stderr, flush=True)

    done = judge_run(run_dir, task, model, device=device, progress=progress)
    run, found = _run_of(run_dir)
    gathered = gather(run_dir, run, found)
    print(text(report.summary_of(run, gathered.records, gathered.extra)))
    print(f"judge {done.model}: {done.asked} questions ({done.new} asked now, the rest from "
          f"judge.jsonl); {done.unparsed} replies unreadable, left unscored")
    print(f"report: {run_dir / 'index.html'}")


def _run_of(run_dir: Path) -> tuple[dict[str, Any], list[Record]]:
    from harness import records

    return records.load_run(run_dir)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.reports.compare import compare

    print(f"comparison: {compare(args.run_dirs, args.out)}")
    return 0


def _numbers(what: str, check: Callable[[list[int]], str | None]) -> Callable[[str], list[int]]:
    """An argparse type: whole numbers separated by commas, ``check`` saying what is wrong
    with them (``tasks.shots_problem``, ``tasks.seed_problem``)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what} separated by commas, got {text!r}") from None
        problem = check(values)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return values

    return parse


def _int_list(text: str) -> list[int]:
    """Counts separated by commas: at least one, none twice, none below 0."""
    from harness.tasks.spec import shots_problem

    return _numbers("numbers", shots_problem)(text)


def _seed_list(text: str) -> list[int]:
    """Seeds separated by commas: at least one, none twice, each from 0 to 2^63 - 1."""
    from harness.tasks.spec import seed_problem

    return _numbers("seeds", seed_problem)(text)


def _str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
