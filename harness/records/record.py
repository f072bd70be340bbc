"""The record of one output, typed: the fields every module that reads or writes a
record names, declared once.

A record is a plain dict at run time (one line of ``samples.jsonl``), so the type costs
nothing and a field added here is a field added everywhere; a type checker holds every
``record["..."]`` in the package to these keys. Its scores are flat fields beside what
was asked and answered, as samples.jsonl, results.csv and the Python API's
``Run.samples`` have always had them.

The layers below ``records`` (the metric registry, the summary) read records too; they
import this type for hints only, so that nothing below depends on this layer at run time.
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``Required`` from the
# annotations as written, and Python 3.11 does not see it inside a string.
from typing import Required, TypedDict


class Record(TypedDict, total=False):
    """One returned sequence of one request, with its scores.

    Which request and what it was given (always there): task, item, shots, setting,
    seed, sequence, prompt, references, output. How it was made (there in every record
    the harness writes; older or hand-made files may leave them out): raw_output,
    n_tokens, mean_logprob, stop_reason, and label_logprobs for label ranking. Its
    scores: the per-output fields of the metric registry (``metrics.sample_fields()``),
    those of the task's kind only.
    """

    task: Required[str]
    item: Required[int]  # index into the task's data, from 0
    shots: Required[int]
    setting: Required[str]  # a decoding setting's name, or "likelihood" (label ranking)
    seed: Required[int | None]  # None: a setting that does not sample
    sequence: Required[int]  # which of the request's returned sequences, from 0
    prompt: Required[str]
    references: Required[list[str]]
    output: Required[str]  # the answer: cut at the first stop string

    raw_output: str  # everything generated, special tokens left out
    n_tokens: int
    mean_logprob: float | None
    stop_reason: str  # "eos", "stop" (a stop string) or "length"
    label_logprobs: dict[str, float]  # label ranking: each label's log-probability
    choices: list[str]  # multiple_choice: the item's own choices, in order
    choice_logprobs: list[float]  # multiple_choice ranked: each choice's log-probability

    predicted: str | None  # classification: the first label the output names
    correct: float | None  # 1.0 right, 0.0 wrong; None where the kind has no right answer
    invalid: float | None
    acc_norm: float | None  # ranked: right when log-probabilities are divided by length
    exact_match: float | None
    f1: float | None
    contains: float | None
    repetition: float | None
    hangul: float | None  # the share of the answer's letters that are Hangul
    wrong_language: float | None  # 1.0 where an answer with letters is less than half Hangul


FIELDS: frozenset[str] = Record.__required_keys__ | Record.__optional_keys__
