"""Tests for harness.scoring.summary: intervals, marks and paired comparisons on hand-made records
whose numbers can be worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from harness.scoring.metrics import score_sample
from harness.scoring.summary import Summary, columns, summarize

LABELS = ["기쁨", "슬픔"]
GOLD = ["기쁨", "슬픔"] * 4  # 8 items


def rec(setting: str, shots: int, item: int, right: bool, **extra: Any) -> dict[str, Any]:
    gold = GOLD[item]
    output = gold if right else "모르겠어요"
    record = {"task": "t", "item": item, "shots": shots, "setting": setting, "seed": None,
              "sequence": 0, "prompt": "p", "output": output, "raw_output": output,
              "references": [gold], "n_tokens": 2, "mean_logprob": -1.0, "stop_reason": "stop"}
    record.update(score_sample("classification", output, [gold], LABELS))
    return record | extra


def grid() -> list[dict[str, Any]]:
    """At 0 shots: "all" is right on every item, "none" on none, "first" on items 1-4 and
    "last" on items 5-8 (tied with each other). At 1 shot every setting is right on all."""
    answers = {"all": lambda i: True, "none": lambda i: False, "first": lambda i: i < 4,
               "last": lambda i: i >= 4}
    return [rec(s, k, i, answer(i) if k == 0 else True)
            for s, answer in answers.items() for k in (0, 1) for i in range(8)]


def test_one_setting_better_on_every_item_and_two_that_tie() -> None:
    summary = Summary("classification", grid(), LABELS)
    rows = {(r["setting"], r["shots"]): r for r in summary.rows}
    # 0 shots: accuracy 1, 0, .5, .5; "all" is best
    assert [rows[(s, 0)]["accuracy"] for s in ("all", "none", "first", "last")] == [
        1.0, 0.0, 0.5, 0.5]
    assert (rows[("all", 0)]["accuracy_low"], rows[("all", 0)]["accuracy_high"]) == (1.0, 1.0)
    # against "all", McNemar on the discordant items: "none" 8 to 0 -> 2/2^8; "first" and
    # "last" 4 to 0 -> 2/2^4. Holm over the three: 3 * 2/256, then 2 * 1/8, then 1/8.
    family = {c.key[0]: c for c in summary.settings_compared[("accuracy", 0)]}
    assert {s: c.difference.p for s, c in family.items()} == {
        "none": 2 / 256, "first": 0.125, "last": 0.125}
    assert {s: c.p_holm for s, c in family.items()} == pytest.approx(
        {"none": 3 * 2 / 256, "first": 0.25, "last": 0.25})
    assert {s: c.difference.test for s, c in family.items()} == {s: "McNemar" for s in family}
    assert family["none"].difference.diff == -1.0 and family["first"].difference.diff == -0.5
    marks = {s: (rows[(s, 0)]["accuracy_mark"], rows[(s, 0)]["accuracy_p"])
             for s in ("all", "none", "first", "last")}
    assert marks == {"all": ("best", None), "none": ("worse", pytest.approx(0.0234375)),
                     "first": ("tied", 0.25), "last": ("tied", 0.25)}
    # the tie, both ways: as many right on other items is no difference at all
    tie = summary.versus(("first", 0), ("last", 0), summary.metrics[0])
    back = summary.versus(("last", 0), ("first", 0), summary.metrics[0])
    assert (tie.diff, tie.p) == (0.0, 1.0) and (back.diff, back.p) == (0.0, 1.0)
    # and the clear case both ways: the same p, the difference turned round
    there = summary.versus(("all", 0), ("none", 0), summary.metrics[0])
    back = summary.versus(("none", 0), ("all", 0), summary.metrics[0])
    assert (there.diff, back.diff) == (1.0, -1.0) and there.p == back.p == 2 / 256


def test_a_corpus_metric_gets_the_randomization_test() -> None:
    # macro-F1 of "all" is 1 and of "none" 0 (every answer names no label); of the 2^8
    # swaps only none and all reach a difference of 1 -> p = 2/256, as by hand
    summary = Summary("classification", grid(), LABELS)
    family = {c.key[0]: c for c in summary.settings_compared[("macro_f1", 0)]}
    assert family["none"].difference.diff == -1.0
    assert family["none"].difference.p == 2 / 256
    assert family["none"].difference.test == "randomization"


def test_where_every_setting_scores_the_same_nothing_is_marked() -> None:
    rows = {(r["setting"], r["shots"]): r for r in summarize("classification", grid(), LABELS)}
    assert all(rows[(s, 1)]["accuracy_mark"] is None for s in ("all", "none", "first", "last"))
    assert rows[("none", 1)]["accuracy"] == 1.0


def test_shot_counts_are_compared_within_each_setting() -> None:
    summary = Summary("classification", grid(), LABELS)
    shots = {c.key[0]: c for c in summary.shots_compared[("accuracy", "none")]}
    assert shots["none"].key == ("none", 1) and shots["none"].against == ("none", 0)
    assert shots["none"].difference.diff == 1.0 and shots["none"].better
    same = summary.shots_compared[("accuracy", "all")][0]
    assert same.difference.diff == 0.0 and same.difference.p == 1.0 and not same.better


def test_lower_is_better_marks_the_lowest() -> None:
    # invalid: "none" names no label on all 8 items (1.0), "all" on none (0.0)
    rows = {(r["setting"], r["shots"]): r for r in summarize("classification", grid(), LABELS)}
    assert rows[("all", 0)]["invalid_mark"] == "best"
    assert rows[("none", 0)]["invalid_mark"] == "worse"


def test_several_outputs_of_one_item_are_resampled_together() -> None:
    # two sequences per item: 16 outputs but 8 items; McNemar does not apply (two answers
    # an item), so the randomization test over the 8 items gives the same 2/256
    records = [rec(s, 0, i, s == "all", sequence=q) for s in ("all", "none")
               for i in range(8) for q in (0, 1)]
    summary = Summary("classification", records, LABELS)
    (found,) = summary.settings_compared[("accuracy", 0)]
    assert found.difference.items == 8 and found.difference.test == "randomization"
    assert found.difference.p == 2 / 256


def test_comparisons_use_the_items_both_settings_answered() -> None:
    records = grid()
    records = [r for r in records if not (r["setting"] == "none" and r["item"] >= 6)]
    summary = Summary("classification", records, LABELS)
    found = summary.versus(("none", 0), ("all", 0), summary.metrics[0])
    assert found.items == 6 and found.p == 2 / 2 ** 6


def test_columns_put_the_chosen_then_the_main_metric_first() -> None:
    assert columns("classification", None)[:3] == ["accuracy", "macro_f1", "invalid"]
    assert columns("classification", ["invalid"])[:2] == ["invalid", "accuracy"]
    assert columns("translation", None)[0] == "chrf"
    assert columns("generation", None)[:2] == ["chrf", "f1"]
    assert columns("generation", None, references=False)[0] == "distinct_2"
    assert "chrf" not in columns("generation", None, references=False)


def test_the_summary_is_the_same_every_time() -> None:
    assert summarize("classification", grid(), LABELS) == summarize("classification", grid(),
                                                                     LABELS)
