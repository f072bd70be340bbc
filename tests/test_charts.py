"""Tests for harness.charts: matplotlib figures as inline SVG that loads nothing."""

from __future__ import annotations

import re

import pytest

from harness import charts


def row(setting: str, shots: int, **values: float | None) -> dict:
    base = {"accuracy": 0.5, "repetition": 0.1, "distinct_2": 0.8, "logprob": -1.0}
    return {"setting": setting, "shots": shots, **base, **values}


SUMMARY = [
    row("greedy", 0, accuracy=0.2, repetition=0.30, logprob=-0.4),
    row("greedy", 3, accuracy=0.6, repetition=0.25, logprob=-0.3),
    row("top_p", 0, accuracy=0.1, repetition=0.02, logprob=-2.5),
    row("top_p", 3, accuracy=0.4, repetition=0.01, logprob=-1.9),
    row("빔탐색", 0, accuracy=0.3, repetition=0.40, logprob=-0.5),
]
CHARTS = {
    "metric_by_shots": lambda s: charts.metric_by_shots(s, "accuracy"),
    "repetition_by_setting": charts.repetition_by_setting,
    "likelihood_vs_repetition": charts.likelihood_vs_repetition,
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
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for name in CHARTS:  # every reference points into its own chart
        svg = CHARTS[name](SUMMARY)
        own = set(re.findall(r'\bid="([^"]+)"', svg))
        assert set(re.findall(r'href="#([^"]+)"', svg)) <= own


def test_nothing_to_draw_is_no_chart() -> None:
    assert charts.metric_by_shots([], "accuracy") is None
    assert charts.metric_by_shots([row("greedy", 0, accuracy=None)], "accuracy") is None
    assert charts.repetition_by_setting([]) is None
    assert charts.likelihood_vs_repetition([row("greedy", 0, logprob=None)]) is None
    assert charts.grouped_bars([], {}, "accuracy", "t") is None


def test_rows_without_a_log_probability_are_left_out_of_the_trade_off() -> None:
    svg = charts.likelihood_vs_repetition(
        [row("greedy", 0), row("beam", 0, logprob=None), row("top_p", 0, logprob=-2.0)]
    )
    assert ">greedy<" in svg and ">top_p<" in svg and ">beam<" not in svg


def test_grouped_bars_name_every_series() -> None:
    svg = charts.grouped_bars(["greedy 0-shot", "beam 0-shot"],
                              {"A: default": [0.5, 0.7], "B: tuned": [0.6, None]},
                              "accuracy", "accuracy per setting")
    assert ">A: default<" in svg and ">B: tuned<" in svg and ">greedy 0-shot<" in svg


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
