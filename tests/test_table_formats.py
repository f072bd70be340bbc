"""Tests for harness.tasks.formats: data files as Excel workbooks (.xlsx) and Parquet."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runs.pipeline import prepare
from harness.tasks.data import read_table
from tests.conftest import EMOTION_ROWS


def workbook(path: Path, rows: list[list[object]], extra_sheet: bool = False) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    if extra_sheet:
        book.create_sheet("다른 시트").append(["other", "columns"])
        book.active = 1  # saved with the second sheet selected: the first is still read
    book.save(path)
    return path


def test_an_xlsx_sheet_reads_as_text_like_a_csv(tmp_path: Path) -> None:
    path = workbook(tmp_path / "items.xlsx", [
        [" text ", "label", "score", "when", None],
        ["시험에 합격해서 기뻐요.", "기쁨", 3, dt.datetime(2026, 12, 4), None],
        ["비가 와서 슬퍼요.", "슬픔", 2.5, dt.datetime(2026, 12, 4, 9, 30), None],
        [None, None, None, None, None],  # an empty row is skipped
        ["셋째 줄", None, True, None],
    ], extra_sheet=True)
    assert read_table(path) == [
        {"text": "시험에 합격해서 기뻐요.", "label": "기쁨", "score": "3", "when": "2026-12-04"},
        {"text": "비가 와서 슬퍼요.", "label": "슬픔", "score": "2.5",
         "when": "2026-12-04 09:30:00"},
        {"text": "셋째 줄", "label": "", "score": "TRUE", "when": ""},
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["text", "text"], ["가", "나"]], "distinct, non-empty column names"),
        ([["text", None, "label"], ["가", "", "나"]], "distinct, non-empty column names"),
        ([["text"], ["가", "나"]], "row 2 has more cells than the header's 1"),
        ([["text", "label"]], "no items in the data file"),
        ([], "no items in the data file"),
    ],
)
def test_a_bad_sheet_is_one_error_naming_the_file(tmp_path: Path, rows, message) -> None:
    path = workbook(tmp_path / "bad.xlsx", rows)
    with pytest.raises(HarnessError, match=message) as caught:
        read_table(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_parquet_file_keeps_its_types_and_drops_a_pandas_index(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"question": ["한국의 수도는?", "일 년은 몇 달?"], "answer": ["서울", None],
         "n": [1, 2]},
        index=pd.Index([10, 20], name="row"),
    )
    frame.to_parquet(tmp_path / "qa.parquet")
    assert read_table(tmp_path / "qa.parquet") == [
        {"question": "한국의 수도는?", "answer": "서울", "n": 1},
        {"question": "일 년은 몇 달?", "answer": None, "n": 2},
    ]


def test_without_pyarrow_parquet_is_one_line_naming_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "items.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    with pytest.raises(HarnessError) as caught:
        read_table(path)
    assert str(caught.value) == (
        f"{path}: reading .parquet files needs pyarrow, which is not installed: "
        "pip install pyarrow"
    )


def test_a_task_reads_its_data_from_a_workbook_and_its_shots_from_parquet(
    tmp_path: Path, write_yaml
) -> None:
    import pandas as pd

    workbook(tmp_path / "items.xlsx", [["text", "label"]] + [
        [row["text"], row["label"]] for row in EMOTION_ROWS
    ])
    pd.DataFrame(EMOTION_ROWS[::-1]).to_parquet(tmp_path / "shots.parquet", index=False)
    path = write_yaml(
        "name: sheets\nkind: classification\ndata: items.xlsx\nfewshot: shots.parquet\n"
        "shots: [0, 2]\nprompt:\n  example: '{{ text }} => {{ label }}'\n"
        "  query: '{{ text }} =>'\ntarget: '{{ label }}'\nlabels: [기쁨, 슬픔, 분노, 중립]\n"
    )
    plan = prepare(path)
    assert plan.task.items == EMOTION_ROWS
    assert plan.task.pool == EMOTION_ROWS[::-1]
    two_shot = next(p for p in plan.prompts if p.shots == 2)
    assert two_shot.text.count("=>") == 3
