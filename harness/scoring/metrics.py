"""The metric registry: every metric the harness reports is one entry of ``METRICS``.

An entry says which task kinds show it, how one output is scored (the record field it
writes), how outputs add up (a mean of that field, a corpus statistic from summed
counts, or distinct n-grams), which way is better, its help text, chart label and
digits, the report's figures of it with their captions, and its majority-class
baseline. The summary and its intervals, summary.csv, the report's help and charts,
the schema, `metrics:` validation and `harness list` all read it; adding a metric is
adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from harness.scoring import corpus
from harness.scoring.kinds import KINDS, Kind  # noqa: F401 (Kind: importable from here)
from harness.scoring.textscores import (  # noqa: F401 (the scorers, importable from here as before)
    char_f1,
    contains_answer,
    distinct_n,
    exact_match,
    first_label,
    hangul_share,
    korquad_exact,
    korquad_f1,
    morphemes,
    nfkc,
    normalize,
    repeated_ngram_rate,
    repeated_ngram_rate_ids,
)

if TYPE_CHECKING:
    from harness.records.record import Record  # the record contract, a layer above

CHOSEN: tuple[Kind, ...] = ("classification", "multiple_choice")  # answers among options
GENERATED = ("qa", "translation", "generation")  # kinds whose answers are free text


@dataclass(frozen=True)
class Output:
    """What a per-output score sees: the answer, its references, the task's labels, and
    (classification) the label the answer names."""

    text: str
    references: list[str]
    labels: list[str] | None
    predicted: str | None = None
    choices: list[str] | None = None  # the options ranked (labels or an item's choices)
    logprobs: list[float] | None = None  # ranked outputs: each option's log-probability


@dataclass(frozen=True)
class Scope:
    """What an aggregate needs beyond the records: the task's labels (classification; for
    multiple_choice the choices' positions "1", "2", ...), whether answers are expected in
    Korean, and the tokenizer BLEU uses."""

    labels: tuple[str, ...] = ()
    positions: bool = False  # labels name positions among each item's choices
    korean: bool = False
    bleu_tokenize: str = "13a"
    ranked: bool = False  # some answers were ranked by log-probability, not generated


@dataclass(frozen=True)
class Chart:
    """A figure of the report's that shows a metric beside the main one's (the main
    metric is drawn against shot count whatever it is).

    ``shots``: against shot count, a line per setting. ``bars``: a panel of bars per
    setting, beside the other ``bars`` metrics' panels, drawn when some cell reaches the
    report's smallest visible rate. ``versus``: against the metric ``other``, a point per
    setting × shots, drawn when this metric's bars are.
    """

    kind: Literal["shots", "bars", "versus"]
    caption: str  # what the figure shows and asks, under it
    other: str = ""  # versus: the metric up the side
    title: str = ""  # versus: the figure's title


Stats: TypeAlias = "Callable[[list[Record], Scope], np.ndarray]"  # a row of counts a record
Score = Callable[[np.ndarray, Scope], np.ndarray]  # summed rows (..., d) -> values (...)


@dataclass(frozen=True)
class Metric:
    """One metric. Without ``stats`` and ``score`` (or ``distinct``) it is the mean of its
    per-output field over a setting's outputs; ``sample`` computes that field when a
    record is scored (fields such as length come with the record)."""

    name: str
    help: str  # what the number is: the summary heading's tooltip, `harness list`
    label: str  # chart axis label
    kinds: tuple[str, ...] = KINDS
    higher: bool | None = True  # which way is better; None: a description, not a score
    sample: Callable[[Output], float | None] | None = None  # the per-output score
    field: str = ""  # the record field the per-output score is in (default: name)
    stats: Stats | None = None  # a corpus statistic: per-output counts ...
    score: Score | None = None  # ... and the value of their sum (default: the mean of field)
    distinct: int = 0  # distinct n-grams / n-grams over all outputs, for this n
    binary: bool = False  # per-output values are 0 or 1 (McNemar applies)
    needs_reference: bool = False  # shown only when the outputs have references
    count: bool = False  # a count of outputs: neither an interval nor a `metrics:` choice
    digits: int = 3
    heading: str = ""  # the summary's column heading (default: name)
    charts: tuple[Chart, ...] = ()  # the report's figures of it beside the main one's
    baseline: str = ""  # labels.Baseline's field: what answering the commonest label scores
    optional: bool = False  # shown only where the task lists it under ``metrics``
    applies: Callable[[Scope], bool] | None = None  # shown only where this holds
    signature: Callable[[Scope], str] | None = None  # how a corpus statistic was computed
    unit: str = "word"  # distinct-n: what an n-gram is made of (word or morpheme)

    @property
    def column(self) -> str:
        return self.field or self.name

    @property
    def title(self) -> str:
        return self.heading or self.name

    def outputs_stats(self, records: list[Record], scope: Scope) -> np.ndarray:
        """One row of additive statistics per record (not for distinct n-grams)."""
        if self.stats is not None:
            return self.stats(records, scope)
        values = [self._field(r, scope) for r in records]
        # an output without a score (None), or whose score is NaN (one NaN log-probability
        # from the model), is left out of the mean rather than blanking it
        return np.array([[v, 1.0] if v is not None and v == v else [0.0, 0.0] for v in values],
                        dtype=float).reshape(len(values), 2)

    def _field(self, record: Record, scope: Scope) -> float | None:
        """The record's per-output field (read as a mapping: the registry names it at run
        time); a record scored before this metric existed is scored here."""
        fields: Mapping[str, Any] = record
        if self.column in fields or self.sample is None:
            return fields[self.column]
        return self.sample(output_of(record, list(scope.labels) or None))

    def value(self, sums: np.ndarray, scope: Scope) -> np.ndarray:
        """The metric from summed statistics (any leading shape)."""
        if self.score is not None:
            return self.score(sums, scope)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], np.nan)


# ---------------------------------------------------------------- per-output scores


def _correct(o: Output) -> float:
    gold = o.references[0] if o.references else None
    return float(o.predicted is not None and gold is not None and nfkc(o.predicted) == nfkc(gold))


def _normalised(length: Callable[[str], int]) -> Callable[[Output], float | None]:
    """Right or wrong when each option's log-probability is divided by its ``length``
    (lm-evaluation-harness's acc_norm: characters; acc_bytes: UTF-8 bytes); None for an
    output that was generated, not ranked."""
    def score(o: Output) -> float | None:
        if o.logprobs is None or not o.choices or not o.references:
            return None
        by_length = [lp / max(1, length(c)) for lp, c in zip(o.logprobs, o.choices, strict=True)]
        best = o.choices[int(np.argmax(by_length))]  # the first of a tie, as numpy's argmax
        return float(nfkc(best) == nfkc(o.references[0]))

    return score


def _wrong_language(o: Output) -> float | None:
    """1 where an answer with letters has fewer than half of them Hangul."""
    share = hangul_share(o.text)
    return None if share is None else float(share < 0.5)


def _against_references(fn: Callable[[str, list[str]], float]) -> Callable[[Output], float | None]:
    return lambda o: fn(o.text, o.references) if o.references else None


# ---------------------------------------------------------------- corpus statistics


def _first_references(records: list[Record]) -> tuple[list[str], list[str]]:
    kept = [r for r in records if r.get("references")]
    return [nfkc(r["output"]) for r in kept], [nfkc(r["references"][0]) for r in kept]


def _first(references: list[str] | None) -> str | None:
    """The first reference (the target), if any."""
    return references[0] if references else None


def _sacrebleu(stats: Callable[[Sequence[str], Sequence[str], Scope], np.ndarray]) -> Stats:
    def per_output(records: list[Record], scope: Scope) -> np.ndarray:
        rows = np.zeros((len(records), stats([], [], scope).shape[1]))
        with_refs = [i for i, r in enumerate(records) if r.get("references")]
        rows[with_refs] = stats(*_first_references([records[i] for i in with_refs]), scope)
        return rows

    return per_output


def _confusion(records: list[Record], scope: Scope) -> np.ndarray:
    golds = [_first(r.get("references")) for r in records]
    answers = [r.get("predicted") for r in records]
    if scope.positions:  # multiple_choice: which of the item's choices, by position
        golds = [_position(r, gold) for r, gold in zip(records, golds, strict=True)]
        answers = [_position(r, answer) for r, answer in zip(records, answers, strict=True)]
    else:
        golds = [None if g is None else nfkc(g) for g in golds]
        answers = [None if a is None else nfkc(a) for a in answers]
    return corpus.confusion_stats(golds, answers, [nfkc(label) for label in scope.labels])


def _position(record: Record, text: str | None) -> str | None:
    """The position, from "1", of ``text`` among the record's choices (None if absent)."""
    if text is None:
        return None
    found = [nfkc(c) for c in record.get("choices") or []]
    return str(found.index(nfkc(text)) + 1) if nfkc(text) in found else None


def _count(test: Callable[[Record], bool]) -> Stats:
    return lambda records, scope: np.array([[float(test(r))] for r in records]).reshape(-1, 1)


def _sum(sums: np.ndarray, scope: Scope) -> np.ndarray:
    return sums[..., 0]


# ---------------------------------------------------------------- the registry

METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "share of outputs whose first named label is the reference",
           "accuracy", kinds=CHOSEN, sample=_correct, field="correct",
           binary=True, baseline="accuracy"),
    Metric("macro_f1", "mean over labels (multiple_choice: choice positions) of each one's "
           "F1, those that are a reference or an answer; a model that always gives one "
           "answer scores low here", "macro-F1", kinds=CHOSEN, stats=_confusion,
           score=lambda s, scope: corpus.macro_f1(s, len(scope.labels)), heading="macro F1",
           baseline="macro_f1", charts=(Chart("shots", (
               "Macro-F1 (each label's F1, averaged) against shot count: unlike accuracy, "
               "answering the commonest label every time scores low here.")),)),
    Metric("invalid", "share of outputs that name none of the labels (or choices)",
           "no label named", kinds=CHOSEN, higher=False,
           sample=lambda o: float(o.predicted is None), binary=True),
    Metric("acc_norm", "ranked options only: accuracy when each option's log-probability is "
           "divided by its length in characters (lm-evaluation-harness's acc_norm)",
           "accuracy, length-normalised", kinds=CHOSEN, sample=_normalised(len), binary=True,
           applies=lambda scope: scope.ranked),
    Metric("acc_bytes", "ranked options only: accuracy when each option's log-probability is "
           "divided by its length in UTF-8 bytes (lm-evaluation-harness's acc_bytes)",
           "accuracy, byte-normalised", kinds=CHOSEN,
           sample=_normalised(lambda c: len(c.encode("utf-8"))), binary=True, optional=True),
    Metric("exact_match", "share of outputs equal to a reference (normalized)",
           "exact match", kinds=("qa",), sample=_against_references(exact_match),
           binary=True),
    Metric("f1", "character F1 against the best reference, as KorQuAD's evaluation",
           "character F1", kinds=("qa", "generation"), sample=_against_references(char_f1),
           needs_reference=True),
    Metric("contains", "share of outputs that contain a reference", "answer contained",
           kinds=("qa",), sample=_against_references(contains_answer), binary=True),
    Metric("korquad_em", "KorQuAD 1.0's exact match: the answer equals a reference after its "
           "official normalisation (quotes, brackets and ASCII punctuation dropped)",
           "exact match (KorQuAD)", kinds=("qa",), sample=_against_references(korquad_exact),
           binary=True, optional=True),
    Metric("korquad_f1", "KorQuAD 1.0's F1: over the characters of the normalised answer and "
           "reference (spaces left out), the best reference", "character F1 (KorQuAD)",
           kinds=("qa",), sample=_against_references(korquad_f1), optional=True),
    Metric("bleu", "corpus BLEU against the first reference, 0-100 (sacrebleu; tokenizer "
           "13a, or ko-mecab / char for Korean references: see the signature)", "BLEU",
           kinds=("translation",),
           stats=_sacrebleu(lambda o, r, scope: corpus.bleu_stats(o, r, scope.bleu_tokenize)),
           score=lambda s, scope: corpus.bleu_score(s), digits=1,
           signature=lambda scope: corpus.bleu_signature(scope.bleu_tokenize)),
    Metric("chrf", "corpus chrF against the first reference, 0-100 (sacrebleu)", "chrF",
           kinds=("translation", "generation"),
           stats=_sacrebleu(lambda o, r, scope: corpus.chrf_stats(o, r)),
           score=lambda s, scope: corpus.chrf_score(s), needs_reference=True, digits=1,
           signature=lambda scope: corpus.chrf_signature()),
    Metric("distinct_1", "distinct words / words, over all outputs; it falls as outputs "
           "grow, so compare settings that return as many (interval: jackknife over items)",
           "distinct-1", kinds=("translation", "generation"), distinct=1),
    Metric("distinct_2", "distinct word pairs / word pairs, over all outputs; it falls as "
           "outputs grow, so compare settings that return as many (interval: jackknife over "
           "items)", "distinct-2", kinds=("translation", "generation"), distinct=2,
           charts=(Chart("bars", "How varied each setting's outputs are (distinct word pairs "
                         "over all outputs), with 95% intervals."),)),
    Metric("distinct_1_morph", "distinct morphemes / morphemes (Kiwi's analysis), over all "
           "outputs: distinct-1 for Korean, whose words carry their particles and endings",
           "distinct-1 (morphemes)", kinds=("translation", "generation"), distinct=1,
           unit="morpheme", optional=True, heading="distinct-1 (morphemes)"),
    Metric("distinct_2_morph", "distinct morpheme pairs / morpheme pairs (Kiwi's analysis), "
           "over all outputs", "distinct-2 (morphemes)", kinds=("translation", "generation"),
           distinct=2, unit="morpheme", optional=True, heading="distinct-2 (morphemes)"),
    Metric("repetition", "mean share of an output's word 3-grams that repeat an earlier one",
           "repeated 3-gram rate", kinds=GENERATED, higher=False,
           sample=lambda o: repeated_ngram_rate(o.text, 3), charts=(
               Chart("bars", "How much each setting loops (repeated word 3-grams within an "
                             "output; lower is better), with 95% intervals."),
               Chart("versus", "The trade-off between likely and varied text: greedy and "
                               "beam search sit high (likely) and often to the right (looping); "
                               "sampling lower and to the left.",
                     other="logprob", title="likely vs varied"))),
    Metric("hangul", "mean share of an answer's letters that are Hangul (answers with no "
           "letters left out)", "Hangul share", kinds=GENERATED, higher=None,
           sample=lambda o: hangul_share(o.text), applies=lambda scope: scope.korean),
    Metric("wrong_language", "share of answers (with letters) less than half Hangul, where "
           "Korean is expected (the task's language: ko, or Korean references)",
           "not in Korean", kinds=GENERATED, higher=False, sample=_wrong_language,
           binary=True, applies=lambda scope: scope.korean),
    Metric("length", "mean tokens generated", "tokens generated", higher=None,
           field="n_tokens", digits=1),
    Metric("logprob", "mean log-probability per generated token under the model (how "
           "likely the model finds its own answer, not how good it is)", "mean log-prob per token",
           higher=None, field="mean_logprob"),
    Metric("stop_eos", "outputs that ended with the end-of-sequence token", "ended at eos",
           higher=None, stats=_count(lambda r: r.get("stop_reason") == "eos"), score=_sum,
           count=True, heading="eos"),
    Metric("stop_string", "outputs cut at a stop string", "cut at a stop string",
           higher=None, stats=_count(lambda r: r.get("stop_reason") == "stop"), score=_sum,
           count=True, heading="stop str"),
    Metric("stop_length", "outputs that ran to max_new_tokens", "ran to max_new_tokens",
           higher=None, stats=_count(lambda r: r.get("stop_reason") == "length"), score=_sum,
           count=True, heading="max len"),
    Metric("n", "outputs", "outputs", higher=None, stats=_count(lambda r: True), score=_sum,
           count=True),
)

