"""The ``harness`` command. A user's mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import HarnessError

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
LATEST = Path("<latest>")  # --resume with no folder named


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    run.add_argument("--seed", type=_int_list, metavar="S", help="seed(s) for sampled settings")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    run.add_argument("--out", type=Path, default=Path("reports"), help="where run folders go")
    run.add_argument(
        "--resume", nargs="?", type=Path, const=LATEST, metavar="RUN_DIR",
        help="finish an interrupted run (default: the newest run of this task under --out)",
    )
    run.add_argument("--no-cache", action="store_true", help="neither read nor fill the result cache")
    run.set_defaults(command=cmd_run)

    validate = sub.add_parser("validate", help="check task files without loading a model")
    validate.add_argument("tasks", type=Path, nargs="+")
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
    bench.set_defaults(command=cmd_bench)

    _add_finetune(sub)

    listing = sub.add_parser("list", help="list the shipped tasks and the presets")
    listing.set_defaults(command=cmd_list)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from . import pipeline, report
    from .cache import ResultCache
    from .generate import HFBackend
    from .models import cache_root, load_model

    overrides = pipeline.Overrides(
        shots=args.shots, presets=args.presets, seeds=args.seed, limit=args.limit,
        model=args.model,
    )
    plan = pipeline.prepare(args.task, overrides)
    print(plan.describe(), file=sys.stderr)
    done: list = []
    if args.resume:
        run_dir = args.resume
        if run_dir == LATEST:
            run_dir = pipeline.latest_run(args.out, plan.task.spec.name)
        done = pipeline.finished_records(run_dir, plan)
        print(f"resuming {run_dir}: {len(done)} of {plan.n_outputs} outputs done", file=sys.stderr)
    else:
        pipeline.check_writable(args.out)
    loaded = load_model(plan.model, args.device)
    print(
        f"model {loaded.name} on {loaded.device} ({loaded.dtype}), ready in {loaded.load_s:.1f} s",
        file=sys.stderr,
    )
    if args.resume:
        pipeline.check_same_model(run_dir, loaded.fingerprint)
    else:
        run_dir = pipeline.new_run_dir(args.out, plan.task.spec.name)
    cache = None if args.no_cache else ResultCache(cache_root() / "results.sqlite")
    try:
        records = pipeline.execute(
            plan, HFBackend(loaded), loaded.describe(), run_dir, loaded.load_s, cache, done
        )
    except KeyboardInterrupt:
        print(
            f"\nharness: interrupted; finished outputs are kept in {run_dir}\n"
            f"resume with: harness run {args.task} --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    finally:
        if cache:
            cache.close()
    summary = report.summarize(plan.task.spec.kind, records)
    columns = report.metric_columns(plan.task.spec.kind, plan.task.spec.metrics)[:4]
    print(_table(summary, columns))
    print(f"report: {run_dir / 'index.html'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .bench import format_table, run_bench

    if args.quick:
        args.presets, args.shots, args.limit, args.tokens, args.sample = ["greedy"], [0, 1], 8, 16, 8
    figures = run_bench(
        args.task, args.model, args.presets, args.shots, args.sample, args.tokens,
        args.limit, args.device,
    )
    print(format_table(figures))
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    return 0


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "finetune", help="fine-tune a model on question/answer pairs (the lessons' chit-chat)"
    )
    tune.add_argument("--model", default="default", help="default, a model folder, a .gguf file or a hub id")
    tune.add_argument("--data", type=Path, required=True, help="CSV, TSV or JSONL of pairs")
    tune.add_argument("--out", type=Path, required=True, help="the folder to write the tuned model to")
    tune.add_argument("--question-column", default="Q", metavar="NAME", help="default Q")
    tune.add_argument("--answer-column", default="A", metavar="NAME", help="default A")
    tune.add_argument("--epochs", type=int, default=3, help="default 3")
    tune.add_argument("--lr", type=float, default=1e-4, help="AdamW's learning rate; default 1e-4")
    tune.add_argument("--batch-size", type=int, default=4, help="default 4")
    tune.add_argument("--max-length", type=int, default=128, help="tokens per pair; default 128")
    tune.add_argument("--seed", type=int, default=42, help="for the split, the order and the weights")
    tune.add_argument("--val-share", type=float, default=0.1, help="pairs held out; default 0.1")
    tune.add_argument("--answer-only", action="store_true", help="leave the question out of the loss")
    tune.add_argument("--query-template", metavar="JINJA", help="question, bos, eos; default "
                      "'{{ bos }}{{ question }}{{ eos }}{{ bos }}'")
    tune.add_argument("--answer-template", metavar="JINJA", help="answer, bos, eos; default "
                      "'{{ answer }}{{ eos }}'")
    tune.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    tune.add_argument("--force", action="store_true", help="replace --out if it exists")
    tune.set_defaults(command=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    from . import finetune

    defaults = {"query_template": finetune.DEFAULT_QUERY, "answer_template": finetune.DEFAULT_ANSWER}
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
    from . import pipeline

    failed = 0
    for path in args.tasks:
        try:
            plan = pipeline.prepare(path)
        except HarnessError as exc:
            failed += 1
            print(f"harness: error: {exc}", file=sys.stderr)
            continue
        print(f"ok  {path}  {plan.describe()}")
    return 2 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    from .decoding import PRESETS
    from .tasks import load_task

    print("tasks:")
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        try:
            spec = load_task(path).spec
            print(f"  {path.name:<20} {spec.kind:<15} {spec.description}")
        except HarnessError as exc:
            print(f"  {path.name:<20} (invalid: {exc})")
    print("presets:")
    for name, args_ in PRESETS.items():
        shown = ", ".join(f"{k}={v}" for k, v in args_.items()) or "(transformers' defaults)"
        print(f"  {name:<18} {shown}")
    return 0


def _table(summary: list[dict], columns: list[str]) -> str:
    from .report import _fmt

    header = ["setting", "shots", *columns]
    rows = [[r["setting"], str(r["shots"]), *(_fmt(r.get(c), c) for c in columns)] for r in summary]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [header, *rows]]
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")


def _str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
