"""Running a task: prompts x settings x seeds through a backend, as flat records.

Requests are grouped by setting and seed, sorted by length so batches carry little
padding, and sent in batches sized by the backend. Each sampled request carries its own
seed (``backend.request_seed``), so its outputs do not depend on its batch.

The batches are laid out once from a run's whole plan (``layout``), whatever is already
done: a resumed run forms the very batches an uninterrupted run forms, so even the float
rounding that depends on a batch's padding comes out the same. A batch's records are
appended to ``samples.jsonl`` in one write, and a resumed run counts a batch as done only
when all of its records are there (``done_batches``): a batch is kept whole or made again
whole, never half.

A backend that answers request by request (the contract's ``Streaming``: a server taking
many at once) gets every pending request at once, one to a batch, and each answer is
stored and written the moment it arrives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from harness import records
from harness.engines.contract import Backend, Generation, Options, Streaming, request_seed
from harness.records import Record
from harness.runs.cache import ResultCache, request_key
from harness.tasks.decoding import Setting
from harness.tasks.prompts import Prompt
from harness.tasks.spec import Task


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


@dataclass
class Tally:
    """Where a run's new outputs came from: the result cache or the backend."""

    cached: int = 0
    generated: int = 0


def plan(prompts: list[Prompt], settings: list[Setting], seeds: list[int]) -> list[Request]:
    """Every generation call of a run: sampled settings once per seed, others once."""
    requests = []
    for setting in settings:
        for seed in seeds if setting.sampled else [None]:
            requests += [Request(prompt, setting, seed) for prompt in prompts]
    return requests


def count_outputs(requests: list[Request]) -> int:
    return sum(r.setting.sequences for r in requests)


def layout(requests: list[Request], backend: Backend) -> list[list[Request]]:
    """The run's batches: per setting and seed, longest prompts first (a memory problem
    shows at once), in backend-sized batches."""
    texts = list(dict.fromkeys(r.prompt.text for r in requests))
    lengths = dict(zip(texts, backend.count_tokens(texts), strict=True)) if texts else {}
    return [batch for group in _groups(requests) for batch in _batches(group, backend, lengths)]


def done_batches(
    found: list[Record], batches: list[list[Request]]
) -> set[records.RequestId]:
    """The requests whose whole batch is in ``found``: every request of the batch with
    all its returned sequences, once each."""
    counts = Counter(records.record_id(r) for r in found)
    done: set[records.RequestId] = set()
    for batch in batches:
        if all(counts[r.id] == r.setting.sequences for r in batch):
            done.update(r.id for r in batch)
    return done


