"""Corpus statistics as sums of per-output statistics, so that a resample is a weighted sum.

BLEU and chrF are not means of per-output scores: each is computed from counts summed
over the corpus (matched n-grams, lengths). sacrebleu gives those counts per output;
``bleu_score`` and ``chrf_score`` turn summed counts into the score, for many sums at once
(one per bootstrap resample), with sacrebleu's formulas and defaults (BLEU: 13a tokens,
exponential smoothing; chrF: character 6-grams, beta 2). Macro-F1 is the same shape: the
confusion counts sum, the score comes from the sum. Distinct-n counts distinct n-grams,
which do not add up over outputs; ``Grams`` keeps what its jackknife needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BLEU_ORDER = 4  # sacrebleu's default max n-gram order
CHRF_ORDER = 6  # sacrebleu's default character order (no word n-grams: chrF, not chrF++)
CHRF_BETA = 2


def bleu_stats(outputs: Sequence[str], references: Sequence[str],
               tokenize: str = "13a") -> np.ndarray:
    """Per output: [length, reference length, matches of 1..4-grams, 1..4-grams], the
    texts split by sacrebleu's ``tokenize`` (13a; ko-mecab or char for Korean)."""
    if not outputs:
        return np.zeros((0, 2 + 2 * BLEU_ORDER))
    metric = _bleu(tokenize)
    return np.array(metric._extract_corpus_statistics(list(outputs), [list(references)]),
                    dtype=float)


@functools.cache
def _bleu(tokenize: str) -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize)


@functools.cache
def bleu_signature(tokenize: str = "13a") -> str:
    """sacrebleu's signature of the BLEU computed here (one reference: the first), so that
    a reader can compute the same number with sacrebleu itself."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize)
    metric.corpus_score(["."], [["."]])  # a signature names the references' count
    return str(metric.get_signature())


@functools.cache
def chrf_signature() -> str:
    """sacrebleu's signature of the chrF computed here."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    metric.corpus_score(["."], [["."]])
    return str(metric.get_signature())


def bleu_score(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU (0-100) from summed ``bleu_stats``, as sacrebleu's compute_bleu does with
    exponential smoothing; ``sums`` is (..., 10)."""
    sys_len, ref_len = sums[..., 0], sums[..., 1]
    correct = sums[..., 2:2 + BLEU_ORDER]
    total = sums[..., 2 + BLEU_ORDER:]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        penalty = np.where(sys_len < ref_len,
                           np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        # an order with no match counts as 100 / (2^k total), k counting such orders so far
        halvings = np.cumsum(correct == 0, axis=-1)
        precision = np.where(correct > 0, 100.0 * correct / total,
                             100.0 / (2.0 ** halvings * total))
        score = penalty * np.exp(np.log(precision).mean(axis=-1))
    nothing = (correct == 0).all(axis=-1) | (total == 0).any(axis=-1)
    return np.where(nothing, 0.0, score)


def chrf_stats(outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per output: [output n-grams, reference n-grams, matches] for character 1..6-grams."""
    from sacrebleu.metrics import CHRF

    if not outputs:
        return np.zeros((0, 3 * CHRF_ORDER))
    metric = CHRF()
    return np.array(metric._extract_corpus_statistics(list(outputs), [list(references)]),
                    dtype=float)


def chrf_score(sums: np.ndarray) -> np.ndarray:
    """Corpus chrF (0-100) from summed ``chrf_stats``, as sacrebleu computes it: precision
    and recall averaged over the orders that both sides have, then F-beta."""
    counts = sums.reshape(*sums.shape[:-1], CHRF_ORDER, 3)
    hyp, ref, match = counts[..., 0], counts[..., 1], counts[..., 2]
    both = (hyp > 0) & (ref > 0)
    orders = both.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(both, match / hyp, 0.0).sum(axis=-1) / orders
        recall = np.where(both, match / ref, 0.0).sum(axis=-1) / orders
        factor = CHRF_BETA ** 2
        score = 100 * (1 + factor) * precision * recall / (factor * precision + recall)
    return np.where((orders > 0) & (precision + recall > 0), score, 0.0)


# ---------------------------------------------------------------- classification


def confusion_stats(golds: Sequence[str | None], predicted: Sequence[str | None],
                    labels: Sequence[str]) -> np.ndarray:
    """Per output, a one-hot confusion cell: reference label (rows) × answer (columns, the
    labels then "no label"), flattened. An output whose reference is not a label is zeros."""
    size = len(labels)
    index: dict[str | None, int] = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(golds), size * (size + 1)))
    for row, (gold, answer) in enumerate(zip(golds, predicted, strict=True)):
        if gold in index:
            out[row, index[gold] * (size + 1) + index.get(answer, size)] = 1.0
    return out


