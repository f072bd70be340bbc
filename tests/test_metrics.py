"""Tests for harness.metrics; every expected number is worked out by hand in comments."""

from __future__ import annotations

from typing import Any

import pytest

from harness.scoring import corpus, metrics
from harness.scoring.metrics import (
    METRICS,
    aggregate,
    char_f1,
    contains_answer,
    distinct_n,
    exact_match,
    first_label,
    normalize,
    repeated_ngram_rate,
    repeated_ngram_rate_ids,
    score_sample,
)


def bleu(outputs: list[str], references: list[str]) -> float:
    """Corpus BLEU as the summary computes it: summed per-output statistics."""
    return float(corpus.bleu_score(corpus.bleu_stats(outputs, references).sum(axis=0)))


def chrf(outputs: list[str], references: list[str]) -> float:
    return float(corpus.chrf_score(corpus.chrf_stats(outputs, references).sum(axis=0)))


COUNTS = ["stop_eos", "stop_string", "stop_length", "n"]
GENERATED_TAIL = ["distinct_1", "distinct_2", "repetition", "length", "logprob", *COUNTS]


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


# ---------------------------------------------------------------- score_sample


def test_score_sample_classification() -> None:
    labels = ["긍정", "부정"]
    assert score_sample("classification", "부정적입니다", ["부정"], labels) == {
        "predicted": "부정",
        "correct": 1.0,
        "invalid": 0.0,
        "acc_norm": None,  # a generated answer: nothing ranked to normalise
    }
    assert score_sample("classification", "긍정", ["부정"], labels)["correct"] == 0.0
    wrong = score_sample("classification", "모르겠어요", ["부정"], labels)
    assert (wrong["predicted"], wrong["correct"], wrong["invalid"]) == (None, 0.0, 1.0)


def test_score_sample_qa() -> None:
    assert score_sample("qa", "세종대왕이다", ["세종대왕"], None) == pytest.approx(
        {"exact_match": 0.0, "f1": 0.8, "contains": 1.0, "correct": 0.0, "repetition": 0.0,
         "hangul": 1.0, "wrong_language": 0.0}
    )
    assert score_sample("qa", "서울.", ["서울"], None)["correct"] == 1.0


def test_score_sample_translation() -> None:
    assert score_sample("translation", "a b c a b c", ["x"], None) == {
        "correct": None,
        "repetition": 0.25,
        "hangul": 0.0,  # six Latin letters, none Hangul
        "wrong_language": 1.0,  # counted only where Korean is expected (the summary's scope)
    }


