"""Prompts against the model's context, checked before any generation.

A prompt needs room for its own tokens and for the most new tokens any setting asks
(and for the longest label, where labels are ranked). A model has positions for a fixed
number of tokens (``models.context_length``); past them it fails in the middle of a run
or, with rotary positions, answers from positions it never learned. So every prompt is
counted first, and those that do not fit are either refused, one line naming them
(``too_long: refuse``, the default), or cut from the left (``too_long: cut_left``): the
start of the prompt goes, at a word's beginning where one is near, until it fits; the
run says so and run.json and the report list what was cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.tasks.prompts import Prompt

Count = Callable[[list[str]], list[int]]
_SHOWN = 3  # prompts named in a refusal


@dataclass(frozen=True)
class Cut:
    item: int  # from 0, as Prompt.item
    shots: int
    tokens: int  # the prompt's tokens before the cut
    kept: int  # after it
    characters: int  # characters cut from the start

    def record(self) -> dict[str, int]:
        return {"item": self.item + 1, "shots": self.shots, "tokens": self.tokens,
                "kept": self.kept, "characters_cut": self.characters}


def fit(prompts: list[Prompt], count: Count, limit: int | None, room: int, cut: bool,
        where: str, chat: bool = False) -> tuple[list[Prompt], list[Cut]]:
    """The prompts as they go to the model, and the cuts made.

    ``limit``: the model's context in tokens (None: unbounded, nothing to check);
    ``room``: tokens each prompt must leave free; ``cut``: cut from the left rather
    than refuse; ``where``: the task file, for the message.
    """
    if limit is None or not prompts:
        return prompts, []
    counts = count([p.text for p in prompts])
    over = [(p, n) for p, n in zip(prompts, counts, strict=True) if n + room > limit]
    if not over:
        return prompts, []
    budget = limit - room
    if not cut or budget < 1 or chat:
        shown = ", ".join(f"item {p.item + 1} ({p.shots} shot{'s' * (p.shots != 1)}, "
                          f"{n} tokens)" for p, n in over[:_SHOWN])
        more = f" and {len(over) - _SHOWN} more" if len(over) > _SHOWN else ""
        how = ("shorten them or lower max_new_tokens" if chat or budget < 1 else
               "shorten them, lower max_new_tokens, or set too_long: cut_left")
        if chat and cut:
            how += " (too_long: cut_left does not cut chat-templated prompts)"
        raise HarnessError(
            f"{where}: {len(over)} prompt{'s' * (len(over) != 1)} do not fit the model's "
            f"context of {limit} tokens with {room} more: {shown}{more}; {how}"
        )
    made, cuts = list(prompts), []
    for index, (prompt, n) in enumerate(zip(prompts, counts, strict=True)):
        if n <= budget:
            continue
        start = _cut_point(prompt.text, count, budget)
        text = prompt.text[start:]
        kept = count([text])[0]
        made[index] = dataclasses.replace(prompt, text=text)
        cuts.append(Cut(prompt.item, prompt.shots, n, kept, start))
    return made, cuts


def _cut_point(text: str, count: Count, budget: int) -> int:
    """The fewest leading characters to drop so that the rest has ``budget`` tokens or
    fewer, moved on to the start of the next word when one begins soon after."""
    low, high = 0, len(text)  # the rest fits from ``high`` on, not from ``low``
    while low < high:
        middle = (low + high) // 2
        if count([text[middle:]])[0] <= budget:
            high = middle
        else:
            low = middle + 1
    if high == 0 or text[high - 1].isspace():
        return high
    for offset, char in enumerate(text[high : high + 40]):
        if char.isspace() and high + offset + 1 < len(text):
            return high + offset + 1
    return high
