"""Tests for harness.scoring.labels: macro-F1, per-label scores, confusion matrices and the
majority baseline on hand-made records, every number worked out in the comments."""

from __future__ import annotations

import csv
from typing import Any

import numpy as np
import pytest

from harness.reports import report
from harness.scoring import labels
from harness.scoring.metrics import aggregate, score_sample
from harness.scoring.summary import Summary

LABELS = ["기쁨", "슬픔", "분노"]
# (reference, output) for six items
ANSWERS = [("기쁨", "기쁨이에요"), ("기쁨", "슬픔"), ("기쁨", "글쎄요"),
           ("슬픔", "슬픔"), ("슬픔", "아마 슬픔"), ("분노", "기쁨")]


def records(setting: str = "greedy") -> list[dict[str, Any]]:
    out = []
    for item, (gold, output) in enumerate(ANSWERS):
        record = {"task": "t", "item": item, "shots": 0, "setting": setting, "seed": None,
                  "sequence": 0, "prompt": "p", "output": output, "raw_output": output,
                  "references": [gold], "n_tokens": 2, "mean_logprob": -1.0,
                  "stop_reason": "stop"}
        record.update(score_sample("classification", output, [gold], LABELS))
        out.append(record)
    return out


def test_the_confusion_matrix_counts_references_against_answers() -> None:
    summary = Summary("classification", records(), LABELS)
    matrix = labels.confusion(summary, ("greedy", 0))
    # columns: 기쁨 슬픔 분노, then no label ("글쎄요" names none)
    assert matrix.tolist() == [[1, 1, 0, 1],
                               [0, 2, 0, 0],
                               [1, 0, 0, 0]]


def test_per_label_precision_recall_and_f1_by_hand() -> None:
    rows = {r["label"]: r for r in labels.label_rows(Summary("classification", records(),
                                                             LABELS))}
    # 기쁨: 1 right of 2 answers naming it, of 3 references -> P 1/2, R 1/3, F1 2/5
    assert (rows["기쁨"]["precision"], rows["기쁨"]["recall"]) == (0.5, pytest.approx(1 / 3))
    assert rows["기쁨"]["f1"] == pytest.approx(0.4)
    # 슬픔: 2 right of 3 answers, of 2 references -> P 2/3, R 1, F1 4/5
    assert rows["슬픔"]["precision"] == pytest.approx(2 / 3) and rows["슬픔"]["recall"] == 1.0
    assert rows["슬픔"]["f1"] == pytest.approx(0.8)
    # 분노: never answered (no precision), its one reference missed -> R 0, F1 0
    assert rows["분노"]["precision"] is None and rows["분노"]["recall"] == 0.0
    assert rows["분노"]["f1"] == 0.0 and (rows["분노"]["f1_low"], rows["분노"]["f1_high"]) == (0, 0)
    assert rows["분노"]["precision_low"] is None
    assert [(r["support"], r["answered"]) for r in rows.values()] == [(3, 2), (2, 3), (1, 0)]
    assert rows["기쁨"]["f1_low"] <= 0.4 <= rows["기쁨"]["f1_high"]


def test_macro_f1_averages_the_labels_and_accuracy_counts_answers() -> None:
    scores = aggregate("classification", records(), LABELS)
    assert scores["macro_f1"] == pytest.approx((0.4 + 0.8 + 0.0) / 3)
    assert scores["accuracy"] == 0.5  # 3 of 6
    assert scores["invalid"] == pytest.approx(1 / 6)


def test_macro_f1_leaves_out_a_label_nobody_needed() -> None:
    # a fourth label that is neither a reference nor an answer does not count (as
    # scikit-learn's macro average without a label list)
    scores = aggregate("classification", records(), [*LABELS, "불안"])
    assert scores["macro_f1"] == pytest.approx(0.4)


def test_the_majority_baseline_by_hand() -> None:
    found = labels.baseline(records(), tuple(LABELS))
    # 기쁨 is 3 of 6 references; answering it always: accuracy 1/2; F1 of 기쁨 = 2*3/(3+6),
    # 슬픔 and 분노 0, over the three labels
    assert (found.label, found.items, found.of) == ("기쁨", 3, 6)
    assert found.accuracy == 0.5
    assert found.macro_f1 == pytest.approx((6 / 9) / 3)
    assert labels.distribution(records(), tuple(LABELS)) == {"기쁨": 3, "슬픔": 2, "분노": 1}
    assert (found.ties, found.name) == (1, "“기쁨”")
    # two labels as common: either scores the same, and the page says so
    even = [r for r in records() if r["item"] != 0]  # 기쁨 2, 슬픔 2, 분노 1
    tie = labels.baseline(even, tuple(LABELS))
    assert (tie.label, tie.ties, tie.name, tie.accuracy) == ("기쁨", 2, "any one label", 0.4)


def test_labels_csv_and_the_page_carry_the_label_scores(tmp_path) -> None:
    run = {"task": {"name": "t", "kind": "classification", "labels": LABELS},
           "model": {"name": "m", "type": "gpt2", "device": "cpu", "dtype": "float32"},
           "started_at": "2026-12-04T00:00:00+09:00", "timings": {}}
    report.write_all(tmp_path, run, records() + records("beam"))
    with (tmp_path / "labels.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 3
    first = rows[0]
    assert (first["setting"], first["label"], first["support"]) == ("greedy", "기쁨", "3")
    assert float(first["f1"]) == pytest.approx(0.4)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'id="label-scores"' in page and 'id="confusion"' in page
    assert page.count('<table class="confusion"') == 2
    assert "always answering “기쁨” (3 of 6 items)" in page.replace("Always", "always")


def test_a_reference_outside_the_labels_still_has_a_row() -> None:
    odd = records()
    odd[5] = {**odd[5], "references": ["놀람"]}
    summary = Summary("classification", odd, LABELS)
    assert summary.scope.labels == ("기쁨", "슬픔", "분노", "놀람")
    matrix = labels.confusion(summary, ("greedy", 0))
    assert matrix.shape == (4, 5) and matrix[3, 0] == 1
    assert np.isclose(matrix.sum(), 6)
