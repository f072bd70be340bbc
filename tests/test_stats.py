"""Tests for harness.scoring.stats: intervals and paired tests, checked against hand computations,
scipy, sacrebleu and brute force over every resample or swap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.scoring import corpus, stats
from harness.scoring.stats import Items


def mean_score(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[..., 0] / sums[..., 1]


def right_wrong(values: list[int]) -> Items:
    """One right (1) / wrong (0) answer per item, as a mean's [sum, count] rows."""
    return Items(np.array([[v, 1.0] for v in values]), mean_score)


# ---------------------------------------------------------------- resamples


def test_resamples_are_seeded_and_draw_every_item_n_times() -> None:
    counts = stats.resample_counts(40)
    assert counts.shape == (stats.DRAWS, 40)
    assert (counts.sum(axis=1) == 40).all()  # each resample draws 40 items
    stats.resample_counts.cache_clear()
    assert np.array_equal(stats.resample_counts(40), counts)  # the same draws again
    assert not np.array_equal(stats.resample_counts(41)[:, :40], counts)


def test_an_interval_is_the_metric_over_resampled_items() -> None:
    values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    items = right_wrong(values)
    counts = stats.resample_counts(10)
    # the same resamples by hand: each item's answer repeated as often as it is drawn
    by_hand = [sum(c * v for c, v in zip(row, values, strict=True)) / 10 for row in counts]
    assert np.allclose(items.resampled, by_hand)
    low, high = items.interval()
    assert (low, high) == tuple(np.percentile(by_hand, [2.5, 97.5]))
    assert low < 0.6 < high


def test_every_answer_right_has_an_interval_of_one_point() -> None:
    assert right_wrong([1] * 8).interval() == (1.0, 1.0)
    assert right_wrong([0] * 8).interval() == (0.0, 0.0)


def test_an_interval_of_nothing_is_none() -> None:
    assert Items(np.zeros((0, 2)), mean_score).interval() == (None, None)
    assert Items(np.zeros((3, 2)), mean_score).interval() == (None, None)  # no values


# ---------------------------------------------------------------- paired tests


def test_better_on_every_item_by_hand() -> None:
    # 8 items, a right and b wrong on each: of the 2^8 swaps only "none" and "all" give a
    # difference as large as 1, so p = 2/256; the bootstrap cannot move the difference.
    found = stats.paired(right_wrong([1] * 8), right_wrong([0] * 8))
    assert found.diff == 1.0 and (found.low, found.high) == (1.0, 1.0)
    assert found.p == 2 / 256 == 0.0078125
    assert found.items == 8 and found.test == "randomization"
    backwards = stats.paired(right_wrong([0] * 8), right_wrong([1] * 8))
    assert backwards.diff == -1.0 and backwards.p == found.p


@pytest.mark.parametrize(("a", "b"), [
    ([1, 0, 1, 1, 0, 1, 0, 0], [1, 0, 1, 1, 0, 1, 0, 0]),  # the same answers
    ([1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]),  # as many right, other items
])
def test_a_tie_has_p_one(a: list[int], b: list[int]) -> None:
    found = stats.paired(right_wrong(a), right_wrong(b))
    assert found.diff == 0.0 and found.p == 1.0
    assert found.low <= 0 <= found.high
    assert stats.mcnemar(a, b) == 1.0


def test_four_of_eight_better_is_not_enough() -> None:
    # 4 discordant items, all one way: p = 2/16 by the swaps (and by McNemar), although
    # every bootstrap resample but a few puts a ahead
    a, b = [1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]
    found = stats.paired(right_wrong(a), right_wrong(b))
    assert found.p == 0.125 == stats.mcnemar(a, b)
    assert found.low > 0  # the percentile interval alone would have called it


def test_the_randomization_test_is_every_swap_for_a_corpus_metric() -> None:
    # BLEU of two systems on 6 sentences: p is the share of the 64 ways of swapping
    # sentences between them whose |BLEU difference| is at least the observed one, each
    # BLEU computed by sacrebleu on the swapped corpora
    from sacrebleu.metrics import BLEU

    refs = ["the cat sat on the mat", "it is sunny today", "we walked home together",
            "the train was late again", "she reads a book every night", "rain is coming"]
    sys_a = ["the cat sat on a mat", "it is sunny today", "we walked home",
             "the train was late", "she reads a book at night", "rain comes"]
    sys_b = ["a cat is on the mat", "today sunny", "we go home together",
             "train late again", "she reads every night", "it rains"]
    bleu = BLEU(tokenize="13a")
    observed = bleu.corpus_score(sys_a, [refs]).score - bleu.corpus_score(sys_b, [refs]).score
    far = 0
    for swap in itertools.product([False, True], repeat=6):
        left = [b if s else a for a, b, s in zip(sys_a, sys_b, swap, strict=True)]
        right = [a if s else b for a, b, s in zip(sys_a, sys_b, swap, strict=True)]
        d = bleu.corpus_score(left, [refs]).score - bleu.corpus_score(right, [refs]).score
        far += abs(d) >= abs(observed) - 1e-9
    a = Items(corpus.bleu_stats(sys_a, refs), corpus.bleu_score)
    b = Items(corpus.bleu_stats(sys_b, refs), corpus.bleu_score)
    found = stats.paired(a, b)
    assert found.diff == pytest.approx(observed)
    assert found.p == far / 64


