"""Prompts: sandboxed Jinja templates and few-shot assembly."""

from __future__ import annotations

import random
from dataclasses import dataclass

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from .data import Item
from .errors import HarnessError
from .tasks import LoadedTask

# One environment for every template: sandboxed (no reaching Python internals), strict
# (a missing variable is an error, never an empty string) and faithful to whitespace
# (a trailing newline in a template is part of the prompt).
_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
)


@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: an item at a shot count, with its reference answers."""

    item: int  # index of the item in the task's data, from 0
    shots: int
    text: str
    references: list[str]  # the target first, then accepted aliases
    examples: list[int]  # indices into the few-shot pool (or the data) of the shots


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
        }
        self.compiled: dict[str, jinja2.Template] = {}
        self.variables: dict[str, set[str]] = {}
        for name, source in sources.items():
            if source is None:
                continue
            try:
                self.variables[name] = meta.find_undeclared_variables(_ENV.parse(source))
                self.compiled[name] = _ENV.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise HarnessError(
                    f"{task.path}: {name}: template error on its line {exc.lineno}: {exc.message}"
                ) from None
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
        try:
            return self.compiled[name].render(**(row or {}))
        except jinja2.exceptions.SecurityError as exc:
            raise HarnessError(f"{self.task.path}: {name}: refused by the sandbox ({exc})") from None
        except jinja2.TemplateError as exc:
            raise HarnessError(f"{self.task.path}: {name}: {exc}") from None

    def references(self, row: Item) -> list[str]:
        if "target" not in self.compiled:
            return []
        refs = [self.render("target", row).strip()]
        if "aliases" in self.compiled:
            aliases = (a.strip() for a in self.render("aliases", row).split("|"))
            refs += [a for a in aliases if a and a not in refs]
        return refs


def build_prompts(task: LoadedTask, shots: list[int] | None = None) -> list[Prompt]:
    """Render every item at every shot count, examples drawn as ``draw_examples`` says."""
    spec = task.spec
    shot_counts = shots if shots is not None else spec.shots
    templates = Templates(task, shot_counts)
    pool = task.pool if task.pool is not None else task.items
    _check_shots(task, shot_counts, pool)
    _check_labels(task, templates)
    instruction = templates.render("prompt.instruction") if spec.prompt.instruction else None
    prompts = []
    for index, item in enumerate(task.items):
        order = draw_examples(task, index, item, pool)
        if len(order) < max(shot_counts):  # the pool holds copies of this item
            raise HarnessError(
                f"{task.path}: data item {index + 1} has copies among the examples, which "
                f"leaves {len(order)} others; shots asks for {max(shot_counts)}"
            )
        query = templates.render("prompt.query", item)
        references = templates.references(item)
        for k in shot_counts:
            chosen = order[:k]
            blocks = [instruction] if instruction is not None else []
            blocks += [templates.render("prompt.example", pool[j]) for j in chosen]
            blocks.append(query)
            text = spec.prompt.separator.join(blocks)
            prompts.append(Prompt(index, k, text, references, chosen))
    return prompts


def draw_examples(task: LoadedTask, index: int, item: Item, pool: list[Item]) -> list[int]:
    """The order in which the pool's rows serve as examples for one item.

    ``fewshot_order: per_item`` shuffles the pool for each item, seeded by the task name
    and the item's index, so a run is repeatable; ``first`` keeps the pool's own order, so
    every item gets the same first rows. A k-shot prompt takes the first k, so the 3-shot
    prompt extends the 1-shot one. Rows equal to the item itself are never used.
    """
    candidates = [j for j, row in enumerate(pool) if row != item]
    if task.spec.fewshot_order == "per_item":
        random.Random(f"{task.spec.name}:{index}").shuffle(candidates)
    return candidates


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
            reference = templates.references(row)[0] if which == "data" else None
            if reference is not None and reference not in labels:
                raise HarnessError(
                    f"{task.path}: {which} item {number} has the answer {reference!r}, "
                    f"which is not one of labels {labels}"
                )


def _names(names: object) -> str:
    return ", ".join(sorted(str(n) for n in names))  # type: ignore[attr-defined]
