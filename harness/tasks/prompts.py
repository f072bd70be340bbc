"""Prompts: sandboxed Jinja templates and few-shot assembly."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.scoring.textscores import nfkc
from harness.tasks import sandbox
from harness.tasks.data import Item
from harness.tasks.spec import LoadedTask

# Every template goes through one environment (``sandbox``): sandboxed (no reaching
# Python internals), strict (a missing variable is an error, never an empty string),
# faithful to whitespace (a trailing newline in a template is part of the prompt), and
# bounded in rendering time and size.


@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: an item at a shot count, with its reference answers."""

    item: int  # index of the item in the task's data, from 0
    shots: int
    text: str
    references: list[str]  # the target first, then accepted aliases
    examples: list[int]  # indices into the few-shot pool (or the data) of the shots
    choices: tuple[str, ...] = ()  # multiple_choice: the item's own choices, in order


class Templates:
    """The task's templates, compiled once and checked against the data's columns."""

    def __init__(self, task: LoadedTask, shots: list[int] | None = None) -> None:
        spec = task.spec
        self.task = task
        shots = shots if shots is not None else spec.shots  # --shots may ask for examples
        sources = {
            "prompt.instruction": spec.prompt.instruction,
            "prompt.example": spec.prompt.example if max(shots) > 0 else None,
            "prompt.query": spec.prompt.query,
            "target": spec.target,
            "aliases": spec.aliases,
            # an expression, rendered as JSON so that a list comes back as a list
            "choices": "{{ (" + spec.choices + ") | tojson }}" if spec.choices else None,
        }
        self.compiled: dict[str, sandbox.Compiled] = {}
        self.variables: dict[str, frozenset[str]] = {}
        for name, source in sources.items():
            if source is None:
                continue
            self.compiled[name] = sandbox.compile_template(source, f"{task.path}: {name}")
            self.variables[name] = self.compiled[name].variables
        self._check_columns()

    def _check_columns(self) -> None:
        task = self.task
        pool = task.pool if task.pool is not None else task.items
        for name, variables in self.variables.items():
            rows = pool if name == "prompt.example" else task.items
            if name == "prompt.instruction":
                rows = []  # the instruction is rendered with no item
                if variables:
                    raise HarnessError(
                        f"{task.path}: prompt.instruction uses {_names(variables)}, but it is "
                        "rendered once, with no item; move them into prompt.query"
                    )
            for number, row in enumerate(rows, start=1):
                missing = variables - row.keys()
                if missing:
                    which = "few-shot pool" if rows is task.pool else "data"
                    raise HarnessError(
                        f"{task.path}: {name} uses {_names(missing)}, missing from {which} "
                        f"item {number}, which has columns {_names(row.keys())}"
                    )

    def render(self, name: str, row: Item | None = None) -> str:
        return sandbox.render(self.compiled[name], row or {}, f"{self.task.path}: {name}")

    def choices(self, row: Item, number: int) -> tuple[str, ...]:
        """A multiple_choice item's choices (item ``number`` from 1, for messages)."""
        if "choices" not in self.compiled:
            return ()
        rendered = json.loads(self.render("choices", row))
        if isinstance(rendered, str) or not isinstance(rendered, list) or not rendered or any(
                isinstance(c, (dict, list)) or c is None for c in rendered):
            raise HarnessError(
                f"{self.task.path}: choices gives {str(rendered)[:80]!r} for data item "
                f"{number}; it should give a list of texts, e.g. [ending_1, ending_2]"
            )
        return tuple(str(c) for c in rendered)

    def references(self, row: Item, which: str = "an item",
                   choices: tuple[str, ...] = ()) -> list[str]:
        """The item's answers: target rendered, then its aliases (multiple_choice: the
        right one of ``choices``). A column the target reads being null (a Parquet or
        JSONL null) is refused: such an item has no answer, and Jinja would make the text
        "None" of it. ``which`` names the row in errors ("data item 3")."""
        if "target" in self.compiled:
            null = next((name for name in sorted(self.variables["target"])
                         if row.get(name, "") is None), None)
            if null is not None:
                raise HarnessError(
                    f"{self.task.path}: {which} has no answer: its column {null!r} is null; "
                    "fill it in or leave the row out"
                )
        if "target" not in self.compiled:
            return []
        refs = [self.render("target", row).strip()]
        if choices:
            return [gold_choice(refs[0], choices, f"{self.task.path}: {which}")]
        if "aliases" in self.compiled:
            aliases = (a.strip() for a in self.render("aliases", row).split("|"))
            refs += [a for a in aliases if a and a not in refs]
        return refs


def build_prompts(task: LoadedTask, shots: list[int] | None = None) -> list[Prompt]:
    """Render every item at every shot count, examples drawn as ``Examples`` says."""
    spec = task.spec
    shot_counts = shots if shots is not None else spec.shots
    templates = Templates(task, shot_counts)
    pool = task.pool if task.pool is not None else task.items
    _check_shots(task, shot_counts, pool)
    _check_labels(task, templates)
    instruction = templates.render("prompt.instruction") if spec.prompt.instruction else None
    need = max(shot_counts)
    examples = Examples(task.spec.name, pool, spec.fewshot_order)
    shown: dict[int, str] = {}  # a pool row rendered as an example, once
    prompts = []
    own_pool = pool is task.items  # then an item's key is the pool's already
    for index, item in enumerate(task.items):
        order = examples.draw(index, item, need, examples.keys[index] if own_pool else None)
        if len(order) < need:  # the pool holds copies of this item
            raise HarnessError(
                f"{task.path}: data item {index + 1} has copies among the examples, which "
                f"leaves {len(order)} others; shots asks for {need}"
            )
        query = templates.render("prompt.query", item)
        if not query.strip():
            raise HarnessError(
                f"{task.path}: prompt.query renders nothing for data item {index + 1}, so the "
                "item would not be in its prompt; check the template and the item's columns"
            )
        choices = templates.choices(item, index + 1)
        references = templates.references(item, f"data item {index + 1}", choices)
        for j in order:
            if j not in shown:
                shown[j] = templates.render("prompt.example", pool[j])
        for k in shot_counts:
            chosen = order[:k]
            blocks = [instruction] if instruction is not None else []
            blocks += [shown[j] for j in chosen]
            blocks.append(query)
            text = spec.prompt.separator.join(blocks)
            prompts.append(Prompt(index, k, text, references, chosen, choices))
    return prompts