def test_a_bootstrap_resample_of_bleu_is_sacrebleu_on_the_resampled_corpus() -> None:
    from sacrebleu.metrics import BLEU, CHRF

    refs = [f"this is reference sentence number {i}" for i in range(15)]
    outs = [f"this is sentence {i} of the output" if i % 3 else refs[i] for i in range(15)]
    counts = stats.resample_counts(15)
    for metric, stats_of, score in ((BLEU(tokenize="13a"), corpus.bleu_stats, corpus.bleu_score),
                                    (CHRF(), corpus.chrf_stats, corpus.chrf_score)):
        items = Items(stats_of(outs, refs), score)
        for row in (0, 1, 500, 1999):
            drawn = [i for i, c in enumerate(counts[row]) for _ in range(int(c))]
            expected = metric.corpus_score([outs[i] for i in drawn],
                                           [[refs[i] for i in drawn]]).score
            assert items.resampled[row] == pytest.approx(expected)


def test_with_many_items_the_swaps_are_drawn_at_random() -> None:
    # 40 items, 16 discordant: 12 for a, 4 for b. The exact (McNemar) p is 0.0768; 2,000
    # random swaps estimate it within a few standard errors (0.006 each).
    a = [1] * 12 + [0] * 4 + [1] * 10 + [0] * 14
    b = [0] * 12 + [1] * 4 + [1] * 10 + [0] * 14
    exact = stats.mcnemar(a, b)
    assert exact == pytest.approx(binomtest(4, 16, 0.5).pvalue)
    assert exact == pytest.approx(0.0768, abs=1e-4)
    found = stats.paired(right_wrong(a), right_wrong(b))
    assert found.p == pytest.approx(exact, abs=0.025)
    assert stats.paired(right_wrong([1] * 40), right_wrong([0] * 40)).p == 1 / (stats.DRAWS + 1)


def test_items_differing_in_number_cannot_be_paired() -> None:
    with pytest.raises(ValueError, match="same items"):
        stats.paired(right_wrong([1, 0]), right_wrong([1, 0, 1]))


# ---------------------------------------------------------------- McNemar, Holm


@pytest.mark.parametrize(("only_a", "only_b"), [(0, 0), (5, 0), (8, 1), (3, 3), (10, 4),
                                                (1, 20)])
def test_mcnemar_is_the_binomial_test_of_the_discordant_pairs(only_a: int, only_b: int) -> None:
    a = [1] * only_a + [0] * only_b + [1, 1, 0]
    b = [0] * only_a + [1] * only_b + [1, 1, 0]
    expected = 1.0 if only_a + only_b == 0 else binomtest(only_b, only_a + only_b, 0.5).pvalue
    assert stats.mcnemar(a, b) == pytest.approx(expected)


def test_mcnemar_by_hand() -> None:
    # 8 against 1 discordant: 2 * (C(9,0) + C(9,1)) / 2^9 = 20 / 512
    assert stats.mcnemar([1] * 8 + [0], [0] * 8 + [1]) == 20 / 512


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(that, 2 * 0.03), max(that, 1 * 0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []


# ---------------------------------------------------------------- jackknife


def test_the_jackknife_of_distinct_bigrams_leaves_each_item_out() -> None:
    from harness.scoring.textscores import distinct_n

    texts = [["오늘 날씨가 좋다", "오늘 날씨가 좋다"], ["오늘 날씨가 흐리다"], ["비가 온다 비가 온다"],
             ["눈이 온다"], []]
    grams = corpus.Grams.of(texts, 2)
    assert grams.value() == distinct_n([t for ts in texts for t in ts], 2)
    for i, left_out in enumerate(grams.leave_one_out()):
        rest = [t for j, ts in enumerate(texts) if j != i for t in ts]
        assert left_out == pytest.approx(distinct_n(rest, 2))
    low, high = stats.jackknife(grams.value(), grams.leave_one_out())
    assert low < grams.value() < high


def test_a_paired_jackknife_of_equal_values_is_no_difference() -> None:
    found = stats.paired_jackknife(0.5, 0.5, np.array([0.5, 0.5, 0.5]), np.array([0.5] * 3))
    assert (found.diff, found.p, found.test) == (0.0, 1.0, "jackknife")
    spread = stats.paired_jackknife(0.8, 0.5, np.array([0.8, 0.7, 0.9]),
                                    np.array([0.5, 0.5, 0.5]))
    error = math.sqrt(2 / 3 * ((np.array([0.3, 0.2, 0.4]) - 0.3) ** 2).sum())
    assert spread.low == pytest.approx(0.3 - 1.959964 * error, abs=1e-6)
    assert spread.p == pytest.approx(math.erfc(0.3 / error / math.sqrt(2)))
