"""How far raters agree, and how many more ratings a comparison needs.

- ``alpha``: Krippendorff's alpha over units rated by any number of raters (missing
  ratings allowed), for nominal or interval values: 1 - observed / expected
  disagreement, both taken over the pairs of values within a unit (Krippendorff,
  "Computing Krippendorff's Alpha-Reliability", 2011). Units with one value carry no
  information and are left out; so is everything when fewer than two units remain.
- ``kappa``: Cohen's kappa between two raters on the same units (quadratic weights for
  an ordered scale).
- ``rank_correlation``: Spearman's rho (ties get their mean rank).
- ``items_needed`` / ``pairs_needed``: from the observed spread, how many items (or
  decisive pairs) a paired test would need to find the observed difference at
  p < 0.05 four times in five.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Level = Literal["nominal", "interval"]
_Z_ALPHA = 1.959963984540054  # two-sided 5%
_Z_POWER = 0.8416212335729143  # 80% power


@dataclass(frozen=True)
class Alpha:
    value: float | None  # None: too few units rated twice, or no variation at all
    units: int  # units with two or more values
    values: int  # values in those units


def alpha(units: Mapping[Any, Sequence[float]], level: Level = "interval") -> Alpha:
    """Krippendorff's alpha: ``units`` maps each unit to the values its raters gave."""
    kept = [np.asarray(v, dtype=float) for v in units.values() if len(v) >= 2]
    if len(kept) < 2:
        return Alpha(None, len(kept), sum(len(v) for v in kept))
    every = np.concatenate(kept)
    n = len(every)
    observed = sum(_pairs(v, v, level).sum() / (len(v) - 1) for v in kept) / n
    expected = _pairs(every, every, level).sum() / (n * (n - 1))
    if expected == 0:  # every value the same: agreement cannot be told from chance
        return Alpha(None, len(kept), n)
    return Alpha(float(1 - observed / expected), len(kept), n)


def _pairs(a: np.ndarray, b: np.ndarray, level: Level) -> np.ndarray:
    """The squared difference (interval) or the mismatch (nominal) of every pair;
    a value with itself adds 0, so sums over it equal sums over distinct pairs."""
    if level == "nominal":
        return (a[:, None] != b[None, :]).astype(float)
    return (a[:, None] - b[None, :]) ** 2


def kappa(a: Sequence[Hashable], b: Sequence[Hashable],
          order: Sequence[Hashable] | None = None) -> float | None:
    """Cohen's kappa of two raters' labels on the same units; with ``order`` (the scale,
    worst first) quadratically weighted. None when chance alone explains everything."""
    if len(a) != len(b):
        raise ValueError("kappa needs the two raters' labels of the same units")
    if not a:
        return None
    categories = list(order) if order is not None else sorted(set(a) | set(b), key=str)
    index = {c: i for i, c in enumerate(categories)}
    k = len(categories)
    table = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    table /= table.sum()
    chance = np.outer(table.sum(axis=1), table.sum(axis=0))
    i, j = np.indices((k, k))
    weights = ((i - j) ** 2 / max(1, (k - 1) ** 2)) if order is not None else (i != j) * 1.0
    expected = float((weights * chance).sum())
    if expected == 0:
        return None
    return 1 - float((weights * table).sum()) / expected


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="stable")
    out = np.empty(len(array))
    i = 0
    while i < len(array):
        j = i
        while j + 1 < len(array) and array[order[j + 1]] == array[order[i]]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return out


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho; None with fewer than three pairs or a constant side."""
    if len(a) != len(b):
        raise ValueError("rank correlation needs paired values")
    if len(a) < 3:
        return None
    x, y = ranks(a), ranks(b)
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return None if norm == 0 else float((x * y).sum() / norm)


def items_needed(differences: Sequence[float], alpha: float = 0.05) -> int | None:
    """Items a paired test needs to separate two results whose per-item differences look
    like these (normal approximation, two-sided at ``alpha``, 80% power); None when no
    difference was seen or there is no spread to go on. For a family of m comparisons
    that is Holm-corrected, pass 0.05 / m (the bar its first comparison must clear)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or d.mean() == 0:
        return None
    spread = float(d.std(ddof=1))
    if spread == 0:
        return None
    return math.ceil(((_z(alpha) + _Z_POWER) * spread / abs(float(d.mean()))) ** 2)


def _z(alpha: float) -> float:
    """The two-sided critical value of the standard normal at ``alpha``."""
    from statistics import NormalDist

    return _Z_ALPHA if alpha == 0.05 else NormalDist().inv_cdf(1 - alpha / 2)


def pairs_needed(wins: int, losses: int, alpha: float = 0.05) -> int | None:
    """Decisive pairs (ties left out) a sign test needs to tell this win share from an
    even one (two-sided at ``alpha``, 80% power): exact binomial power up to EXACT_PAIRS
    pairs, the normal approximation beyond; None when the share is even or unknown."""
    n = wins + losses
    if n == 0 or wins == losses:
        return None
    p = wins / n
    for size in range(1, EXACT_PAIRS + 1):
        if _sign_test_power(size, p, alpha) >= 0.8:
            return size
    return math.ceil(((_z(alpha) * 0.5 + _Z_POWER * math.sqrt(p * (1 - p))) / (p - 0.5)) ** 2)


EXACT_PAIRS = 200


def _sign_test_power(n: int, p: float, alpha: float) -> float:
    """The chance that the exact two-sided sign test on n pairs rejects at ``alpha``, when
    each pair goes one way with probability p."""
    total = 2.0 ** -n
    tail, rejected, power = 0.0, -1, 0.0
    for k in range(n // 2 + 1):  # the largest k whose two-sided p-value is below alpha
        tail += math.comb(n, k) * total
        if 2 * tail < alpha:
            rejected = k
    for k in range(n + 1):
        if min(k, n - k) <= rejected:
            power += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
    return power