def confusion(sums: np.ndarray, size: int) -> np.ndarray:
    """Summed ``confusion_stats`` as matrices (..., labels, labels + 1)."""
    return sums.reshape(*sums.shape[:-1], size, size + 1)


def per_label(sums: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of each label, with its references and answers, from summed
    ``confusion_stats``; a precision or recall with nothing to divide is NaN, and F1 is 0
    when the label has no right answer (as scikit-learn's zero_division=0)."""
    matrix = confusion(sums, size)
    hits = np.diagonal(matrix[..., :size], axis1=-2, axis2=-1)
    support = matrix.sum(axis=-1)  # references of each label
    answered = matrix[..., :size].sum(axis=-2)  # answers naming each label
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(answered > 0, hits / answered, np.nan)
        recall = np.where(support > 0, hits / support, np.nan)
        denominator = support + answered
        f1 = np.where(denominator > 0, 2 * hits / denominator, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "answered": answered}


def macro_f1(sums: np.ndarray, size: int) -> np.ndarray:
    """The mean F1 over the labels that are a reference or an answer at least once (as
    scikit-learn's f1_score(average="macro") without a label list); "no label" answers
    are wrong answers, not a label."""
    scores = per_label(sums, size)
    present = (scores["support"] > 0) | (scores["answered"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(present, scores["f1"], 0.0).sum(axis=-1) / present.sum(axis=-1)


# ---------------------------------------------------------------- distinct n-grams


@dataclass(frozen=True)
class Grams:
    """The word n-grams of a set of items' outputs: for each item the ids of the distinct
    n-grams it has and how many n-grams it has in all (repeats counted)."""

    ids: list[np.ndarray]
    totals: np.ndarray

    @classmethod
    def of(cls, texts_by_item: Sequence[Sequence[str]], n: int,
           split: Callable[[str], list[str]] = str.split) -> Grams:
        from harness.scoring.textscores import ngrams

        vocabulary: dict[tuple[Hashable, ...], int] = {}
        ids, totals = [], []
        for texts in texts_by_item:
            grams = [g for text in texts for g in ngrams(split(text), n)]
            ids.append(np.unique(np.fromiter(
                (vocabulary.setdefault(g, len(vocabulary)) for g in grams), dtype=np.int64,
                count=len(grams))))
            totals.append(len(grams))
        return cls(ids, np.array(totals, dtype=float))

    def take(self, rows: np.ndarray) -> Grams:
        return Grams([self.ids[i] for i in rows], self.totals[rows])

    def value(self) -> float:
        """Distinct n-grams / n-grams, over every item; 0.0 when there are none."""
        total = self.totals.sum()
        if total == 0:
            return 0.0
        return len(np.unique(np.concatenate(self.ids))) / total

    def leave_one_out(self) -> np.ndarray:
        """The value with each item left out in turn (NaN where nothing is left)."""
        if not self.ids:
            return np.zeros(0)
        joined = np.concatenate(self.ids)
        items_with = np.bincount(joined) if joined.size else np.zeros(0, dtype=np.int64)
        distinct = int((items_with > 0).sum())
        only_here = np.array([int((items_with[i] == 1).sum()) for i in self.ids])
        rest = self.totals.sum() - self.totals
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rest > 0, (distinct - only_here) / rest, np.nan)