# The metric a kind's summary and charts lead with when the task chooses none: the first
# of these that the run has.
MAIN = {"classification": ["accuracy"], "multiple_choice": ["accuracy"], "qa": ["f1"],
        "translation": ["chrf"], "generation": ["chrf", "distinct_2"]}
# The per-output field that marks an answer right (1) or wrong (0) on the page.
RIGHT_OR_WRONG = {"classification": "correct", "multiple_choice": "correct",
                  "qa": "exact_match"}

# Everything below reads METRICS when called, never a copy made at import: an entry added
# to METRICS is at once scored, summarised, validated, charted and in the schema.


def sample_fields() -> tuple[str, ...]:
    """The fields ``score_sample`` writes into a record (any kind)."""
    per_output = (m.column for m in METRICS
                  if m.sample and m.column != "correct" and not m.optional)
    return ("predicted", "correct", *dict.fromkeys(per_output))


def __getattr__(name: str) -> Any:
    if name == "SAMPLE_FIELDS":  # metrics.SAMPLE_FIELDS, as records and runs.folders read it
        return sample_fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def find(name: str) -> Metric | None:
    return next((m for m in METRICS if m.name == name), None)


def get(name: str) -> Metric:
    found = find(name)
    if found is None:
        raise KeyError(name)
    return found


