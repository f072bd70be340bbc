"""Tests for harness.reports.charts: matplotlib figures as inline SVG that loads nothing."""

from __future__ import annotations

import re

import pytest

from harness.reports import charts


def row(setting: str, shots: int, **values: float | None) -> dict:
    base = {"accuracy": 0.5, "accuracy_low": 0.3, "accuracy_high": 0.7, "repetition": 0.1,
            "repetition_low": 0.05, "repetition_high": 0.2, "distinct_2": 0.8,
            "distinct_2_low": 0.7, "distinct_2_high": 0.9, "logprob": -1.0}
    return {"setting": setting, "shots": shots, **base, **values}


def likelihood_vs_repetition(summary: list[dict]) -> str | None:
    """The registry's "versus" chart of repetition: mean log-prob against it."""
    return charts.versus(summary, "repetition", "logprob", "likely vs varied")


SUMMARY = [
    row("greedy", 0, accuracy=0.2, repetition=0.30, logprob=-0.4),
    row("greedy", 3, accuracy=0.6, repetition=0.25, logprob=-0.3),
    row("top_p", 0, accuracy=0.1, repetition=0.02, logprob=-2.5),
    row("top_p", 3, accuracy=0.4, repetition=0.01, logprob=-1.9),
    row("빔탐색", 0, accuracy=0.3, repetition=0.40, logprob=-0.5),
]
CHARTS = {
    "metric_by_shots": lambda s: charts.metric_by_shots(s, "accuracy", ("always “중립”", 0.3)),
    "bars_by_setting": lambda s: charts.bars_by_setting(s, ["repetition", "distinct_2"]),
    "likelihood_vs_repetition": likelihood_vs_repetition,
    "answer_distribution": lambda s: charts.answer_distribution(
        ["references", *(f"{r['setting']} {r['shots']}" for r in s)],
        [[3, 1, 0], *([1, 1, 2] for _ in s)], ["기쁨", "슬픔", "no label"]),
}


@pytest.mark.parametrize("name", CHARTS)
def test_a_chart_is_an_svg_element_that_loads_nothing(name: str) -> None:
    svg = CHARTS[name](SUMMARY)
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "viewBox=" in svg and "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert not re.search(r"https?://|url\(|<script|<style|xlink:|<image", svg)
    assert "<metadata" not in svg  # no date, no creator


@pytest.mark.parametrize("name", CHARTS)
def test_the_same_numbers_draw_the_same_chart(name: str) -> None:
    assert CHARTS[name](SUMMARY) == CHARTS[name](SUMMARY)


@pytest.mark.parametrize("name", ["metric_by_shots", "likelihood_vs_repetition"])
def test_settings_are_named_as_text_hangul_included(name: str) -> None:
    svg = CHARTS[name](SUMMARY)
    # the text stays text (svg.fonttype none), for the page's Korean fonts to draw
    for setting in ("greedy", "top_p", "빔탐색"):
        assert f">{setting}<" in svg


def test_two_charts_on_one_page_share_no_id() -> None:
    ids = [set(re.findall(r'\bid="([^"]+)"', CHARTS[name](SUMMARY))) for name in CHARTS]
    assert all(ids)
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])
    for name in CHARTS:  # every reference points into its own chart
        svg = CHARTS[name](SUMMARY)
        own = set(re.findall(r'\bid="([^"]+)"', svg))
        assert set(re.findall(r'href="#([^"]+)"', svg)) <= own


def test_nothing_to_draw_is_no_chart() -> None:
    assert charts.metric_by_shots([], "accuracy") is None
    assert charts.metric_by_shots([row("greedy", 0, accuracy=None)], "accuracy") is None
    assert charts.bars_by_setting([], ["repetition"]) is None
    assert charts.bars_by_setting(SUMMARY, []) is None
    assert likelihood_vs_repetition([row("greedy", 0, logprob=None)]) is None
    assert charts.answer_distribution([], [], ["기쁨"]) is None
    assert charts.grouped_bars([], {}, "accuracy", "t") is None


def _error_bars(svg: str) -> list[str]:
    """The error bars' segments: matplotlib draws them as line collections."""
    groups = re.findall(r'<g id="c[0-9a-f]+-LineCollection_\d+">(.*?)</g>', svg, re.DOTALL)
    return [d for group in groups for d in re.findall(r'<path d="([^"]+)"', group)]


def test_error_bars_are_drawn_from_the_interval_columns() -> None:
    bare = [{k: v for k, v in r.items() if not k.endswith(("_low", "_high"))} for r in SUMMARY]
    # one vertical segment per point (and its legend entry's), none without intervals
    assert len(_error_bars(charts.metric_by_shots(SUMMARY, "accuracy"))) >= len(SUMMARY)
    assert _error_bars(charts.metric_by_shots(bare, "accuracy")) == []
    assert len(_error_bars(charts.bars_by_setting(SUMMARY, ["repetition"]))) >= len(SUMMARY)
    assert _error_bars(charts.bars_by_setting(bare, ["repetition"])) == []


def test_a_baseline_is_a_labelled_line() -> None:
    svg = charts.metric_by_shots(SUMMARY, "accuracy", ("always “중립”: 0.300", 0.3))
    assert ">always “중립”: 0.300<" in svg
    assert charts.metric_by_shots(SUMMARY, "accuracy") != svg


def test_rows_without_a_log_probability_are_left_out_of_the_trade_off() -> None:
    svg = likelihood_vs_repetition(
        [row("greedy", 0), row("beam", 0, logprob=None), row("top_p", 0, logprob=-2.0)]
    )
    assert ">greedy<" in svg and ">top_p<" in svg and ">beam<" not in svg


def test_grouped_bars_name_every_series() -> None:
    svg = charts.grouped_bars(["greedy 0-shot", "beam 0-shot"],
                              {"A: default": [0.5, 0.7], "B: tuned": [0.6, None]},
                              "accuracy", "accuracy per setting",
                              {"A: default": [(0.4, 0.6), (0.6, 0.8)]})
    assert ">A: default<" in svg and ">B: tuned<" in svg and ">greedy 0-shot<" in svg
    assert len(_error_bars(svg)) == 2  # run A's two bars; B has no interval


def test_the_answer_chart_names_every_label() -> None:
    svg = CHARTS["answer_distribution"](SUMMARY)
    for name in ("기쁨", "슬픔", "no label", "references"):
        assert f">{name}<" in svg


@pytest.mark.parametrize("name", CHARTS)
def test_dollar_signs_in_names_are_text_not_math(name: str) -> None:
    # matplotlib reads $...$ as math text: "$x$" would lose its dollars and "$\frac$"
    # would raise after every output had been generated
    summary = [row("price_$5$", 0), row("price_$5$", 3, accuracy=0.7), row(r"bad_$\frac$", 0)]
    svg = CHARTS[name](summary)
    assert "price_$5$" in svg and r"bad_$\frac$" in svg


def test_grouped_bars_keep_dollar_signs_in_run_names() -> None:
    svg = charts.grouped_bars(["greedy 0-shot"], {"A: $HOME$": [0.5], r"B: $\x$": [0.7]},
                              "accuracy", "accuracy per setting")
    assert "A: $HOME$" in svg and r"B: $\x$" in svg
