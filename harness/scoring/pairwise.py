"""Pairwise judgements (a person's or a judge model's "A is better than B"): win rates,
Bradley–Terry strengths, head-to-head sign tests.

A judgement is (a, b, outcome) with outcome 1 (a better), 0 (b better) or 0.5 (a tie);
a and b name arms (a setting at a shot count). A tie counts half a win to each side.

Bradley–Terry says P(i beats j) = p_i / (p_i + p_j); the strengths are fitted by
Hunter's MM iteration (2004) and shown as log-strengths centred on 0, so the difference
of two is the log-odds that one beats the other. An arm that won every time has no
finite strength; ``prior`` adds that many virtual ties to every pair of arms compared,
which keeps every strength finite and pulls small samples towards even. Intervals come
from resampling the judgements (seeded, so a report renders the same numbers again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.scoring import agreement, stats

Judgement = tuple[str, str, float]  # arm a, arm b, 1 / 0 / 0.5
DRAWS = 1000
PRIOR = 0.5  # virtual ties per compared pair in the report's strengths


def wins_table(judgements: Sequence[Judgement], arms: Sequence[str]) -> np.ndarray:
    """w[i, j]: how often arm i beat arm j (a tie: half to each)."""
    index = {a: i for i, a in enumerate(arms)}
    w = np.zeros((len(arms), len(arms)))
    for a, b, outcome in judgements:
        w[index[a], index[b]] += outcome
        w[index[b], index[a]] += 1 - outcome
    return w


def bradley_terry(w: np.ndarray, prior: float = 0.0, iterations: int = 2000,
                  tolerance: float = 1e-10) -> np.ndarray:
    """Log-strengths (mean 0) from a wins table; NaN for an arm never compared."""
    compared = (w + w.T) > 0
    w = w + prior / 2 * compared  # prior ties: half a win each way per compared pair
    games = w + w.T
    seen = games.sum(axis=1) > 0
    p = np.where(seen, 1.0, np.nan)
    won = w.sum(axis=1)
    for _ in range(iterations):
        with np.errstate(divide="ignore", invalid="ignore"):
            denominator = np.nansum(games / (p[:, None] + p[None, :]), axis=1)
            fresh = np.where(seen, won / denominator, np.nan)
        fresh = np.where(seen & (fresh <= 0), 1e-12, fresh)  # lost every game: ~0
        fresh /= math.exp(np.nanmean(np.log(fresh)))
        done = np.nanmax(np.abs(np.log(fresh) - np.log(p))) < tolerance
        p = fresh
        if done:
            break
    logs = np.log(p)
    return logs - np.nanmean(logs)


@dataclass(frozen=True)
class Arm:
    name: str
    games: int
    wins: float  # ties count half
    win_rate: float | None
    win_low: float | None
    win_high: float | None
    strength: float | None  # Bradley–Terry log-strength, mean 0 over the arms
    low: float | None
    high: float | None


@dataclass(frozen=True)
class HeadToHead:
    a: str
    b: str
    a_wins: int
    b_wins: int
    ties: int
    p: float  # two-sided sign test, ties left out
    p_holm: float
    needed: int | None  # decisive pairs a sign test would need (when not significant)


def arms_table(judgements: Sequence[Judgement], arms: Sequence[str],
               prior: float = PRIOR) -> list[Arm]:
    """Each arm's games, win rate and strength, with 95% intervals over judgements."""
    w = wins_table(judgements, arms)
    games = (w + w.T).sum(axis=1)
    strength = bradley_terry(w, prior)
    rng = np.random.default_rng([stats.SEED, len(judgements)])
    rates, strengths = [], []
    for _ in range(DRAWS if judgements else 0):
        drawn = [judgements[i] for i in rng.integers(0, len(judgements), len(judgements))]
        wd = wins_table(drawn, arms)
        gd = (wd + wd.T).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates.append(wd.sum(axis=1) / gd)
        strengths.append(bradley_terry(wd, prior, iterations=300, tolerance=1e-6))
    out = []
    for i, name in enumerate(arms):
        rate = float(w[i].sum() / games[i]) if games[i] else None
        rate_low, rate_high = (stats.bounds(np.array([r[i] for r in rates]))
                               if rates and games[i] else (None, None))
        low, high = (stats.bounds(np.array([s[i] for s in strengths]))
                     if strengths and games[i] else (None, None))
        out.append(Arm(name, int(games[i]), float(w[i].sum()), rate, rate_low, rate_high,
                       None if math.isnan(strength[i]) else float(strength[i]), low, high))
    return out


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins against losses at one half (McNemar's)."""
    return stats.mcnemar([1] * wins + [0] * losses, [0] * wins + [1] * losses)


def head_to_head(judgements: Sequence[Judgement]) -> list[HeadToHead]:
    """Every pair of arms judged against each other: the counts, the sign test and its
    Holm correction over all pairs, and how many decisive pairs would be needed."""
    counts: dict[tuple[str, str], list[int]] = {}
    for a, b, outcome in judgements:
        key, flip = ((a, b), False) if a <= b else ((b, a), True)
        row = counts.setdefault(key, [0, 0, 0])
        if outcome == 0.5:
            row[2] += 1
        else:
            row[0 if (outcome == 1) != flip else 1] += 1
    keys = list(counts)
    ps = [sign_test(counts[k][0], counts[k][1]) for k in keys]
    adjusted = stats.holm(ps)
    out = []
    for key, p, p_holm in zip(keys, ps, adjusted, strict=True):
        a_wins, b_wins, ties = counts[key]
        # the bar the family's first comparison must clear under Holm
        needed = (None if p_holm < stats.ALPHA else
                  agreement.pairs_needed(a_wins, b_wins, stats.ALPHA / len(keys)))
        out.append(HeadToHead(key[0], key[1], a_wins, b_wins, ties, p, p_holm, needed))
    return out


def first_position_share(chose_first: Sequence[bool]) -> float | None:
    """Of the decisive judgements, the share that picked the side shown first: 0.5 when
    the position does not sway the judge."""
    return sum(chose_first) / len(chose_first) if chose_first else None
