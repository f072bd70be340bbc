"""Reasoning kept apart from the answer, so that metrics score the answer.

A reasoning model writes its thinking before its answer: in the text between
``<think>`` and ``</think>`` (Qwen 3, DeepSeek-R1, EXAONE Deep, ...), or, behind a
server that parses it out, in a field of its own (``reasoning_content``). The answer is
what follows the thinking. Some chat templates open the thinking in the prompt (the
prompt ends with ``<think>``), so that the output holds only its close. An output that
opens its thinking and never closes it ran out of tokens while thinking: it has no
answer, and its stop reason says so (``thinking``).
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"
UNFINISHED = "thinking"  # the stop reason of an output that never finished thinking


@dataclass(frozen=True)
class Split:
    answer: str
    reasoning: str | None  # None: the output holds no reasoning
    unfinished: bool  # thinking opened and never closed


def split(text: str, prompt: str = "", reasoning: str | None = None) -> Split:
    """The answer and the reasoning of one output (``text``, cut at a stop string), given
    the prompt it followed and a reasoning field from the server, if any."""
    stripped = text.lstrip()
    opened_in_prompt = prompt.rstrip().endswith(OPEN)
    if CLOSE in text:
        before, _, after = text.partition(CLOSE)
        thought = before.lstrip().removeprefix(OPEN) if not opened_in_prompt else before
        found = "\n".join(part for part in (reasoning, thought.strip()) if part)
        return Split(after.lstrip(), found or "", False)
    if stripped.startswith(OPEN) or opened_in_prompt:
        thought = stripped.removeprefix(OPEN).strip()
        found = "\n".join(part for part in (reasoning, thought) if part)
        return Split("", found, True)
    return Split(text, reasoning or None, False)
