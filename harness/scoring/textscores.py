"""Scores of one output against its references: pure functions on strings (and token ids).

No model, no I/O, no aggregation: the metric registry (metrics.py) calls these per
output, and corpus.py turns whole sets of outputs into corpus statistics.
"""

from __future__ import annotations

import functools
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any


def nfkc(text: str) -> str:
    """Unicode NFKC: the form every comparison of texts uses, so that Hangul typed as
    decomposed jamo (NFD, as some editors save it) equals the same syllables composed."""
    return unicodedata.normalize("NFKC", text)


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


def distinct_n(texts: list[str], n: int, split: Callable[[str], list[str]] = str.split) -> float:
    """Distinct word n-grams / total word n-grams over all texts; 0.0 if there are none
    (``split``: the units, words by default; ``morphemes`` for Korean morphemes)."""
    grams = [g for text in texts for g in ngrams(split(text), n)]
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


# ---------------------------------------------------------------- KorQuAD 1.0

# The characters KorQuAD 1.0's official evaluation turns into spaces before it drops
# ASCII punctuation (its normalize_answer); NFKC comes first here, as everywhere.
_KORQUAD_SPACED = str.maketrans({ch: " " for ch in "'\"《》<>〈〉()‘’"})
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def korquad_normalize(text: str) -> str:
    """KorQuAD 1.0's answer normalisation: quotes and brackets to spaces, ASCII punctuation
    dropped, lowercase, whitespace collapsed (after NFKC)."""
    text = unicodedata.normalize("NFKC", text).translate(_KORQUAD_SPACED).lower()
    return " ".join(text.translate(_ASCII_PUNCTUATION).split())


def korquad_exact(prediction: str, references: list[str]) -> float:
    """1.0 where the normalised prediction equals a normalised reference (KorQuAD 1.0 EM)."""
    pred = korquad_normalize(prediction)
    return float(any(pred == korquad_normalize(ref) for ref in references))


def korquad_f1(prediction: str, references: list[str]) -> float:
    """KorQuAD 1.0's F1: over the characters of the normalised words (spaces left out),
    the best over the references."""
    def chars(text: str) -> Counter[str]:
        return Counter("".join(korquad_normalize(text).split()))

    pred = chars(prediction)
    best = 0.0
    for reference in references:
        ref = chars(reference)
        same = sum((pred & ref).values())
        if same:
            precision, recall = same / sum(pred.values()), same / sum(ref.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# ---------------------------------------------------------------- language

_HANGUL = ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F),
           (0xD7B0, 0xD7FF))


def is_hangul(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _HANGUL)


def hangul_share(text: str) -> float | None:
    """The share of the text's letters (Unicode L*, after NFKC) that are Hangul; None
    for a text with no letters (digits, punctuation or nothing)."""
    letters = [ch for ch in unicodedata.normalize("NFKC", text)
               if unicodedata.category(ch)[0] == "L"]
    if not letters:
        return None
    return sum(map(is_hangul, letters)) / len(letters)


def morphemes(text: str) -> list[str]:
    """The text's morphemes as Kiwi (the kiwipiepy package) splits them."""
    return [token.form for token in _kiwi().tokenize(unicodedata.normalize("NFKC", text))]


@functools.cache
def _kiwi() -> Any:
    from kiwipiepy import Kiwi  # imported only for the morpheme metrics

    return Kiwi()