def gold_choice(target: str, choices: tuple[str, ...], where: str) -> str:
    """The right choice's text from what ``target`` renders: a choice's own text, else
    its index from 0 (as lm-evaluation-harness reads ``doc_to_target``)."""
    if target in choices:
        return target
    same = [c for c in choices if nfkc(c) == nfkc(target)]  # NFD Hangul is the same text
    if same:
        return same[0]
    if target.isdigit() and int(target) < len(choices):
        return choices[int(target)]
    raise HarnessError(
        f"{where}: target gives {target!r}, which is neither one of its choices "
        f"{list(choices)} nor an index from 0 to {len(choices) - 1}"
    )


class Examples:
    """Draws the examples of each item from a pool, in time linear in the shots.

    ``order`` is the task's ``fewshot_order``. ``per_item`` shuffles the pool for each
    item, seeded by the task name and the item's index, so a run is repeatable; ``first``
    keeps the pool's own order, so every item gets the same first rows. A k-shot prompt
    takes the first k, so the 3-shot prompt extends the 1-shot one. Rows equal to the
    item itself are never used. A shuffle is drawn from the front (Fisher-Yates over a
    map of the swaps made), so a draw touches about as many rows as it returns, never
    the whole pool.
    """

    def __init__(self, name: str, pool: list[Item], order: str = "per_item") -> None:
        self.name = name
        self.order = order
        self.keys = [row_key(row) for row in pool]
        self.copies = Counter(self.keys)
        self._others: dict[Hashable, list[int]] = {}

    def draw(self, index: int, item: Item, k: int, key: Hashable | None = None) -> list[int]:
        """Up to ``k`` pool indices for item ``index``, fewer only when the pool has
        fewer rows that differ from the item (``key``: its ``row_key``, if known)."""
        key = row_key(item) if key is None else key
        copies = self.copies.get(key, 0)
        size = len(self.keys)
        if copies * 2 > size:
            # Mostly copies of this item: draw from the list of the others instead of
            # passing over copies (the list is made once per such item).
            if key not in self._others:
                self._others[key] = [j for j, other in enumerate(self.keys) if other != key]
            rows, skip = self._others[key], None
        else:
            rows, skip = None, key
        want = min(k, size - copies)
        if self.order == "first":
            ordered = rows if rows is not None else range(size)
            return list(itertools.islice(
                (row for row in ordered if skip is None or self.keys[row] != skip), want))
        rng = random.Random(f"{self.name}:{index}")
        swaps: dict[int, int] = {}
        chosen: list[int] = []
        n = len(rows) if rows is not None else size
        position = 0
        while len(chosen) < want:
            j = rng.randrange(position, n)
            picked = swaps.get(j, j)
            swaps[j] = swaps.get(position, position)
            position += 1
            row = rows[picked] if rows is not None else picked
            if skip is None or self.keys[row] != skip:
                chosen.append(row)
        return chosen


def row_key(row: Item) -> Hashable:
    """A key that equal rows share: a digest of their columns and values (``item_digest``
    without references), so that a row with a NaN cell (Parquet's missing numbers) still
    equals itself, as NaN != NaN would have it otherwise."""
    return item_digest(row)


def item_digest(row: Item, references: list[str] | None = None) -> str:
    """A stable digest of an item's columns and values (and its references, if given):
    the same on every run and machine, so that runs can be paired by content."""
    named = {str(column): value for column, value in row.items()}
    try:
        text = json.dumps([named, references], sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # mappings inside whose keys do not sort; loops
        text = repr([sorted(named.items(), key=lambda pair: pair[0]), references])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _check_shots(task: LoadedTask, shot_counts: list[int], pool: list[Item]) -> None:
    need = max(shot_counts)
    have = len(pool) - (0 if task.pool is not None else 1)
    if need > have:
        where = "the few-shot pool" if task.pool is not None else "the data (no fewshot pool)"
        raise HarnessError(
            f"{task.path}: shots asks for {need} examples, but {where} has {have} to draw from"
        )
    if need > 0 and not task.spec.prompt.example:
        raise HarnessError(f"{task.path}: shots above 0 need prompt.example")


def _check_labels(task: LoadedTask, templates: Templates) -> None:
    labels = task.spec.labels
    if task.spec.kind != "classification" or not labels:
        return
    for rows, which in ((task.items, "data"), (task.pool or [], "few-shot pool")):
        for number, row in enumerate(rows, start=1):
            reference = (templates.references(row, f"data item {number}")[0]
                         if which == "data" else None)
            # compared after NFKC: Hangul typed decomposed (NFD) is the same label
            if reference is not None and nfkc(reference) not in {nfkc(x) for x in labels}:
                raise HarnessError(
                    f"{task.path}: {which} item {number} has the answer {reference!r}, "
                    f"which is not one of labels {labels}"
                )


def _names(names: object) -> str:
    return ", ".join(sorted(str(n) for n in names))  # type: ignore[attr-defined]