def test_score_sample_generation() -> None:
    assert score_sample("generation", "a b c a b c", [], None) == {
        "correct": None,
        "f1": None,  # no reference to compare with
        "repetition": 0.25,
        "hangul": 0.0,
        "wrong_language": 1.0,
    }
    with_ref = score_sample("generation", "세종대왕이다", ["세종대왕"], None)
    assert with_ref == {"correct": None, "f1": pytest.approx(0.8), "repetition": 0.0,
                        "hangul": 1.0, "wrong_language": 0.0}


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
    result = aggregate("classification", rows, labels)
    assert list(result) == ["accuracy", "macro_f1", "invalid", "length", "logprob", *COUNTS]
    # 긍정: answered once, rightly, of 2 references -> F1 2*1/(2+1) = 2/3; 부정: answered
    # once, wrongly, its one reference unanswered -> F1 0; macro-F1 1/3. One output of
    # three names no label.
    assert result == pytest.approx(
        {
            "accuracy": 1 / 3,
            "macro_f1": 1 / 3,
            "invalid": 1 / 3,
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
    assert list(result) == ["exact_match", "f1", "contains", "repetition", "hangul",
                            "wrong_language", "length", "logprob", *COUNTS]
    assert result == pytest.approx(
        {
            "exact_match": 0.5,
            "f1": 0.9,
            "contains": 1.0,
            "repetition": 0.0,
            "hangul": 1.0,  # Korean references: the language check applies
            "wrong_language": 0.0,
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
    assert list(result) == ["bleu", "chrf", *GENERATED_TAIL]
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
    assert list(result) == GENERATED_TAIL
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
    assert list(result) == ["f1", "chrf", *GENERATED_TAIL]
    assert result["f1"] == pytest.approx(0.8)  # P = 1, R = 2/3
    assert result["chrf"] == pytest.approx(700 / 11)  # see test_chrf_partial


def test_aggregate_repetition_computed_when_not_scored() -> None:
    rows = [{"output": "a b c a b c", "references": [], "n_tokens": 6,
             "mean_logprob": None, "stop_reason": "length"}]
    assert aggregate("generation", rows)["repetition"] == pytest.approx(0.25)


def test_aggregate_unknown_kind() -> None:
    with pytest.raises(ValueError):
        aggregate("ranking", [])


# ---------------------------------------------------------------- the registry


def test_every_metric_says_what_it_is_and_how_to_draw_it() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    for metric in METRICS:
        assert metric.help and metric.label, metric.name
        assert set(metric.kinds) <= set(metrics.KINDS), metric.name
        assert metric.count == (metric.stats is not None and metric.score is not None
                                and metric.higher is None and metric.name in COUNTS)


def test_the_main_metrics_are_scores() -> None:
    for kind, names in metrics.MAIN.items():
        for name in names:
            assert kind in metrics.get(name).kinds and metrics.get(name).higher is True


def test_directions() -> None:
    assert metrics.get("repetition").higher is False and metrics.get("invalid").higher is False
    for neutral in ("length", "logprob", *COUNTS):
        assert metrics.get(neutral).higher is None


def test_sample_fields_come_from_the_registry() -> None:
    assert metrics.SAMPLE_FIELDS == ("predicted", "correct", "invalid", "acc_norm",
                                     "exact_match", "f1", "contains", "repetition", "hangul",
                                     "wrong_language")


def test_each_kind_has_its_metrics() -> None:
    assert metrics.metric_names("classification") == ["accuracy", "macro_f1", "invalid",
                                                      "acc_norm", "acc_bytes", "length",
                                                      "logprob"]
    assert "chrf" in metrics.metric_names("generation")
    assert "repetition" not in metrics.metric_names("classification")
    assert [m.name for m in metrics.for_kind("generation", references=False)][:2] == [
        "distinct_1", "distinct_2"]
    with pytest.raises(ValueError):
        metrics.for_kind("ranking")


def test_adding_a_metric_is_one_entry(monkeypatch, tmp_path, capsys) -> None:
    """One new entry in METRICS, and every part of the harness has the metric."""
    import csv
    import json

    from harness import cli
    from harness.reports.report import write_all
    from harness.scoring.metrics import Metric
    from harness.tasks.schema import task_schema
    from harness.tasks.spec import Task
    from tests.conftest import BASE_TASK

    short = Metric("short", "share of answers of three characters or fewer", "short answers",
                   kinds=("classification",), sample=lambda o: float(len(o.text) <= 3),
                   binary=True)
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, short))

    # scored for each output, and kept in the record's score fields
    labels = ["기쁨", "슬픔"]
    assert score_sample("classification", "기쁨", ["기쁨"], labels)["short"] == 1.0
    assert "short" in metrics.SAMPLE_FIELDS
    # a task may choose it (a task of another kind may not), and the schema offers it
    assert Task.model_validate({**BASE_TASK, "metrics": ["short"]}).metrics == ["short"]
    with pytest.raises(ValueError, match="'short' is not a metric of a qa task"):
        Task.model_validate({**BASE_TASK, "kind": "qa", "labels": None, "metrics": ["short"]})
    enum = task_schema()["properties"]["metrics"]["anyOf"][0]["items"]["enum"]
    assert "short" in enum
    # summarised with its interval and marks, explained in the page, written to the CSVs
    records = []
    for setting, answer in (("greedy", "기쁨"), ("beam", "기쁨이라고 생각해요")):
        for item in range(8):
            row = {"task": "t", "item": item, "shots": 0, "setting": setting, "seed": None,
                   "sequence": 0, "prompt": "p", "output": answer, "raw_output": answer,
                   "references": ["기쁨"], "n_tokens": 2, "mean_logprob": -1.0,
                   "stop_reason": "stop"}
            records.append(row | score_sample("classification", answer, ["기쁨"], labels))
    run = {"task": {"name": "t", "kind": "classification", "labels": labels,
                    "metrics": ["short", "accuracy"]},
           "model": {"name": "m", "type": "gpt2", "device": "cpu", "dtype": "float32"},
           "started_at": "2026-12-04T00:00:00+09:00", "timings": {}}
    write_all(tmp_path, run, records)
    with (tmp_path / "summary.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[2:7] == ["short", "short_low", "short_high", "short_mark", "short_p"]
    assert [(r["setting"], r["short"], r["short_mark"]) for r in rows] == [
        ("greedy", "1.0", "best"), ("beam", "0.0", "worse")]
    assert float(rows[1]["short_p"]) == 2 / 256  # McNemar, 8 items to none
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'title="share of answers of three characters or fewer">short' in page
    assert ">short answers by shot count<" in page  # the chart of the first column
    with (tmp_path / "results.csv").open(encoding="utf-8-sig") as handle:
        assert "short" in next(csv.reader(handle))
    assert json.dumps(records[0], ensure_ascii=False).count('"short": 1.0') == 1
    # and `harness list` describes it
    assert cli.main(["list"]) == 0
    assert "short        ↑ classification" in capsys.readouterr().out
