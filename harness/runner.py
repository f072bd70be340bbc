"""Running a task: prompts x settings x seeds through a backend, as flat result records.

Requests are grouped by setting and seed, sorted by length so batches carry little
padding, and sent in batches sized by the backend. Each finished output becomes one
record, appended to ``samples.jsonl`` at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import metrics
from .decoding import Setting
from .cache import ResultCache, request_key
from .generate import Backend, Generation, Options
from .prompts import Prompt
from .tasks import Task

Record = dict[str, Any]


@dataclass(frozen=True)
class Request:
    prompt: Prompt
    setting: Setting
    seed: int | None

    @property
    def id(self) -> tuple[str, int | None, int, int]:
        """What identifies the request within a run (see ``record_id``)."""
        return (self.setting.name, self.seed, self.prompt.item, self.prompt.shots)


def plan(prompts: list[Prompt], settings: list[Setting], seeds: list[int]) -> list[Request]:
    """Every generation call of a run: sampled settings once per seed, others once."""
    requests = []
    for setting in settings:
        for seed in seeds if setting.sampled else [None]:
            requests += [Request(prompt, setting, seed) for prompt in prompts]
    return requests


def count_outputs(requests: list[Request]) -> int:
    return sum(r.setting.sequences for r in requests)


def run(
    task: Task,
    requests: list[Request],
    backend: Backend,
    options: Options,
    samples: TextIO | None = None,
    on_progress: Callable[[int], None] | None = None,
    cache: ResultCache | None = None,
    fingerprint: str = "",
) -> list[Record]:
    """Generate every request and return the records, in a stable order.

    With a cache, requests it holds are answered from it and new outputs are stored in
    it; ``fingerprint`` (the model's) is part of every key.
    """
    records: list[Record] = []
    order = record_order(requests)

    def emit(batch: list[Request], outputs: list[list[Generation]]) -> None:
        for request, generations in zip(batch, outputs, strict=True):
            for index, generation in enumerate(generations):
                record = make_record(task, request, index, generation)
                records.append(record)
                if samples is not None:
                    # one write per line, flushed per batch: a crash leaves whole lines
                    samples.write(json.dumps(record, ensure_ascii=False) + "\n")
            if on_progress:
                on_progress(len(generations))
        if samples is not None:
            samples.flush()

    keys = {id(r): _key(r, options, fingerprint) for r in requests} if cache else {}
    if cache:
        found = cache.get(list(keys.values()))
        hits = [r for r in requests if keys[id(r)] in found]
        if hits:
            emit(hits, [found[keys[id(r)]] for r in hits])
        requests = [r for r in requests if keys[id(r)] not in found]
    for group in _groups(requests):
        for batch in _batches(group, backend):
            first = batch[0]
            outputs = backend.generate(
                [r.prompt.text for r in batch], first.setting, first.seed, options
            )
            if cache:
                cache.put([(keys[id(r)], out) for r, out in zip(batch, outputs, strict=True)])
            emit(batch, outputs)
    return sorted(records, key=order)


def record_id(record: Record) -> tuple[str, int | None, int, int]:
    """The request a record answers: its setting, seed, item and shot count."""
    return (record["setting"], record["seed"], record["item"], record["shots"])


def _key(request: Request, options: Options, fingerprint: str) -> str:
    return request_key(
        fingerprint, request.prompt.text, request.setting.args, options, request.seed
    )


def make_record(task: Task, request: Request, index: int, generation: Generation) -> Record:
    prompt = request.prompt
    record: Record = {
        "task": task.name,
        "item": prompt.item,
        "shots": prompt.shots,
        "setting": request.setting.name,
        "seed": request.seed,
        "sequence": index,
        "prompt": prompt.text,
        "output": generation.text,
        "raw_output": generation.raw,
        "references": prompt.references,
        "n_tokens": generation.n_tokens,
        "mean_logprob": generation.mean_logprob,
        "stop_reason": generation.stop_reason,
    }
    record.update(score(task, record))
    return record


def score(task: Task, record: Record) -> dict[str, Any]:
    """The per-output scores of a record (re-computable from the record alone)."""
    return metrics.score_sample(task.kind, record["output"], record["references"], task.labels)


def record_order(requests: list[Request]) -> Callable[[Record], tuple]:
    """Sort key: settings in the task's order, then item, shots, seed, sequence."""
    setting_rank: dict[str, int] = {}
    for r in requests:
        setting_rank.setdefault(r.setting.name, len(setting_rank))
    return lambda rec: (
        setting_rank.get(rec["setting"], len(setting_rank)),
        rec["item"],
        rec["shots"],
        rec["seed"] if rec["seed"] is not None else -1,
        rec["sequence"],
    )


def _groups(requests: list[Request]) -> Iterator[list[Request]]:
    groups: dict[tuple[str, int | None], list[Request]] = {}
    for r in requests:
        groups.setdefault((r.setting.name, r.seed), []).append(r)
    yield from groups.values()


def _batches(group: list[Request], backend: Backend) -> Iterator[list[Request]]:
    """Longest prompts first (a memory problem shows at once), in backend-sized batches."""
    lengths = backend.count_tokens([r.prompt.text for r in group])
    ordered = [r for _, r in sorted(zip(lengths, group, strict=True), key=lambda p: -p[0])]
    size = backend.batch_rows(group[0].setting)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def load_records(path: Path) -> list[Record]:
    """Read a samples.jsonl written by ``run``; a line cut short by a crash is skipped."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
