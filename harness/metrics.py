"""Scoring functions for model outputs: per-sample scores and per-task aggregates.

Everything here is a pure function on strings (and token ids); no model, no I/O.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

# Task kind -> the aggregate key the report ranks models by.
MAIN_METRIC: dict[str, str] = {
    "classification": "accuracy",
    "qa": "f1",
    "translation": "chrf",
    "generation": "distinct_2",
}

# Direction of each aggregate key; keys left out (n, length, stop_*) are neutral.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "invalid": False,
    "exact_match": True,
    "f1": True,
    "contains": True,
    "bleu": True,
    "chrf": True,
    "distinct_1": True,
    "distinct_2": True,
    "repetition": False,
    "logprob": True,
}


# The aggregate keys each kind reports before the ones every kind reports.
KIND_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy", "invalid"],
    "qa": ["exact_match", "f1", "contains"],
    "translation": ["bleu", "chrf"],
    "generation": ["f1", "chrf"],
}
COMMON_METRICS = ["distinct_1", "distinct_2", "repetition", "length", "logprob"]


def metric_names(kind: str) -> list[str]:
    """The metric names a task of ``kind`` may list under ``metrics``."""
    return KIND_METRICS[kind] + COMMON_METRICS


# ---------------------------------------------------------------- string metrics


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


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu, tokenizer 13a), one reference per prediction; 0-100."""
    if not predictions:
        return 0.0
    return float(BLEU(tokenize="13a").corpus_score(predictions, [references]).score)


def chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu defaults), one reference per prediction; 0-100."""
    if not predictions:
        return 0.0
    return float(CHRF().corpus_score(predictions, [references]).score)


def _ngrams(seq: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / total word n-grams over all texts; 0.0 if there are none."""
    grams = [g for text in texts for g in _ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _repeat_rate(seq: Sequence[Hashable], n: int) -> float:
    """Share of the n-grams of ``seq`` that already occurred earlier in ``seq``."""
    grams = _ngrams(seq, n)
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


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the non-None values; None when there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


# ---------------------------------------------------------------- per sample / aggregate


# The fields ``score_sample`` writes into a record (any kind).
SAMPLE_FIELDS = ("predicted", "correct", "invalid", "exact_match", "f1", "contains", "repetition")


def score_sample(
    kind: str, output: str, references: list[str], labels: list[str] | None
) -> dict[str, float | str | None]:
    """Per-output scores for a task ``kind`` (classification, qa, translation, generation).

    For classification without ``labels`` the references serve as the label set.
    """
    scores: dict[str, float | str | None] = {}
    if kind == "classification":
        predicted = first_label(output, labels if labels is not None else references)
        gold = references[0] if references else None
        scores["predicted"] = predicted
        scores["correct"] = float(predicted is not None and predicted == gold)
        scores["invalid"] = float(predicted is None)
    elif kind == "qa":
        scores["exact_match"] = exact_match(output, references)
        scores["f1"] = char_f1(output, references)
        scores["contains"] = contains_answer(output, references)
        scores["correct"] = scores["exact_match"]
    elif kind in ("translation", "generation"):
        scores["correct"] = None
        if kind == "generation" and references:
            scores["f1"] = char_f1(output, references)
    else:
        raise ValueError(f"unknown task kind: {kind!r}")
    scores["repetition"] = repeated_ngram_rate(output, 3)
    return scores


def _column(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [row.get(key) for row in rows]


def aggregate(kind: str, rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Aggregate per-output records (with their ``score_sample`` fields) into task metrics."""
    result: dict[str, float | None] = {}
    outputs = [row["output"] for row in rows]
    if kind == "classification":
        result["accuracy"] = mean(_column(rows, "correct"))
        result["invalid"] = float(sum(v or 0.0 for v in _column(rows, "invalid")))
    elif kind == "qa":
        for key in ("exact_match", "f1", "contains"):
            result[key] = mean(_column(rows, key))
    elif kind == "translation":
        refs = [row["references"][0] if row["references"] else "" for row in rows]
        result["bleu"] = bleu(outputs, refs)
        result["chrf"] = chrf(outputs, refs)
    elif kind == "generation":
        with_refs = [row for row in rows if row.get("references")]
        if with_refs:
            result["f1"] = mean(_column(with_refs, "f1"))
            result["chrf"] = chrf(
                [row["output"] for row in with_refs],
                [row["references"][0] for row in with_refs],
            )
    else:
        raise ValueError(f"unknown task kind: {kind!r}")

    result["distinct_1"] = distinct_n(outputs, 1)
    result["distinct_2"] = distinct_n(outputs, 2)
    result["repetition"] = mean(
        row["repetition"] if "repetition" in row else repeated_ngram_rate(row["output"], 3)
        for row in rows
    )
    result["length"] = mean(_column(rows, "n_tokens"))
    result["logprob"] = mean(_column(rows, "mean_logprob"))
    stops = Counter(_column(rows, "stop_reason"))
    result["stop_eos"] = float(stops["eos"])
    result["stop_string"] = float(stops["stop"])
    result["stop_length"] = float(stops["length"])
    result["n"] = float(len(rows))
    return result
