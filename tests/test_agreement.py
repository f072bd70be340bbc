"""Agreement statistics on textbook examples and hand-worked tables."""

from __future__ import annotations

import math

import pytest

from harness.scoring import agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example of four
# observers and twelve units with missing values; the paper gives alpha = 0.743 for
# nominal and 0.849 for interval data.
N = None
OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
UNITS = {u: [row[u] for row in OBSERVERS if row[u] is not None] for u in range(12)}


def test_alpha_gives_the_textbook_values() -> None:
    nominal = agreement.alpha(UNITS, "nominal")
    interval = agreement.alpha(UNITS, "interval")
    assert round(nominal.value, 3) == 0.743
    assert round(interval.value, 3) == 0.849
    # unit 12 has one value only: it is left out, as the paper leaves it out
    assert nominal.units == 11 and nominal.values == 40


def test_alpha_is_one_for_full_agreement_and_none_without_information() -> None:
    assert agreement.alpha({1: [1, 1], 2: [2, 2], 3: [3, 3]}).value == 1.0
    assert agreement.alpha({1: [4, 4], 2: [4, 4]}).value is None  # no variation at all
    lone = agreement.alpha({1: [1], 2: [2, 3]})
    assert lone.value is None and lone.units == 1  # one pairable unit is not enough


def test_alpha_of_two_coders_on_two_units_by_hand() -> None:
    # values 0,1 | 1,1: observed disagreement 2*(1)/1 / 4 = 0.5 (unit one, both orders);
    # expected: pairs among [0,1,1,1]: 6 of the 12 ordered pairs differ -> 6/12 = 0.5
    assert agreement.alpha({1: [0, 1], 2: [1, 1]}, "nominal").value == pytest.approx(0.0)


def test_kappa_on_a_two_by_two_table() -> None:
    # 50 units: both yes 20, both no 15, A yes B no 5, A no B yes 10.
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert agreement.kappa(a, b) == pytest.approx(0.4)


def test_weighted_kappa_counts_near_misses_less() -> None:
    # scale 1-3, three units: (1,1), (2,3), (3,3). Quadratic weights (i-j)^2/4:
    # observed: one miss of 1 step -> (1/4)/3 = 1/12
    # marginals: A (1,1,1)/3, B (1,0,2)/3 -> expected sum_ij w_ij a_i b_j
    #   = (1/9) * [ (1,1):0 + (1,3):1*2 + (2,1):.25 + (2,3):.25*2 + (3,1):1 + (3,3):0 ]
    #   = (2 + .25 + .5 + 1) / 9 = 3.75 / 9
    value = agreement.kappa(["1", "2", "3"], ["1", "3", "3"], order=["1", "2", "3"])
    assert value == pytest.approx(1 - (1 / 12) / (3.75 / 9))
    assert value > agreement.kappa(["1", "2", "3"], ["1", "3", "3"])  # unweighted: 1/2


def test_rank_correlation_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [1, 2, 2, 5, 3, 7], [2, 1, 4, 4, 9, 8]
    assert agreement.rank_correlation(a, b) == pytest.approx(scipy_stats.spearmanr(a, b)[0])
    assert agreement.rank_correlation([1, 2], [2, 1]) is None
    assert agreement.rank_correlation([1, 1, 1], [1, 2, 3]) is None


def test_items_needed_from_the_spread_of_differences() -> None:
    # mean 1, sd sqrt(2/3): ((1.960 + 0.842) * 0.8165 / 1)^2 = 5.23 -> 6 items
    assert agreement.items_needed([1, 1, 0, 2]) == 6
    assert agreement.items_needed([0, 0, 1, -1]) is None  # no difference seen
    # a smaller bar (a Holm family of 3) asks for more items
    assert agreement.items_needed([1, 1, 0, 2], 0.05 / 3) > 6


def test_pairs_needed_by_exact_sign_test_power() -> None:
    # always winning: 5 decisive pairs give p = 2/32 = 0.0625, 6 give 0.031 < 0.05
    assert agreement.pairs_needed(5, 0) == 6
    assert agreement.pairs_needed(3, 3) is None
    # winning 60%: many pairs, growing as the share nears one half
    assert agreement.pairs_needed(60, 40) > 150
    assert agreement.pairs_needed(51, 49) > agreement.pairs_needed(60, 40)
    assert math.isfinite(agreement.pairs_needed(51, 49))