def run(
    task: Task,
    requests: list[Request],
    backend: Backend,
    options: Options,
    samples: IO[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    cache: ResultCache | None = None,
    scope: dict[str, Any] | None = None,
    done: set[records.RequestId] | None = None,
    batches: list[list[Request]] | None = None,
    tally: Tally | None = None,
) -> list[Record]:
    """Generate every request not in ``done`` and return their records, in a stable order.

    ``batches`` is ``layout(requests, backend)`` (computed here when not given); a batch
    whose requests are all done is skipped. With a cache, requests it holds are answered
    from it, the rest of their batch is generated together, and new outputs are stored in
    it; ``scope`` (``cache.scope``) is part of every key. ``tally`` counts the outputs
    each way.
    """
    tally = tally if tally is not None else Tally()
    done = done or set()
    batches = batches if batches is not None else layout(requests, backend)
    todo = [[r for r in batch if r.id not in done] for batch in batches]
    keys = {id(r): _key(r, options, scope or {}) for batch in todo for r in batch} if cache else {}
    found = cache.get(list(keys.values())) if cache else {}
    kept = _Kept(task, tally, samples, on_progress)
    if isinstance(backend, Streaming):
        _stream(todo, backend, options, cache, keys, found, kept)
    else:
        _generate(todo, backend, options, cache, keys, found, kept)
    return sorted(kept.made, key=records.sort_key(r.setting.name for r in requests))


@dataclass
class _Kept:
    """The records a run has made so far, written and counted as each batch is kept."""

    task: Task
    tally: Tally
    samples: IO[str] | None
    on_progress: Callable[[int], None] | None
    made: list[Record] = field(default_factory=list)

    def keep(self, batch: list[Request], outputs: dict[int, list[Generation]],
             generated: int) -> None:
        """Record, write and count a batch's outputs (``generated`` of them new)."""
        new = [
            records.generated(self.task, r.prompt, r.setting.name, r.seed, index, generation)
            for r in batch
            for index, generation in enumerate(outputs[id(r)])
        ]
        self.tally.generated += generated
        self.tally.cached += len(new) - generated
        self.made.extend(new)
        if self.samples is not None:
            records.append(self.samples, new)  # a batch's lines in one write
        if self.on_progress:
            self.on_progress(len(new))


def _generate(todo: list[list[Request]], backend: Backend, options: Options,
              cache: ResultCache | None, keys: dict[int, str],
              found: dict[str, list[Generation]], kept: _Kept) -> None:
    """Batch by batch: the cache's answers, the rest of the batch generated together."""
    for batch in todo:
        if not batch:
            continue
        missing = [r for r in batch if keys.get(id(r)) not in found]
        outputs: dict[int, list[Generation]] = {
            id(r): found[keys[id(r)]] for r in batch if keys.get(id(r)) in found
        }
        if missing:
            generated = backend.generate(
                [r.prompt.text for r in missing], missing[0].setting,
                [r.own_seed for r in missing], options,
            )
            outputs |= {id(r): out for r, out in zip(missing, generated, strict=True)}
            if cache:
                cache.put([(keys[id(r)], outputs[id(r)]) for r in missing])
        kept.keep(batch, outputs, sum(len(outputs[id(r)]) for r in missing))


def _stream(todo: list[list[Request]], backend: Streaming, options: Options,
            cache: ResultCache | None, keys: dict[int, str],
            found: dict[str, list[Generation]], kept: _Kept) -> None:
    """One request a batch, many in flight: each kept the moment it is answered."""
    pending = [r for batch in todo for r in batch]
    for r in pending:
        if keys.get(id(r)) in found:
            kept.keep([r], {id(r): found[keys[id(r)]]}, 0)
    asked = [r for r in pending if keys.get(id(r)) not in found]
    answers = backend.stream([(r.prompt.text, r.setting, r.own_seed) for r in asked], options)
    try:
        for index, generations in answers:
            r = asked[index]
            if cache:
                cache.put([(keys[id(r)], generations)])
            kept.keep([r], {id(r): generations}, len(generations))
    finally:
        answers.close()  # Ctrl-C or a failure: nothing more is sent


def rank_chunks(prompts: list[Prompt], chunk: int = 16) -> list[list[Prompt]]:
    """Label ranking's batches, laid out from the whole plan like ``layout``'s."""
    return [prompts[start : start + chunk] for start in range(0, len(prompts), chunk)]


def rank(
    task: Task,
    prompts: list[Prompt],
    backend: Backend,
    samples: IO[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 16,
    done: set[records.RequestId] | None = None,
) -> list[Record]:
    """Label ranking (``scoring: likelihood``): one record per prompt, whose answer is
    the label (multiple_choice: the item's choice) the model finds most likely after it. ``prompts`` is the whole plan's; a
    chunk whose prompts are all in ``done`` is skipped, any other is ranked whole."""
    done = done or set()
    made = []
    for part in rank_chunks(prompts, chunk):
        if all(ranked_id(p) in done for p in part):
            continue
        if task.kind == "multiple_choice":  # each item its own choices
            rankings = backend.rank_choices([p.text for p in part],
                                            [list(p.choices) for p in part])
        else:
            rankings = backend.rank_labels([p.text for p in part], list(task.labels or []))
        new = [records.ranked(task, p, scores) for p, scores in zip(part, rankings, strict=True)
               if ranked_id(p) not in done]
        made += new
        if samples is not None:
            records.append(samples, new)
        if on_progress:
            on_progress(len(new))
    return made


def ranked_id(prompt: Prompt) -> records.RequestId:
    """The id of a prompt's label ranking record (see ``records.record_id``)."""
    return (records.LIKELIHOOD, None, prompt.item, prompt.shots)


def done_chunks(found: list[Record], prompts: list[Prompt],
                chunk: int = 16) -> set[records.RequestId]:
    """The label rankings whose whole chunk is in ``found`` (as ``done_batches``)."""
    counts = Counter(records.record_id(r) for r in found)
    done: set[records.RequestId] = set()
    for part in rank_chunks(prompts, chunk):
        if all(counts[ranked_id(p)] == 1 for p in part):
            done.update(ranked_id(p) for p in part)
    return done


def _key(request: Request, options: Options, scope: dict[str, Any]) -> str:
    return request_key(scope, request.prompt.text, request.setting.args, options, request.seed)


def _groups(requests: list[Request]) -> Iterator[list[Request]]:
    groups: dict[tuple[str, int | None], list[Request]] = {}
    for r in requests:
        groups.setdefault((r.setting.name, r.seed), []).append(r)
    yield from groups.values()


def _batches(
    group: list[Request], backend: Backend, lengths: dict[str, int]
) -> Iterator[list[Request]]:
    """Longest prompts first, in backend-sized batches (ties keep the plan's order)."""
    ordered = sorted(group, key=lambda r: -lengths[r.prompt.text])
    size = backend.batch_rows(group[0].setting)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]
