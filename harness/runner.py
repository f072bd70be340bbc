"""Running a task: prompts x settings x seeds through a backend, as flat records.

Requests are grouped by setting and seed, sorted by length so batches carry little
padding, and sent in batches sized by the backend. Each sampled request carries its own
seed (``backend.request_seed``), so its outputs do not depend on its batch. A batch's
records are appended to ``samples.jsonl`` together, as soon as it is done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from . import records
from .backend import Backend, Generation, Options, request_seed
from .cache import ResultCache, request_key
from .decoding import Setting
from .prompts import Prompt
from .records import Record
from .tasks import Task


@dataclass(frozen=True)
class Request:
    prompt: Prompt
    setting: Setting
    seed: int | None  # the task's seed, for sampled settings

    @property
    def id(self) -> records.RequestId:
        """What identifies the request within a run (see ``records.record_id``)."""
        return (self.setting.name, self.seed, self.prompt.item, self.prompt.shots)

    @property
    def own_seed(self) -> int | None:
        """The seed this request's draws come from (None unless sampled)."""
        return request_seed(self.seed, self.prompt.text) if self.setting.sampled else None


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
    samples: IO[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    cache: ResultCache | None = None,
    scope: dict[str, Any] | None = None,
) -> list[Record]:
    """Generate every request and return the records, in a stable order.

    With a cache, requests it holds are answered from it and new outputs are stored in
    it; ``scope`` (the model's fingerprint and the backend's identity) is part of every
    key.
    """
    made: list[Record] = []
    order = records.sort_key(r.setting.name for r in requests)

    def emit(batch: list[Request], outputs: list[list[Generation]]) -> None:
        done = [
            records.generated(task, r.prompt, r.setting.name, r.seed, index, generation)
            for r, generations in zip(batch, outputs, strict=True)
            for index, generation in enumerate(generations)
        ]
        made.extend(done)
        if samples is not None:
            records.append(samples, done)  # a batch's lines in one write
        if on_progress:
            on_progress(len(done))

    keys = {id(r): _key(r, options, scope or {}) for r in requests} if cache else {}
    if cache:
        found = cache.get(list(keys.values()))
        hits = [r for r in requests if keys[id(r)] in found]
        if hits:
            emit(hits, [found[keys[id(r)]] for r in hits])
        requests = [r for r in requests if keys[id(r)] not in found]
    for group in _groups(requests):
        for batch in _batches(group, backend):
            outputs = backend.generate(
                [r.prompt.text for r in batch], batch[0].setting, [r.own_seed for r in batch],
                options,
            )
            if cache:
                cache.put([(keys[id(r)], out) for r, out in zip(batch, outputs, strict=True)])
            emit(batch, outputs)
    return sorted(made, key=order)


def rank(
    task: Task,
    prompts: list[Prompt],
    backend: Backend,
    samples: IO[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 16,
) -> list[Record]:
    """Label ranking (``scoring: likelihood``): one record per prompt, whose answer is
    the label the model finds most likely after it."""
    made = []
    for start in range(0, len(prompts), chunk):
        part = prompts[start : start + chunk]
        rankings = backend.rank_labels([p.text for p in part], list(task.labels or []))
        done = [records.ranked(task, p, scores) for p, scores in zip(part, rankings, strict=True)]
        made += done
        if samples is not None:
            records.append(samples, done)
        if on_progress:
            on_progress(len(part))
    return made


def _key(request: Request, options: Options, scope: dict[str, Any]) -> str:
    return request_key(scope, request.prompt.text, request.setting.args, options, request.seed)


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
