"""The record contract: one row of a run's output, and the files that hold a run.

A record (``record.Record``, a typed dict) is one returned sequence, written as one
line of ``samples.jsonl``. The runner and the label ranking make them here; resume, rescore,
the report and compare read them back through this module. Its fields:

    task, item, shots, setting, seed, sequence   which request, and which of its outputs
    prompt, references                           what the model was given and the answers
    output, raw_output                           the answer (cut at a stop string), and all
    n_tokens, mean_logprob, stop_reason          of generated text; how it ended
    label_logprobs                               label ranking only: each label's log-prob
    choices, choice_logprobs                     multiple_choice: the item's choices, and
                                                 (ranked) each one's log-prob, in order
    ...                                          the per-output scores (metrics.score_sample)

``run.json`` beside it holds the merged task, the settings, the model and the backend.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from harness.common import files
from harness.errors import HarnessError
from harness.records.record import FIELDS as FIELDS  # re-exported: the record contract
from harness.records.record import Record as Record
from harness.scoring import metrics

if TYPE_CHECKING:
    from harness.engines.contract import Generation, LabelScore
    from harness.tasks.prompts import Prompt
    from harness.tasks.spec import Task

RequestId = tuple[str, int | None, int, int]  # setting, seed, item, shots

LIKELIHOOD = "likelihood"  # the setting name under which label ranking's answers appear

# What generation writes, in the order results.csv shows them (scores come between).
GENERATED = ("task", "item", "shots", "setting", "seed", "sequence", "prompt", "output",
             "raw_output", "references", "n_tokens", "mean_logprob", "stop_reason")


def generated(task: Task, prompt: Prompt, setting: str, seed: int | None, index: int,
              generation: Generation) -> Record:
    """The record of one returned sequence, scored."""
    record: Record = {
        "task": task.name,
        "item": prompt.item,
        "shots": prompt.shots,
        "setting": setting,
        "seed": seed,
        "sequence": index,
        "prompt": prompt.text,
        "output": generation.text,
        "raw_output": generation.raw,
        "references": prompt.references,
        "n_tokens": generation.n_tokens,
        "mean_logprob": generation.mean_logprob,
        "stop_reason": generation.stop_reason,
    }
    if prompt.choices:
        record["choices"] = list(prompt.choices)
    return scored(task, record)


def ranked(task: Task, prompt: Prompt, scores: list[LabelScore]) -> Record:
    """The record of one prompt's label ranking: the most likely label is its answer."""
    best = max(scores, key=lambda s: s.logprob)  # the first label wins a tie
    record: Record = {
        "task": task.name,
        "item": prompt.item,
        "shots": prompt.shots,
        "setting": LIKELIHOOD,
        "seed": None,
        "sequence": 0,
        "prompt": prompt.text,
        "output": best.label,
        "raw_output": best.label,
        "references": prompt.references,
        "n_tokens": best.n_tokens,
        "mean_logprob": best.mean,
        "stop_reason": "eos",
    }
    if prompt.choices:  # a list: two choices may read the same
        record["choices"] = list(prompt.choices)
        record["choice_logprobs"] = [round(s.logprob, 4) for s in scores]
    else:
        record["label_logprobs"] = {s.label: round(s.logprob, 4) for s in scores}
    return scored(task, record)


def scored(task: Task, record: Record) -> Record:
    """The record with its per-output scores (computed afresh from the record alone)."""
    kept = {k: v for k, v in record.items() if k not in metrics.SAMPLE_FIELDS}
    choices, logprobs = metrics.ranking_of(record)
    return cast(Record, kept | metrics.score_sample(
        task.kind, record["output"], record["references"], task.labels, choices=choices,
        logprobs=logprobs, answer_format=getattr(task, "answer_format", "text")))


def record_id(record: Record) -> RequestId:
    """The request a record answers: its setting, seed, item and shot count."""
    return (record["setting"], record["seed"], record["item"], record["shots"])


