"""Tests for harness.reports.report: CSV that Excel opens safely, and a self-contained HTML review."""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.reports.report import render_html, summarize, write_all, write_csv
from harness.reports.tables import text
from harness.scoring.metrics import score_sample

LABELS = ["기쁨", "슬픔", "분노"]


def record(setting: str, shots: int, item: int, output: str, reference: str = "기쁨",
           **extra: Any) -> dict[str, Any]:
    rec = {
        "task": "tiny", "item": item, "shots": shots, "setting": setting, "seed": None,
        "sequence": 0, "prompt": f"문장 {item}\n감정:", "output": output,
        "raw_output": output, "references": [reference], "n_tokens": 2,
        "mean_logprob": -1.25, "stop_reason": "length",
    }
    rec.update(score_sample("classification", output, [reference], LABELS))
    rec.update(extra)
    return rec


RUN = {
    "task": {"name": "tiny", "kind": "classification", "description": "작은 감정 분류",
             "metrics": ["accuracy"]},
    "model": {"name": "tiny-model", "type": "gpt2", "device": "cpu", "dtype": "float32"},
    "started_at": "2026-11-26T08:00:00+09:00",
    "timings": {"generate_s": 1.5},
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- CSV


def test_results_csv_has_a_bom_and_round_trips_hangul(tmp_path: Path) -> None:
    records = [record("greedy", 0, 0, "기쁨이에요, \"정말\"\n둘째 줄"), record("beam", 1, 1, "슬픔")]
    path = tmp_path / "results.csv"
    write_csv(path, records)

    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = read_csv(path)
    assert len(rows) == 2
    assert rows[0]["output"] == "기쁨이에요, \"정말\"\n둘째 줄"
    assert rows[0]["prompt"] == "문장 0\n감정:"
    assert rows[0]["reference"] == "기쁨" and rows[1]["output"] == "슬픔"
    assert rows[0]["setting"] == "greedy" and rows[1]["shots"] == "1"
    assert rows[0]["seed"] == ""  # None is an empty cell, not "None"


def test_several_references_share_one_cell(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    write_csv(path, [record("greedy", 0, 0, "도쿄", references=["도쿄", "동경"])])
    (row,) = read_csv(path)
    assert row["reference"] == "도쿄"
    assert row["references"] == "도쿄 | 동경"


@pytest.mark.parametrize("output", ["=1+2", "+82 10", "-cmd|' /C calc'!A0", "@SUM(A1:A2)",
                                    "=HYPERLINK(\"http://x\")"])
def test_a_cell_that_a_spreadsheet_would_run_is_neutralised(tmp_path: Path, output: str) -> None:
    path = tmp_path / "results.csv"
    write_csv(path, [record("greedy", 0, 0, output, mean_logprob=-0.75)])
    (row,) = read_csv(path)
    assert row["output"] == "'" + output
    assert row["raw_output"] == "'" + output
    assert row["mean_logprob"] == "-0.75"  # a negative number stays a number
    assert float(row["mean_logprob"]) == -0.75


def test_a_harmless_output_is_written_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    write_csv(path, [record("greedy", 0, 0, "기쁨 - 아주 좋아요 = 최고")])
    assert read_csv(path)[0]["output"] == "기쁨 - 아주 좋아요 = 최고"


# ---------------------------------------------------------------- summary


def test_summarize_groups_by_setting_and_shots() -> None:
    records = [
        record("greedy", 0, 0, "기쁨"), record("greedy", 0, 1, "슬픔"),
        record("greedy", 1, 0, "기쁨"), record("greedy", 1, 1, "기쁨"),
        record("beam", 0, 0, "분노"), record("beam", 0, 1, "모르겠어요"),
    ]
    summary = summarize("classification", records)
    assert [(row["setting"], row["shots"]) for row in summary] == [
        ("greedy", 0), ("greedy", 1), ("beam", 0)
    ]
    accuracy = {(row["setting"], row["shots"]): row["accuracy"] for row in summary}
    assert accuracy == {("greedy", 0): 0.5, ("greedy", 1): 1.0, ("beam", 0): 0.0}
    assert [row["n"] for row in summary] == [2.0, 2.0, 2.0]
    assert summary[2]["invalid"] == 0.5  # a share: one of beam's two outputs names no label
    # each metric carries its 95% interval over items; greedy at 1 shot is right on both
    assert (summary[1]["accuracy_low"], summary[1]["accuracy_high"]) == (1.0, 1.0)
    assert summary[0]["accuracy_low"] <= 0.5 <= summary[0]["accuracy_high"]


# ---------------------------------------------------------------- HTML


class Cells(HTMLParser):
    """The summary table's cells: rows of (class, value text, interval text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str, str]]] = []
        self.in_summary = self.in_cell = self.in_interval = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.in_summary = attrs.get("id") == "summary"
        elif self.in_summary and tag == "tr":
            self.rows.append([])
        elif self.in_summary and tag == "td":
            self.in_cell = True
            self.rows[-1].append((attrs.get("class") or "", "", ""))
        elif self.in_cell and tag == "span" and attrs.get("class") == "ci":
            self.in_interval = True

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_summary = False
        if tag == "td":
            self.in_cell = False
        if tag == "span":
            self.in_interval = False

    def handle_data(self, data):
        if self.in_cell:
            cls, text, interval = self.rows[-1][-1]
            if self.in_interval:
                self.rows[-1][-1] = (cls, text, interval + data)
            else:
                self.rows[-1][-1] = (cls, text + data, interval)


def summary_cells(page: str) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    """(setting, shots) -> the row's cells."""
    parser = Cells()
    parser.feed(page)
    return {(row[0][1], row[1][1]): row for row in parser.rows if row}


PAYLOADS = ["<script>alert(1)</script>", '<img src=x onerror="alert(2)">']


@pytest.fixture
def page() -> str:
    records = [
        record("greedy", 0, 0, PAYLOADS[0]),
        record("greedy", 0, 1, PAYLOADS[1], reference="슬픔"),
        record("beam", 0, 0, "기쁨"),
        record("beam", 0, 1, "슬픔입니다", reference="슬픔"),
    ]
    return render_html(RUN, records)


def page_data(page: str) -> dict[str, Any]:
    """The outputs the page carries for its script (drawn a page of items at a time)."""
    found = re.search(r'<script type="application/json" id="review-data">(.*?)</script>',
                      page, re.DOTALL)
    assert found, "no review data in the page"
    return json.loads(found.group(1))


def outputs_of(page: str) -> list[dict[str, Any]]:
    return [o for item in page_data(page)["items"] for cell in item["cells"] for o in cell[2]]


def test_the_html_escapes_outputs(page: str) -> None:
    # Outputs travel as JSON in which no '<', '>' or '&' appears as itself, so no output
    # can close the data block; the script writes them with textContent only (the browser
    # test checks that they show as text).
    assert "<script>alert(1)</script>" not in page
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page
    assert "<img" not in page
    assert "\\u003cimg src=x onerror=" in page
    assert {o["t"] for o in outputs_of(page)} >= set(PAYLOADS)
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page


def test_an_output_cannot_close_the_data_block() -> None:
    nasty = "</script><script>alert(3)</script><!--"
    page = render_html(RUN, [record("greedy", 0, 0, nasty)])
    # the two data blocks' (outputs, rating scale) and the script's own
    assert page.count("</script>") == 3
    assert outputs_of(page)[0]["t"] == nasty


def test_the_html_shows_hangul_as_is(page: str) -> None:
    assert "슬픔입니다" in page and "작은 감정 분류" in page
    assert not re.search(r"&#(x[0-9a-fA-F]{4,}|[0-9]{4,});", page)  # nor as &#44032;
    assert '<meta charset="utf-8">' in page


def test_the_html_loads_nothing_from_elsewhere(page: str) -> None:
    assert not re.search(r"https?://", page)
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert not re.search(r"<link[^>]*href=", page)
    assert not re.search(r"@import|url\(", page)
    assert page.count("<script>") == 1  # the page's own inline script only


def test_the_html_marks_the_best_value_per_column(page: str) -> None:
    cells = summary_cells(page)
    greedy, beam = cells[("greedy", "0")], cells[("beam", "0")]
    accuracy = 2  # setting, shots, then the task's chosen metric first
    assert greedy[accuracy][:2] == ("num tied", "0.000")  # two items: nothing is certain
    assert beam[accuracy][:2] == ("num best", "1.000")
    assert (greedy[accuracy][2], beam[accuracy][2]) == ("[0.00, 0.00]", "[1.00, 1.00]")
    # invalid (lower is better): greedy names no label in both outputs, beam in none
    invalid = 4
    assert (greedy[invalid][1], beam[invalid][1]) == ("1.000", "0.000")
    assert beam[invalid][0] == "num best" and greedy[invalid][0] == "num tied"


def test_identical_outputs_are_shown_once_with_a_count() -> None:
    records = [record("sample", 0, 0, "기쁨", sequence=i) for i in range(3)]
    records.append(record("sample", 0, 0, "슬픔", sequence=3))
    page = render_html(RUN, records)
    (item,) = page_data(page)["items"]
    (cell,) = item["cells"]
    assert [(o["t"], o["n"]) for o in cell[2]] == [("기쁨", 3), ("슬픔", 1)]  # most first


def test_the_page_keeps_what_a_stop_string_cut_off() -> None:
    cut = record("greedy", 0, 0, "기쁨", raw_output="기쁨\n문장: 다음", stop_reason="stop")
    whole = record("greedy", 1, 0, "슬픔")
    page = render_html(RUN, [cut, whole])
    first, second = outputs_of(page)
    assert (first["t"], first["x"], first["s"]) == ("기쁨", "\n문장: 다음", "stop")
    assert second["x"] == ""


def test_the_page_lays_out_items_settings_and_shots() -> None:
    records = [record(s, k, i, "기쁨") for s in ("greedy", "beam") for i in (1, 0) for k in (1, 0)]
    page = render_html(RUN, records)
    data = page_data(page)
    assert [r["label"] for r in data["rows"]] == ["greedy", "beam"]
    assert [c["label"] for c in data["cols"]] == ["0-shot", "1-shot"]
    assert [item["title"] for item in data["items"]] == ["item 1", "item 2"]
    item = data["items"][0]
    assert item["refs"] == ["기쁨"]
    assert [label for label, _ in item["prompts"]] == ["0-shot", "1-shot"]
    assert sorted((r, c) for r, c, _ in item["cells"]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert data["marks"] is True and outputs_of(page)[0]["ok"] == 1
    # the filters offer every setting and shot count
    assert '<option value="beam">beam</option>' in page
    assert '<option value="1">1</option>' in page
    assert 'id="f-mark"' in page and 'id="f-search"' in page


def test_prompts_travel_as_shared_blocks_and_come_back_whole() -> None:
    run = {**RUN, "task": {**RUN["task"], "prompt": {"separator": "\n\n"}}}
    shots = "감정을 고르세요.\n\n문장: 예시\n감정: 기쁨\n\n"
    records = [record("greedy", k, i, "기쁨", prompt=(shots if k else "감정을 고르세요.\n\n")
                      + f"문장 {i}\n\n\n감정:") for i in range(3) for k in (0, 1)]
    data = page_data(render_html(run, records))
    assert data["sep"] == "\n\n"
    back = {(item["title"], label): data["sep"].join(data["blocks"][b] for b in ids)
            for item in data["items"] for label, ids in item["prompts"]}
    assert back == {(f"item {r['item'] + 1}", f"{r['shots']}-shot"): r["prompt"] for r in records}
    assert data["blocks"].count("감정을 고르세요.") == 1  # the instruction is stored once


def test_a_translation_page_has_no_right_or_wrong() -> None:
    run = {**RUN, "task": {**RUN["task"], "kind": "translation", "metrics": ["chrf"]}}
    records = [{**record("greedy", 0, 0, "It is sunny."), "correct": None}]
    page = render_html(run, records)
    assert page_data(page)["marks"] is False
    assert 'id="f-mark"' not in page
    assert "ok" not in outputs_of(page)[0]


def test_the_summary_counts_invalid_answers_and_stop_reasons() -> None:
    records = [
        record("greedy", 0, 0, "모르겠어요", stop_reason="length"),
        record("greedy", 0, 1, "기쁨", stop_reason="stop"),
        record("beam", 0, 0, "기쁨", stop_reason="eos"),
    ]
    page = render_html(RUN, records)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert "All 3 outputs: 1 name no label" in text
    assert "at end of sequence 1, at a stop string 1, at max_new_tokens 1." in text
    greedy = summary_cells(page)[("greedy", "0")]
    headings = re.findall(r"<th title=\"[^\"]*\">([^<]+)", page.split('id="summary"')[1])
    assert [h.strip() for h in headings][-4:] == ["eos", "stop str", "max len", "n"]
    assert [cell[1:] for cell in greedy[-4:]] == [("0", ""), ("1", ""), ("1", ""), ("2", "")]


def test_a_column_where_every_row_ties_marks_nothing() -> None:
    page = render_html(RUN, [record("greedy", 0, 0, "기쁨"), record("beam", 0, 0, "기쁨")])
    cells = summary_cells(page)
    assert not any(cls != "num" for row in cells.values() for cls, _, _ in row[2:])


def test_a_classification_page_holds_its_own_charts_as_inline_svg() -> None:
    records = [record(s, k, i, "기쁨 기쁨 기쁨 기쁨") for s in ("greedy", "top_p")
               for k in (0, 1) for i in (0, 1)]
    page = render_html(RUN, records)
    assert page.count("<svg") == 3 and page.count("<figcaption>") == 3
    for title in ("accuracy by shot count", "macro-F1 by shot count",
                  "what each setting answers, beside the references"):
        assert f">{title}<" in page
    assert "greedy" in page.split('id="charts"')[1].split("</svg>")[0]
    # answers are labels: nothing about looping or variety, which could only show zeros
    assert "repeated 3-gram" not in page and "likely vs varied" not in page
    # the commonest reference (기쁨, both items) is the dashed baseline
    assert ">always “기쁨”: 1.000<" in page


def test_the_summary_table_sorts_and_explains_its_columns(page: str) -> None:
    assert 'class="summary sortable"' in page
    assert 'title="share of outputs whose first named label is the reference"' in page
    assert "aria-sort" in page  # the script marks the sorted column


def test_write_all_writes_the_report_files(tmp_path: Path) -> None:
    records = [record("greedy", 0, 0, "기쁨"), record("beam", 0, 0, "슬픔")]
    write_all(tmp_path, RUN, records)
    assert {p.name for p in tmp_path.iterdir()} == {"results.csv", "summary.csv", "labels.csv",
                                                    "index.html"}
    summary = read_csv(tmp_path / "summary.csv")
    assert [(r["setting"], r["shots"], r["accuracy"], r["accuracy_low"], r["accuracy_high"])
            for r in summary] == [("greedy", "0", "1.0", "1.0", "1.0"),
                                  ("beam", "0", "0.0", "0.0", "0.0")]
    assert list(summary[0])[:9] == ["setting", "shots", "accuracy", "accuracy_low",
                                    "accuracy_high", "accuracy_mark", "accuracy_p", "macro_f1",
                                    "macro_f1_low"]
    assert "n" in summary[0] and "n_low" not in summary[0]  # a count has no interval
    # re-rendering from the same records gives the same page
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == render_html(RUN, records)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_nan_log_probability_is_null_in_the_pages_json() -> None:
    records = [record("greedy", 0, 0, "기쁨", mean_logprob=float("nan")),
               record("greedy", 0, 1, "슬픔", mean_logprob=float("-inf"), reference="슬픔"),
               record("beam", 0, 0, "기쁨")]
    page = render_html(RUN, records)
    found = re.search(r'<script type="application/json" id="review-data">(.*?)</script>',
                      page, re.DOTALL)
    data = _strict_json(found.group(1))  # what a browser's JSON.parse accepts
    logprobs = sorted((o["lp"] for item in data["items"] for cell in item["cells"]
                       for o in cell[2]), key=lambda v: (v is not None, v))
    assert logprobs == [None, None, -1.25]


def test_write_all_leaves_no_scratch_files(tmp_path: Path) -> None:
    write_all(tmp_path, RUN, [record("greedy", 0, 0, "기쁨")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "labels.csv",
                                                          "results.csv", "summary.csv"]


# ---------------------------------------------------------------- intervals and marks

REFS = ["The sky is clear today.", "It rained all night.", "We walked to the station.",
        "The soup is too salty.", "My brother plays the piano.", "The library opens at nine.",
        "She forgot her umbrella again.", "The train was ten minutes late.",
        "I would like a cup of tea.", "The children laughed at the clown.",
        "He fixed the broken chair.", "Autumn leaves cover the road."]
TRANSLATION = {**RUN, "task": {"name": "translation", "kind": "translation",
                               "metrics": ["chrf", "bleu"]}}


def translated(setting: str, item: int, output: str) -> dict[str, Any]:
    rec = record(setting, 0, item, output, reference=REFS[item])
    return {k: v for k, v in rec.items() if k not in ("predicted", "invalid")} | score_sample(
        "translation", output, [REFS[item]], None)


def translation_records() -> list[dict[str, Any]]:
    """greedy translates every item word for word; beam answers nonsense on every item."""
    return ([translated("greedy", i, ref) for i, ref in enumerate(REFS)]
            + [translated("beam", i, "000 111") for i in range(len(REFS))])


def test_a_translation_report_shows_intervals_error_bars_and_marks() -> None:
    page = render_html(TRANSLATION, translation_records())
    cells = summary_cells(page)
    greedy, beam = cells[("greedy", "0")], cells[("beam", "0")]
    # chrF first: 100 against 0, better on every one of 12 items; of the 2^12 swaps only
    # "none" and "all" reach that difference: p = 2/4096, one comparison, so Holm keeps it
    assert greedy[2] == ("num best", "100.0", "[100.0, 100.0]")
    assert beam[2] == ("num worse", "0.0", "[0.0, 0.0]")
    title = re.search(r'<td class="num worse"[^>]*title="([^"]*)"', page).group(1)
    assert "significantly worse than the best at this shot count (greedy): -100.0" in title
    assert "p &lt; 0.001 (randomization; Holm: p &lt; 0.001)" in title
    table = page.split('data-metric="chrf"')[1].split("</table>")[0]
    assert "<td>beam</td><td>greedy</td>" in table and ">worse<" in table
    chart = page.split('id="charts"')[1]
    assert "chrF by shot count" in chart and "LineCollection" in chart  # error bars


def test_the_terminal_summary_names_what_is_significantly_worse() -> None:
    from harness.scoring.summary import Summary

    shown = text(Summary("translation", translation_records(), None, ["chrf", "bleu"]))
    lines = shown.splitlines()
    assert lines[0].split() == ["setting", "shots", "chrf", "bleu", "distinct_1", "distinct_2"]
    assert lines[1].startswith("greedy") and "100.0 [100.0, 100.0] *" in lines[1]
    assert "0.0 [0.0, 0.0] v" in lines[2]
    assert lines[-1] == ("0-shot chrf: best greedy 100.0 [100.0, 100.0]; significantly worse: "
                         "beam 0.0 (-100.0 [-100.0, -100.0], p < 0.001 (randomization; Holm: "
                         "p < 0.001))")


def test_translation_with_hardly_any_loops_draws_no_repetition_chart() -> None:
    records = translation_records()
    records[0] = {**records[0], "repetition": 0.004}  # one repeated 3-gram in 250
    page = render_html(TRANSLATION, records)
    assert "likely vs varied" not in page and "repeated 3-gram rate (lower" not in page
    records[0] = {**records[0], "repetition": 0.25}
    page = render_html(TRANSLATION, records)
    assert "likely vs varied" in page and ">repeated 3-gram rate (lower is better)<" in page


def test_generation_without_loops_draws_no_chart_of_zeros() -> None:
    run = {**RUN, "task": {"name": "gen", "kind": "generation", "metrics": None}}
    records = [{**record(s, 0, i, f"대답 {i} 입니다"), "references": []} for s in ("greedy", "top_p")
               for i in range(3)]
    records = [{k: v for k, v in r.items() if k not in ("predicted", "invalid")}
               | score_sample("generation", r["output"], [], None) for r in records]
    page = render_html(run, records)
    assert "likely vs varied" not in page  # every repetition rate is 0
    assert ">distinct-2 (higher is better)<" in page
    assert ">repeated 3-gram rate (lower is better)<" not in page
    assert "chrF" not in page.split('id="summary"')[1].split("</table>")[0]  # no references


def test_the_pages_figures_follow_the_metric_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chart given to a metric's registry entry is drawn with its caption; one taken
    away is not drawn: the report chooses no chart by a metric's name."""
    from dataclasses import replace

    from harness.scoring import metrics

    records = translation_records()
    records[0] = {**records[0], "repetition": 0.25}
    assert "How much each setting loops" in render_html(TRANSLATION, records)
    changed = tuple(
        replace(m, charts=()) if m.name == "repetition" else
        replace(m, charts=(metrics.Chart("bars", "BLEU, one panel a setting."),))
        if m.name == "bleu" else m
        for m in metrics.METRICS
    )
    monkeypatch.setattr(metrics, "METRICS", changed)
    page = render_html(TRANSLATION, records)
    assert "How much each setting loops" not in page and "likely vs varied" not in page
    assert "BLEU, one panel a setting." in page and ">BLEU (higher is better)<" in page
