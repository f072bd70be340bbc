"""Tests for harness.metrics; every expected number is worked out by hand in comments."""

from __future__ import annotations

from typing import Any

import pytest

from harness.metrics import (
    HIGHER_IS_BETTER,
    MAIN_METRIC,
    aggregate,
    bleu,
    char_f1,
    chrf,
    contains_answer,
    distinct_n,
    exact_match,
    first_label,
    mean,
    normalize,
    repeated_ngram_rate,
    repeated_ngram_rate_ids,
    score_sample,
)

COMMON_TAIL = [
    "distinct_1",
    "distinct_2",
    "repetition",
    "length",
    "logprob",
    "stop_eos",
    "stop_string",
    "stop_length",
    "n",
]


def make_row(
    kind: str,
    output: str,
    references: list[str],
    n_tokens: int,
    mean_logprob: float | None,
    stop_reason: str,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "output": output,
        "references": references,
        "n_tokens": n_tokens,
        "mean_logprob": mean_logprob,
        "stop_reason": stop_reason,
    }
    row.update(score_sample(kind, output, references, labels))
    return row


# ---------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  서울!  ", "서울"),
        ("Hello,   World!", "hello world"),
        ("ＡＢＣ １２３", "abc 123"),  # NFKC folds full-width forms
        ("가격은 $5+3=8", "가격은 538"),  # $, +, = are symbols (S*)
        ("“인용”\t\n문장.", "인용 문장"),
        ("!!! ...", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


# ---------------------------------------------------------------- first_label


@pytest.mark.parametrize(
    ("output", "labels", "expected"),
    [
        (" 슬픔입니다. 기쁨은 아니고", ["기쁨", "슬픔"], "슬픔"),
        ("기쁨! 슬픔은 아니고", ["기쁨", "슬픔"], "기쁨"),
        ("긍정적인 리뷰", ["긍정", "긍정적"], "긍정적"),  # same start: longer wins
        ("긍정적인 리뷰", ["긍정적", "긍정"], "긍정적"),
        ("Answer: POSITIVE.", ["negative", "positive"], "positive"),
        ("모르겠습니다", ["기쁨", "슬픔"], None),
        ("anything", [], None),
    ],
)
def test_first_label(output: str, labels: list[str], expected: str | None) -> None:
    assert first_label(output, labels) == expected


def test_first_label_returns_original_spelling() -> None:
    assert first_label("정답은 (B)입니다", ["(A)", "(B)"]) == "(B)"


# ---------------------------------------------------------------- exact / contains / f1


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("서울.", ["서울"], 1.0),
        (" 서울 ", ["부산", "서울!"], 1.0),
        ("서울시", ["서울"], 0.0),
        ("서울", [], 0.0),
    ],
)
def test_exact_match(prediction: str, references: list[str], expected: float) -> None:
    assert exact_match(prediction, references) == expected


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("정답은 서울입니다", ["서울"], 1.0),
        ("정답은 서울입니다", ["부산", "서울."], 1.0),
        ("정답은 서울입니다", ["부산"], 0.0),
        ("정답은 서울입니다", [""], 0.0),  # empty reference never counts
        ("정답은 서울입니다", ["!!"], 0.0),  # empty after normalize
    ],
)
def test_contains_answer(prediction: str, references: list[str], expected: float) -> None:
    assert contains_answer(prediction, references) == expected


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("세종대왕이다", ["세종대왕"], 0.8),  # P = 4/6, R = 1 -> 0.8
        ("세종대왕이다", ["이순신", "세종대왕"], 0.8),  # max over references
        ("세종 대왕", ["세종대왕"], 1.0),  # whitespace ignored
        ("aab", ["ab"], 0.8),  # common 2: P = 2/3, R = 1
        ("ab", ["aab"], 0.8),  # P = 1, R = 2/3
        ("aa", ["ab"], 0.5),  # multiset: common 1, P = R = 1/2
        ("xyz", ["ab"], 0.0),
        ("", ["ab"], 0.0),
        ("!!!", ["ab"], 0.0),
        ("ab", [""], 0.0),
        ("ab", [], 0.0),
    ],
)
def test_char_f1(prediction: str, references: list[str], expected: float) -> None:
    assert char_f1(prediction, references) == pytest.approx(expected)


# ---------------------------------------------------------------- corpus metrics


def test_bleu_identical_is_100() -> None:
    sents = ["the cat sat on the mat", "a dog ran in the park"]
    assert bleu(sents, sents) == pytest.approx(100.0)


def test_bleu_disjoint_is_zero() -> None:
    assert bleu(["a b c d"], ["w x y z"]) == pytest.approx(0.0)


def test_bleu_brevity_penalty() -> None:
    # All n-gram precisions are 1; BP = exp(1 - 7/6) = exp(-1/6) = 0.846482.
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat today"]) == pytest.approx(
        84.6482, abs=1e-3
    )