def for_kind(kind: str, references: bool = True) -> list[Metric]:
    """The metrics a kind's summary shows, in the registry's order; without references,
    those that compare with one are left out."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind: {kind!r}")
    return [m for m in METRICS if kind in m.kinds and (references or not m.needs_reference)]


def shown(kind: str, references: bool = True, scope: Scope | None = None,
          chosen: Sequence[str] = ()) -> list[Metric]:
    """The metrics a run's summary shows: the kind's, less the optional ones the task did
    not choose and those that do not apply (``applies``: the language check where Korean
    is not expected)."""
    return [m for m in for_kind(kind, references)
            if (not m.optional or m.name in chosen)
            and (m.applies is None or (scope is not None and m.applies(scope)))]


def metric_names(kind: str) -> list[str]:
    """The metric names a task of ``kind`` may list under ``metrics``."""
    return [m.name for m in for_kind(kind) if not m.count]


def every_name() -> list[str]:
    """Every name any kind may list under ``metrics`` (the schema's choices)."""
    return [m.name for m in METRICS if not m.count]


def main_metric(kind: str, available: Sequence[str]) -> str | None:
    return next((name for name in MAIN[kind] if name in available), None)


# ---------------------------------------------------------------- per output / aggregate


def score_sample(
    kind: str, output: str, references: list[str], labels: list[str] | None, *,
    choices: list[str] | None = None, logprobs: list[float] | None = None,
    answer_format: str = "text",
) -> dict[str, float | str | None]:
    """Per-output scores for a task ``kind``: each of its metrics' per-output field, the
    label or choice named (classification, multiple_choice) and whether the answer is
    right (those and qa).

    For classification without ``labels`` the references serve as the label set. A
    ranked output comes with its options (``choices``: the labels, or the item's choices)
    and their ``logprobs``; a generated multiple_choice answer is read as
    ``answer_format`` says (the choice's text, letter or number).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown task kind: {kind!r}")
    scores: dict[str, float | str | None] = {}
    predicted = None
    if kind == "classification":
        predicted = first_label(output, labels if labels is not None else references)
        scores["predicted"] = predicted
    elif kind == "multiple_choice":
        if logprobs is not None and choices:
            predicted = choices[int(np.argmax(logprobs))]
        else:
            predicted = parse_choice(output, choices or [], answer_format)
        scores["predicted"] = predicted
    seen = Output(output, references, labels, predicted, choices, logprobs)
    for metric in for_kind(kind):
        if metric.sample is not None and not metric.optional:  # optional: when summarised
            scores[metric.column] = metric.sample(seen)
    scores["correct"] = scores.get(RIGHT_OR_WRONG.get(kind, ""))
    return scores


def parse_choice(output: str, choices: list[str], answer_format: str) -> str | None:
    """The choice a generated answer names: its letter (A, B, ... standing alone), its
    number (1, 2, ...) or its text (the first named), after NFKC; None if none is."""
    import re

    text = nfkc(output)
    if answer_format == "letter":
        for found in re.finditer(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])", text):
            index = ord(found.group(1).upper()) - ord("A")
            if index < len(choices):
                return choices[index]
        return None
    if answer_format == "number":
        for found in re.finditer(r"(?<!\d)(\d+)(?!\d)", text):
            if 1 <= int(found.group(1)) <= len(choices):
                return choices[int(found.group(1)) - 1]
        return None
    return first_label(text, choices)


def ranking_of(record: Record) -> tuple[list[str] | None, list[float] | None]:
    """The options a record's answer was ranked among and their log-probabilities (None
    for a generated answer), and a multiple_choice record's choices."""
    if record.get("choice_logprobs") is not None:
        return record.get("choices"), record["choice_logprobs"]
    if record.get("label_logprobs"):
        return list(record["label_logprobs"]), list(record["label_logprobs"].values())
    return record.get("choices"), None


