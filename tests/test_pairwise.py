"""Bradley–Terry strengths, win rates and sign tests on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.scoring import pairwise


def test_two_arms_strengths_are_the_log_odds_of_the_record() -> None:
    # 3 wins to 1: P(a beats b) = 3/4 = p_a / (p_a + p_b), so p_a / p_b = 3
    strengths = pairwise.bradley_terry(np.array([[0, 3], [1, 0.0]]))
    assert strengths[0] - strengths[1] == pytest.approx(math.log(3))
    assert strengths.sum() == pytest.approx(0)


def test_three_arms_match_the_maximum_likelihood_fit() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    w = np.array([[0, 2, 1], [1, 0, 3], [2, 1, 0.0]])

    def minus_log_likelihood(x: np.ndarray) -> float:
        s = np.r_[x, 0.0]
        return -sum(w[i, j] * (s[i] - np.logaddexp(s[i], s[j]))
                    for i in range(3) for j in range(3) if i != j)

    found = optimize.minimize(minus_log_likelihood, [0.0, 0.0], tol=1e-12).x
    expected = np.r_[found, 0.0] - np.r_[found, 0.0].mean()
    assert pairwise.bradley_terry(w) == pytest.approx(expected, abs=1e-4)
    # b won most (4 of 7) and ranks first; a and c won 3 of 6 each, but a's wins were
    # against the stronger b, so a ranks above c
    s = pairwise.bradley_terry(w)
    assert s[1] > s[0] > s[2]


def test_ties_count_half_and_the_prior_keeps_a_clean_sweep_finite() -> None:
    judged = [("a", "b", 1.0)] * 4 + [("a", "b", 0.5)] * 2
    w = pairwise.wins_table(judged, ["a", "b"])
    assert w[0, 1] == 5 and w[1, 0] == 1
    sweep = pairwise.wins_table([("a", "b", 1.0)] * 3, ["a", "b"])
    with_prior = pairwise.bradley_terry(sweep, prior=1.0)
    # one virtual tie: 3.5 against 0.5 -> ratio 7
    assert with_prior[0] - with_prior[1] == pytest.approx(math.log(7))


def test_an_arm_never_compared_has_no_strength() -> None:
    table = pairwise.arms_table([("a", "b", 1.0), ("b", "a", 0.5)], ["a", "b", "c"])
    by = {arm.name: arm for arm in table}
    assert by["c"].games == 0 and by["c"].strength is None and by["c"].win_rate is None
    assert by["a"].games == 2 and by["a"].wins == 1.5 and by["a"].win_rate == 0.75
    assert by["a"].low is not None and by["a"].low <= by["a"].strength <= by["a"].high


def test_head_to_head_sign_tests_are_holm_corrected() -> None:
    judged = ([("a", "b", 1.0)] * 6 + [("b", "c", 1.0)] * 5 + [("b", "c", 0.5)] * 3
              + [("c", "a", 0.0)] * 4)
    rows = {(h.a, h.b): h for h in pairwise.head_to_head(judged)}
    ab, bc, ac = rows[("a", "b")], rows[("b", "c")], rows[("a", "c")]
    assert (ab.a_wins, ab.b_wins, ab.ties) == (6, 0, 0)
    assert (bc.a_wins, bc.b_wins, bc.ties) == (5, 0, 3)
    assert (ac.a_wins, ac.b_wins) == (4, 0)  # "c lost to a" read from a's side
    assert ab.p == pytest.approx(2 / 64)  # two-sided exact: 2 * 0.5^6
    assert bc.p == pytest.approx(2 / 32) and ac.p == pytest.approx(2 / 16)
    # Holm over three: 3 * 0.03125, then max(that, 2 * 0.0625), then 0.125
    assert ab.p_holm == pytest.approx(0.09375)
    assert bc.p_holm == pytest.approx(0.125) and ac.p_holm == pytest.approx(0.125)
    # not significant: a sweep needs 7 decisive pairs at 0.05 / 3 (2 * 0.5^7 = 0.0156)
    assert ab.needed == 7


def test_position_share() -> None:
    assert pairwise.first_position_share([True, True, False, True]) == 0.75
    assert pairwise.first_position_share([]) is None