def test_chrf_identical_and_disjoint() -> None:
    assert chrf(["서울에 갑니다"], ["서울에 갑니다"]) == pytest.approx(100.0)
    assert chrf(["abc"], ["xyz"]) == pytest.approx(0.0)


def test_chrf_partial() -> None:
    # Orders with hyp n-grams: 1 (P=1, R=2/3) and 2 (P=1, R=1/2).
    # Averaged P = 1, R = 7/12; F2 = 5 * 7/12 / (4 + 7/12) = 7/11.
    assert chrf(["ab"], ["abc"]) == pytest.approx(700 / 11)


@pytest.mark.parametrize("fn", [bleu, chrf])
def test_corpus_metrics_empty(fn: Any) -> None:
    assert fn([], []) == 0.0


# ---------------------------------------------------------------- diversity / repetition


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        (["a b a", "b a"], 1, 0.4),  # 5 tokens, 2 distinct
        (["a b a", "b a"], 2, 2 / 3),  # ab ba | ba: no n-gram crosses texts
        (["a b a", "b a"], 3, 1.0),
        (["a b a", "b a"], 4, 0.0),
        ([], 1, 0.0),
        (["", "  "], 1, 0.0),
    ],
)
def test_distinct_n(texts: list[str], n: int, expected: float) -> None:
    assert distinct_n(texts, n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("a b c a b c", 2, 0.4),  # ab bc ca ab bc: 2 of 5
        ("a b c a b c", 3, 0.25),  # abc bca cab abc: 1 of 4
        ("a a a a", 1, 0.75),
        ("a b c d", 2, 0.0),
        ("a b", 3, 0.0),
        ("", 3, 0.0),
    ],
)
def test_repeated_ngram_rate(text: str, n: int, expected: float) -> None:
    assert repeated_ngram_rate(text, n) == pytest.approx(expected)


def test_repeated_ngram_rate_default_n_is_3() -> None:
    assert repeated_ngram_rate("a b c a b c") == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("ids", "n", "expected"),
    [
        ([1, 2, 1, 2, 1], 2, 0.5),  # 12 21 12 21: 2 of 4
        ([1, 2, 3, 1, 2, 3], 3, 0.25),
        ([7, 7, 7], 1, 2 / 3),
        ([1, 2], 3, 0.0),
    ],
)
def test_repeated_ngram_rate_ids(ids: list[int], n: int, expected: float) -> None:
    assert repeated_ngram_rate_ids(ids, n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([1.0, None, 2.0], 1.5), ([0.0], 0.0), ([], None), ([None, None], None)],
)
def test_mean(values: list[float | None], expected: float | None) -> None:
    assert mean(values) == expected


# ---------------------------------------------------------------- score_sample


def test_score_sample_classification() -> None:
    labels = ["긍정", "부정"]
    assert score_sample("classification", "부정적입니다", ["부정"], labels) == {
        "predicted": "부정",
        "correct": 1.0,
        "invalid": 0.0,
        "repetition": 0.0,
    }
    assert score_sample("classification", "긍정", ["부정"], labels)["correct"] == 0.0
    wrong = score_sample("classification", "모르겠어요", ["부정"], labels)
    assert (wrong["predicted"], wrong["correct"], wrong["invalid"]) == (None, 0.0, 1.0)


def test_score_sample_qa() -> None:
    assert score_sample("qa", "세종대왕이다", ["세종대왕"], None) == pytest.approx(
        {"exact_match": 0.0, "f1": 0.8, "contains": 1.0, "correct": 0.0, "repetition": 0.0}
    )
    assert score_sample("qa", "서울.", ["서울"], None)["correct"] == 1.0


def test_score_sample_translation() -> None:
    assert score_sample("translation", "a b c a b c", ["x"], None) == {
        "correct": None,
        "repetition": 0.25,
    }


def test_score_sample_generation() -> None:
    assert score_sample("generation", "a b c a b c", [], None) == {
        "correct": None,
        "repetition": 0.25,
    }
    with_ref = score_sample("generation", "세종대왕이다", ["세종대왕"], None)
    assert with_ref == {"correct": None, "f1": pytest.approx(0.8), "repetition": 0.0}


def test_score_sample_unknown_kind() -> None:
    with pytest.raises(ValueError):
        score_sample("ranking", "x", [], None)


# ---------------------------------------------------------------- aggregate