def output_of(record: Record, labels: list[str] | None) -> Output:
    """What a per-output score sees of a record."""
    choices, logprobs = ranking_of(record)
    return Output(record["output"], record.get("references") or [], labels,
                  record.get("predicted"), choices, logprobs)


def korean_expected(records: list[Record], language: str | None = None) -> bool:
    """Whether answers should be Korean: the task says ``language: ko``, or (no language
    given) most letters of the references are Hangul."""
    if language is not None:
        return language == "ko"
    text = "".join((r.get("references") or [""])[0] for r in records[:1000])
    share = hangul_share(text)
    return share is not None and share >= 0.5


def bleu_tokenizer(korean: bool) -> str:
    """BLEU's default tokenizer: ko-mecab for Korean (char where sacrebleu[ko] is not
    installed: whitespace alone splits Korean into words with their particles), else 13a."""
    if not korean:
        return "13a"
    try:
        import mecab_ko  # noqa: F401  (sacrebleu[ko])
    except ImportError:
        return "char"
    return "ko-mecab"


def scope_of(kind: str, records: list[Record], labels: Sequence[str] | None = None,
             language: str | None = None, bleu_tokenize: str | None = None) -> Scope:
    """The aggregates' scope. Classification: the task's labels, then any other reference
    or answer the records name (in the order first met, compared after NFKC), so that
    every output has a cell in the confusion matrix. Multiple choice: the positions of
    the most choices an item has. Free text: whether Korean is expected, and BLEU's
    tokenizer (the task's, else chosen by that)."""
    ranked = any(r.get("choice_logprobs") is not None or r.get("label_logprobs")
                 for r in records)
    if kind == "multiple_choice":
        most = max((len(r.get("choices") or []) for r in records), default=0)
        return Scope(tuple(str(i) for i in range(1, most + 1)), positions=True, ranked=ranked)
    if kind != "classification":
        korean = korean_expected(records, language)
        return Scope(korean=korean, bleu_tokenize=bleu_tokenize or bleu_tokenizer(korean))
    found = list(labels or [])
    seen = {nfkc(label) for label in found}
    for record in records:
        for name in (_first(record.get("references")), record.get("predicted")):
            if name is not None and nfkc(name) not in seen:
                found.append(name)
                seen.add(nfkc(name))
    return Scope(tuple(found), ranked=ranked)


def aggregate(kind: str, rows: list[Record], labels: Sequence[str] | None = None,
              chosen: Sequence[str] = ()) -> dict[str, float | None]:
    """Each of the kind's metrics over ``rows`` (records with their ``score_sample``
    fields): its value over all outputs, without intervals (summary.py adds those)."""
    scope = scope_of(kind, rows, labels)
    references = any(r.get("references") for r in rows)
    result: dict[str, float | None] = {}
    for metric in shown(kind, references, scope, chosen):
        result[metric.name] = value_of(metric, rows, scope)
    return result


def splitter(metric: Metric) -> Callable[[str], list[str]]:
    """How a distinct-n metric splits a text into units."""
    return morphemes if metric.unit == "morpheme" else str.split


def value_of(metric: Metric, rows: list[Record], scope: Scope) -> float | None:
    """One metric over ``rows``: None when no output has a value for it."""
    if metric.distinct:
        return distinct_n([r["output"] for r in rows], metric.distinct, splitter(metric))
    value = float(metric.value(metric.outputs_stats(rows, scope).sum(axis=0), scope))
    return None if np.isnan(value) else value
