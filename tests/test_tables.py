"""Tests for harness.reports.tables: how numbers, intervals and comparisons read."""

from __future__ import annotations

import math

from harness.reports import tables
from harness.scoring.summary import Summary
from tests.test_summary import LABELS, grid


def test_numbers_take_their_digits_from_the_registry() -> None:
    assert tables.fmt(0.27512, "accuracy") == "0.275"
    assert tables.fmt(23.456, "chrf") == "23.5" and tables.fmt(7.25, "length") == "7.2"
    assert tables.fmt(40.0, "n") == "40"  # a count
    assert tables.fmt(None, "accuracy") == tables.fmt(math.nan, "bleu") == "–"
    assert tables.fmt("greedy") == "greedy"


def test_intervals_differences_and_p_values() -> None:
    assert tables.fmt_interval(0.15, 0.425, "accuracy") == "[0.15, 0.42]"
    assert tables.fmt_interval(19.84, 27.06, "chrf") == "[19.8, 27.1]"
    assert tables.fmt_interval(None, 0.3, "accuracy") == ""
    assert tables.fmt_signed(0.25, "accuracy") == "+0.250"
    assert tables.fmt_signed(-0.00004, "logprob") == "0.000"  # never -0.000
    assert tables.fmt_signed(-1.0, "bleu") == "-1.0"
    assert (tables.p_is(0.0123), tables.p_is(0.0004)) == ("p = 0.012", "p < 0.001")
    assert (tables.fmt_p(0.5), tables.fmt_p(0.0004), tables.fmt_p(None)) == ("0.500", "<0.001",
                                                                            "–")


def test_the_page_groups_rows_by_shot_count_with_marks() -> None:
    summary = Summary("classification", grid(), LABELS)
    groups = tables.groups(summary)
    assert [g["shots"] for g in groups] == [0, 1]
    first = {row["setting"]: row["cells"][0] for row in groups[0]["rows"]}  # accuracy
    assert (first["all"].text, first["all"].interval, first["all"].mark) == (
        "1.000", "[1.00, 1.00]", "best")
    assert first["none"].mark == "worse"
    assert "significantly worse than the best at this shot count (all): -1.000" in (
        first["none"].title)
    assert first["first"].mark == "tied" and "Holm: p = 0.250" in first["first"].title


def test_comparison_tables_name_the_verdicts() -> None:
    summary = Summary("classification", grid(), LABELS)
    accuracy = tables.comparison_tables(summary)[0]
    assert accuracy["metric"] == "accuracy"
    verdicts = {(r["key"][0], r["key"][1]): r["verdict"] for r in accuracy["settings"]}
    assert verdicts == {("none", 0): "worse", ("first", 0): "no real difference",
                        ("last", 0): "no real difference"}
    shots = {r["key"][0]: (r["verdict"], r["p"], r["test"]) for r in accuracy["shots"]}
    assert shots["none"] == ("better", "0.008", "McNemar")  # 8 of 8 items: 2/256
    assert shots["all"] == ("no real difference", "1.000", "McNemar")


def test_the_confusion_grid_shades_by_the_share_of_the_row() -> None:
    found = tables.confusion_grid(Summary("classification", grid(), LABELS))
    assert found["answers"] == [*LABELS, "no label"]
    panels = {row["setting"]: row["panels"] for row in found["rows"]}
    first = panels["first"][0]  # 0 shots: right on items 1-4, no label on 5-8
    assert (first["title"], first["right"], first["outputs"]) == ("first · 0-shot", 4, 8)
    assert first["rows"] == [[(2, 0.5), (0, 0.0), (2, 0.5)], [(0, 0.0), (2, 0.5), (2, 0.5)]]
