"""Scores of one output against its references: pure functions on strings (and token ids).

No model, no I/O, no aggregation: the metric registry (metrics.py) calls these per
output, and corpus.py turns whole sets of outputs into corpus statistics.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence


def normalize(text: str) -> str:
    """NFKC, lowercase, drop punctuation/symbols (Unicode P*, S*), collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    return " ".join(kept.split())


def first_label(output: str, labels: list[str]) -> str | None:
    """Return the label named earliest in ``output`` (longest wins a tie), or None."""
    text = normalize(output)
    best: tuple[int, int] | None = None
    chosen: str | None = None
    for label in labels:
        needle = normalize(label)
        if not needle:
            continue
        pos = text.find(needle)
        if pos < 0:
            continue
        key = (pos, -len(needle))
        if best is None or key < best:
            best, chosen = key, label
    return chosen


def exact_match(prediction: str, references: list[str]) -> float:
    """1.0 if the normalized prediction equals any normalized reference."""
    pred = normalize(prediction)
    return float(any(pred == normalize(ref) for ref in references))


def _char_f1_single(prediction: str, reference: str) -> float:
    pred = Counter(normalize(prediction).replace(" ", ""))
    ref = Counter(normalize(reference).replace(" ", ""))
    common = sum((pred & ref).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision = common / sum(pred.values())
    recall = common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def char_f1(prediction: str, references: list[str]) -> float:
    """KorQuAD-2.0-style character-multiset F1 (whitespace ignored), max over references."""
    return max((_char_f1_single(prediction, ref) for ref in references), default=0.0)


def contains_answer(prediction: str, references: list[str]) -> float:
    """1.0 if any non-empty normalized reference occurs in the normalized prediction."""
    pred = normalize(prediction)
    return float(any((ref := normalize(r)) and ref in pred for r in references))


def ngrams(seq: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / total word n-grams over all texts; 0.0 if there are none."""
    grams = [g for text in texts for g in ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _repeat_rate(seq: Sequence[Hashable], n: int) -> float:
    """Share of the n-grams of ``seq`` that already occurred earlier in ``seq``."""
    grams = ngrams(seq, n)
    if not grams:
        return 0.0
    seen: set[tuple[Hashable, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of the text's word n-grams that repeat an earlier one in the same text."""
    return _repeat_rate(text.split(), n)


def repeated_ngram_rate_ids(ids: list[int], n: int = 3) -> float:
    """Same as ``repeated_ngram_rate`` but over token ids."""
    return _repeat_rate(ids, n)
