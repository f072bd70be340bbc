"""Tests for harness.report: CSV that Excel opens safely, and a self-contained HTML review."""

from __future__ import annotations

import csv
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.metrics import score_sample
from harness.report import render_html, summarize, write_all, write_csv

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
    assert summary[2]["invalid"] == 1.0


# ---------------------------------------------------------------- HTML


class Cells(HTMLParser):
    """The summary table's cells: rows of (class, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self.in_summary = self.in_cell = False
        self.cls = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.in_summary = attrs.get("id") == "summary"
        elif self.in_summary and tag == "tr":
            self.rows.append([])
        elif self.in_summary and tag == "td":
            self.in_cell, self.cls = True, attrs.get("class") or ""
            self.rows[-1].append((self.cls, ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_summary = False
        if tag == "td":
            self.in_cell = False

    def handle_data(self, data):
        if self.in_cell:
            cls, text = self.rows[-1][-1]
            self.rows[-1][-1] = (cls, text + data)


def summary_cells(page: str) -> dict[str, list[tuple[str, str]]]:
    parser = Cells()
    parser.feed(page)
    return {row[0][1]: row for row in parser.rows if row}


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


def test_the_html_escapes_outputs(page: str) -> None:
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "&lt;img src=x onerror=" in page


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
    greedy, beam = cells["greedy"], cells["beam"]
    accuracy = 2  # setting, shots, then the task's chosen metric first
    assert greedy[accuracy][1] == "0.000" and "best" not in greedy[accuracy][0]
    assert beam[accuracy][1] == "1.000" and "best" in beam[accuracy][0]
    # invalid (lower is better): greedy named no label twice, beam never
    invalid = 3
    assert (greedy[invalid][1], beam[invalid][1]) == ("2", "0")
    assert "best" in beam[invalid][0] and "best" not in greedy[invalid][0]


def test_identical_outputs_are_shown_once_with_a_count() -> None:
    records = [record("sample", 0, 0, "기쁨", sequence=i) for i in range(3)]
    page = render_html(RUN, records)
    assert "×3" in page
    assert page.count(' 기쁨<span class="cut">') == 1


def test_write_all_writes_the_report_files(tmp_path: Path) -> None:
    records = [record("greedy", 0, 0, "기쁨"), record("beam", 0, 0, "슬픔")]
    write_all(tmp_path, RUN, records)
    assert {p.name for p in tmp_path.iterdir()} == {"results.csv", "summary.csv", "index.html"}
    summary = read_csv(tmp_path / "summary.csv")
    assert [(r["setting"], r["shots"], r["accuracy"]) for r in summary] == [
        ("greedy", "0", "1.0"), ("beam", "0", "0.0")
    ]
    # re-rendering from the same records gives the same page
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == render_html(RUN, records)