def sort_key(settings: Iterable[str]) -> Callable[[Record], tuple[Any, ...]]:
    """Records in the report's order: settings as listed (others after, by name), then
    item, shots, seed and returned sequence."""
    rank = {name: i for i, name in enumerate(dict.fromkeys(settings))}
    return lambda r: (
        rank.get(r["setting"], len(rank)), r["setting"] if r["setting"] not in rank else "",
        r["item"], r["shots"], r["seed"] if r["seed"] is not None else -1, r["sequence"],
    )


# ---------------------------------------------------------------- samples.jsonl


def line(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def append(handle: IO[str], records: list[Record]) -> None:
    """Add records to an open samples.jsonl in one write, then flush."""
    handle.write("".join(line(r) for r in records))
    handle.flush()


def read_samples(path: Path) -> list[Record]:
    """The records of a samples.jsonl; damaged lines are skipped (see ``scan_samples``)."""
    return scan_samples(path)[0]


def scan_samples(path: Path) -> tuple[list[Record], int]:
    """The records of a samples.jsonl, and how many lines were skipped as damaged.

    A line cut short by a crash, a line that is not UTF-8, and a line of JSON that is
    not a record (``{}``, ``null``, a list, a field of the wrong type) are skipped.
    Lines end at "\n" only: an output may hold U+2028 or NEL.
    """
    records, skipped = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                record = None
            if is_record(record):
                records.append(record)
            else:
                skipped += 1
    return records, skipped


def is_record(value: Any) -> bool:
    """Whether a value read back has the fields of a record, of the right types."""
    if not isinstance(value, dict):
        return False
    counts = ("item", "shots", "sequence")
    if not all(type(value.get(k)) is int and value[k] >= 0 for k in counts):
        return False
    if not all(isinstance(value.get(k), str) for k in ("task", "setting", "prompt", "output")):
        return False
    if value.get("seed") is not None and type(value.get("seed")) is not int:
        return False
    if "seed" not in value:
        return False
    references = value.get("references")
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        return False
    optional: dict[str, type | tuple[type, ...]] = {
        "raw_output": str, "stop_reason": str, "n_tokens": int, "mean_logprob": (int, float),
        "label_logprobs": dict, "predicted": str, "choices": list, "choice_logprobs": list,
    }
    optional |= {k: (int, float) for k in metrics.SAMPLE_FIELDS if k != "predicted"}
    return all(value.get(k) is None or isinstance(value[k], kind) for k, kind in optional.items())


def write_samples(path: Path, records: list[Record]) -> None:
    """Replace samples.jsonl whole: written beside it, then renamed over it."""
    scratch = path.with_suffix(".jsonl.tmp")
    with scratch.open("w", encoding="utf-8") as handle:
        handle.write("".join(line(r) for r in records))
    scratch.replace(path)


# ---------------------------------------------------------------- run.json


def write_run(run_dir: Path, run: dict[str, Any]) -> None:
    """Replace run.json whole."""
    path = run_dir / "run.json"
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
    scratch.replace(path)


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json as written by ``write_run``; raises OSError or ValueError."""
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[Record]]:
    """run.json and the records of samples.jsonl, in the report's order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: no such run folder")
    try:
        run = read_run(run_dir)
    except FileNotFoundError:
        raise HarnessError(f"{run_dir}: not a run folder (no run.json)") from None
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{run_dir / 'run.json'}: cannot read it ({exc})") from None
    if not isinstance(run, dict) or not isinstance(run.get("task"), dict):
        raise HarnessError(f"{run_dir / 'run.json'}: not a harness run.json (no task in it)")
    samples = run_dir / "samples.jsonl"
    if not samples.exists():
        raise HarnessError(f"{run_dir}: no samples.jsonl, so nothing to report")
    try:
        found, skipped = scan_samples(samples)
    except OSError as exc:
        raise HarnessError(f"{samples}: cannot read it ({files.reason(exc)})") from None
    if not found:
        raise HarnessError(f"{samples}: holds no outputs")
    if skipped:
        print(f"note: {samples}: {skipped} damaged line(s) left out (cut short, not UTF-8, "
              "or not an output)", file=sys.stderr)
    return run, sorted(found, key=sort_key(s["name"] for s in run.get("settings", [])))