def test_aggregate_classification() -> None:
    labels = ["긍정", "부정"]
    rows = [
        make_row("classification", "긍정 긍정", ["긍정"], 2, -1.0, "eos", labels),
        make_row("classification", "부정 입니다", ["긍정"], 3, None, "eos", labels),
        make_row(
            "classification", "잘 모르 겠 잘 모르 겠", ["부정"], 7, -2.0, "length", labels
        ),
    ]
    result = aggregate("classification", rows)
    assert list(result) == ["accuracy", "invalid", *COMMON_TAIL]
    # 10 tokens / 6 distinct; bigrams 1 + 1 + 5 = 7 / 5 distinct;
    # 3-gram repetition per row 0, 0, 1/4.
    assert result == pytest.approx(
        {
            "accuracy": 1 / 3,
            "invalid": 1.0,
            "distinct_1": 0.6,
            "distinct_2": 5 / 7,
            "repetition": 1 / 12,
            "length": 4.0,
            "logprob": -1.5,
            "stop_eos": 2.0,
            "stop_string": 0.0,
            "stop_length": 1.0,
            "n": 3.0,
        }
    )


def test_aggregate_qa() -> None:
    rows = [
        make_row("qa", "세종대왕이다", ["세종대왕"], 4, -0.5, "stop"),
        make_row("qa", "서울.", ["서울", "서울특별시"], 2, -1.5, "eos"),
    ]
    result = aggregate("qa", rows)
    assert list(result) == ["exact_match", "f1", "contains", *COMMON_TAIL]
    assert result == pytest.approx(
        {
            "exact_match": 0.5,
            "f1": 0.9,
            "contains": 1.0,
            "distinct_1": 1.0,
            "distinct_2": 0.0,
            "repetition": 0.0,
            "length": 3.0,
            "logprob": -1.0,
            "stop_eos": 1.0,
            "stop_string": 1.0,
            "stop_length": 0.0,
            "n": 2.0,
        }
    )


def test_aggregate_translation_uses_first_reference() -> None:
    rows = [
        make_row("translation", "the cat sat on the mat", ["the cat sat on the mat", "zzz"], 6,
                 -0.2, "eos"),
        make_row("translation", "a dog ran", ["a dog ran"], 3, -0.4, "stop"),
    ]
    result = aggregate("translation", rows)
    assert list(result) == ["bleu", "chrf", *COMMON_TAIL]
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf"] == pytest.approx(100.0)
    # 9 tokens, "the" twice -> 8 distinct; bigrams 5 + 2, all distinct.
    assert result["distinct_1"] == pytest.approx(8 / 9)
    assert result["distinct_2"] == pytest.approx(1.0)
    assert result["logprob"] == pytest.approx(-0.3)
    assert result["length"] == pytest.approx(4.5)


def test_aggregate_translation_disjoint() -> None:
    rows = [make_row("translation", "a b c d", ["w x y z"], 4, None, "length")]
    result = aggregate("translation", rows)
    assert result["bleu"] == pytest.approx(0.0)
    assert result["chrf"] == pytest.approx(0.0)
    assert result["logprob"] is None
    assert result["stop_length"] == 1.0


def test_aggregate_generation_without_references() -> None:
    rows = [
        make_row("generation", "a b c a b c", [], 6, -1.0, "length"),
        make_row("generation", "x y", [], 2, -3.0, "eos"),
    ]
    result = aggregate("generation", rows)
    assert list(result) == COMMON_TAIL
    # tokens a b c a b c x y: 8 / 5 distinct; bigrams ab bc ca ab bc | xy: 6 / 4 distinct.
    assert result["distinct_1"] == pytest.approx(5 / 8)
    assert result["distinct_2"] == pytest.approx(4 / 6)
    assert result["repetition"] == pytest.approx(0.125)  # (1/4 + 0) / 2
    assert result["logprob"] == pytest.approx(-2.0)


def test_aggregate_generation_with_references() -> None:
    rows = [
        make_row("generation", "ab", ["abc"], 1, -1.0, "eos"),
        make_row("generation", "free text", [], 2, -2.0, "eos"),  # no reference: skipped
    ]
    result = aggregate("generation", rows)
    assert list(result) == ["f1", "chrf", *COMMON_TAIL]
    assert result["f1"] == pytest.approx(0.8)  # P = 1, R = 2/3
    assert result["chrf"] == pytest.approx(700 / 11)  # see test_chrf_partial


def test_aggregate_repetition_computed_when_not_scored() -> None:
    rows = [{"output": "a b c a b c", "references": [], "n_tokens": 6,
             "mean_logprob": None, "stop_reason": "length"}]
    assert aggregate("generation", rows)["repetition"] == pytest.approx(0.25)


def test_aggregate_unknown_kind() -> None:
    with pytest.raises(ValueError):
        aggregate("ranking", [])


# ---------------------------------------------------------------- report tables


def test_main_metrics_are_higher_is_better() -> None:
    assert set(MAIN_METRIC) == {"classification", "qa", "translation", "generation"}
    for key in MAIN_METRIC.values():
        assert HIGHER_IS_BETTER[key] is True


def test_higher_is_better_directions() -> None:
    assert HIGHER_IS_BETTER["repetition"] is False
    assert HIGHER_IS_BETTER["invalid"] is False
    for neutral in ("n", "length", "stop_eos", "stop_string", "stop_length"):
        assert neutral not in HIGHER_IS_BETTER
