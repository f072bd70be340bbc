"""Intervals and paired tests over items, in numpy; no metric knows about them.

A metric over a set of items is given as additive statistics, one row per item (for a
mean: the sum of the item's scores and its number of outputs; for BLEU: matched n-grams
and lengths), and a ``score`` that turns summed rows into the metric. Resampling items
(not outputs: the sequences and seeds of one item are not independent) is then a matrix
product with a matrix of how often, or on which side, each item is drawn.

- ``interval``: the 95% percentile bootstrap interval of one metric.
- ``paired``: two results on the same items: the difference, its paired-bootstrap
  interval, and the p-value of a paired randomization test (each item's outputs swap
  sides with probability 1/2, as sacrebleu's approximate randomization test swaps
  sentences; every one of the 2^n swaps when there are few items, so the p-value is
  exact there). The bootstrap's own p-value is too small with few items: 5 of 10 items
  better, none worse, gives 0.001 where the exact answer is 0.0625.
- ``jackknife`` / ``paired_jackknife``: an interval and a normal p-value for a statistic
  that does not add up over items (distinct n-grams), leaving out one item at a time.
- ``mcnemar``: the exact McNemar test for right/wrong answers, one per item.
- ``holm``: Holm's step-down correction of a family of p-values.

Every draw comes from a generator seeded by the number of items, so a report rendered
again shows the same numbers, and results on the same items share their draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

DRAWS = 2000  # bootstrap resamples, and random swaps for the randomization test
EXACT_UP_TO = 12  # items up to which the randomization test tries all 2^n swaps
SEED = 13
LEVEL = 0.95
ALPHA = 0.05  # a difference is significant when its Holm-adjusted p-value is below this
_Z = 1.959963984540054  # the 97.5% point of the standard normal

Score = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b`` on the items both have, with its interval and p-value."""

    diff: float
    low: float | None
    high: float | None
    p: float
    items: int
    test: str = "randomization"  # which test gave p: randomization, McNemar or jackknife


@lru_cache(maxsize=4)
def resample_counts(n: int, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """How often each of ``n`` items is drawn in each bootstrap resample: draws × n."""
    rng = np.random.default_rng([seed, n])
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(float)
    counts.setflags(write=False)
    return counts


def bounds(values: np.ndarray) -> tuple[float | None, float | None]:
    """The 95% percentile interval of resampled values (NaN ones left out)."""
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        return None, None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(kept, [tail, 100 - tail])
    return float(low), float(high)


@lru_cache(maxsize=4)
def swaps(n: int, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """Which items swap sides, one row per randomization: all 2^n patterns for up to
    EXACT_UP_TO items, else ``draws`` random ones (each item swapping with probability
    1/2) after the pattern that swaps none."""
    if n <= EXACT_UP_TO:
        patterns = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    else:
        rng = np.random.default_rng([seed, n, 1])
        patterns = np.vstack([np.zeros((1, n)), rng.integers(0, 2, size=(draws, n))])
    patterns = patterns.astype(float)
    patterns.setflags(write=False)
    return patterns


class Items:
    """One result's additive statistics over items (row i: item i), with the products
    that its interval and every paired comparison need, each computed once."""

    def __init__(self, stats: np.ndarray, score: Score) -> None:
        self.stats = stats
        self.score = score

    def __len__(self) -> int:
        return len(self.stats)

    def take(self, rows: np.ndarray) -> Items:
        return Items(self.stats[rows], self.score)

    @cached_property
    def total(self) -> np.ndarray:
        return self.stats.sum(axis=0)

    @cached_property
    def value(self) -> float:
        """The metric over every item (NaN when nothing has a value)."""
        return float(self.score(self.total))

    @cached_property
    def resampled(self) -> np.ndarray:
        """The metric on each bootstrap resample of the items."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.score(resample_counts(len(self)) @ self.stats)

    @cached_property
    def swapped(self) -> np.ndarray:
        """What each randomization's swapped items add up to (one row per pattern)."""
        return swaps(len(self)) @ self.stats

    def interval(self) -> tuple[float | None, float | None]:
        """The 95% percentile bootstrap interval over resampled items."""
        if len(self) == 0:
            return None, None
        return bounds(self.resampled)


def paired(a: Items, b: Items) -> Difference:
    """a minus b, row i of both being the same item: the difference, its 95% paired
    bootstrap interval (both resampled with the same draws), and the two-sided p-value
    of the paired randomization test: the share of swaps whose difference is at least as
    far from 0 as the one observed."""
    if len(a) != len(b):
        raise ValueError("paired statistics need the same items on both sides")
    if len(a) == 0:
        return Difference(math.nan, None, None, 1.0, 0)
    diff = a.value - b.value
    low, high = bounds(a.resampled - b.resampled)
    if math.isnan(diff):
        return Difference(diff, low, high, 1.0, len(a))
    moved = a.swapped - b.swapped  # what the swapped items take from a and give to b
    with np.errstate(divide="ignore", invalid="ignore"):
        swapped = np.abs(a.score(a.total - moved) - a.score(b.total + moved))
    at_least = swapped >= abs(diff) - 1e-9 * max(1.0, abs(diff))  # NaN counts as not
    # all 2^n patterns (an exact p), or random ones after the one that swaps none (never 0)
    p = float(at_least.mean()) if len(a) <= EXACT_UP_TO else float(at_least.sum() / len(moved))
    return Difference(diff, low, high, min(1.0, p), len(a))


def jackknife(value: float, left_out: np.ndarray) -> tuple[float | None, float | None]:
    """value ± 1.96 jackknife standard errors (from the leave-one-item-out values)."""
    error = _jackknife_error(left_out)
    if error is None:
        return None, None
    return value - _Z * error, value + _Z * error


def paired_jackknife(value_a: float, value_b: float, left_out_a: np.ndarray,
                     left_out_b: np.ndarray) -> Difference:
    """a - b with a normal interval and p-value from the jackknife of the difference."""
    diff = value_a - value_b
    error = _jackknife_error(left_out_a - left_out_b)
    if error is None:
        return Difference(diff, None, None, 1.0, len(left_out_a), "jackknife")
    if error == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = math.erfc(abs(diff) / error / math.sqrt(2))
    return Difference(diff, diff - _Z * error, diff + _Z * error, p, len(left_out_a),
                      "jackknife")


def _jackknife_error(left_out: np.ndarray) -> float | None:
    kept = left_out[~np.isnan(left_out)]
    n = kept.size
    if n < 2:
        return None
    return float(math.sqrt((n - 1) / n * ((kept - kept.mean()) ** 2).sum()))


def mcnemar(a: Collection[float], b: Collection[float]) -> float:
    """Exact McNemar p-value for paired right (1) / wrong (0) answers: two-sided binomial
    test of the discordant pairs against one half."""
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, kept monotone), in the order given."""
    m = len(pvalues)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
