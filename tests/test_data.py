"""Tests for harness.tasks.data: reading items from CSV, TSV, JSONL and inline lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.tasks.data import check_items, read_table, read_text

ROWS = [
    {"text": "오늘은 하늘이 맑아요, 정말로.", "label": "기쁨"},
    {"text": "강아지가 \"멀리\" 떠났어요.", "label": "슬픔"},
]


def test_csv_rows_are_mappings_of_column_to_text(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    # a quoted comma, doubled quotes and a blank line that is skipped
    path.write_text(
        'text,label\n"오늘은 하늘이 맑아요, 정말로.",기쁨\n\n'
        '"강아지가 ""멀리"" 떠났어요.",슬픔\n',
        encoding="utf-8",
    )
    assert read_table(path) == ROWS


def test_csv_with_a_utf8_bom_has_a_clean_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("text,label\n가,나\n", encoding="utf-8-sig")
    assert read_table(path) == [{"text": "가", "label": "나"}]


def test_tsv_splits_on_tabs_only(tmp_path: Path) -> None:
    path = tmp_path / "items.tsv"
    path.write_text(
        "text\tlabel\n오늘은 하늘이 맑아요, 정말로.\t기쁨\n강아지가 \"멀리\" 떠났어요.\t슬픔\n",
        encoding="utf-8",
    )
    assert read_table(path) == ROWS


def test_jsonl_keeps_json_types_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = [json.dumps({**row, "n": i}, ensure_ascii=False) for i, row in enumerate(ROWS)]
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n", encoding="utf-8")
    assert read_table(path) == [{**row, "n": i} for i, row in enumerate(ROWS)]


def test_a_cp949_csv_reads_back_as_the_same_hangul(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = "text,label\n수리비를 다 냈는데 또 고장 나서 열받아요.,분노\n면접이 걱정돼요.,불안\n"
    path.write_bytes(text.encode("cp949"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # so the test really exercises the fallback

    assert read_table(path) == [
        {"text": "수리비를 다 냈는데 또 고장 나서 열받아요.", "label": "분노"},
        {"text": "면접이 걱정돼요.", "label": "불안"},
    ]
    assert read_text(path)[1] == "cp949"


def test_inline_items_must_be_mappings() -> None:
    assert check_items([{"text": "가"}], "task.yaml: data") == [{"text": "가"}]
    with pytest.raises(HarnessError, match=r"task.yaml: data: item 2 is not a mapping"):
        check_items([{"text": "가"}, "나"], "task.yaml: data")
    with pytest.raises(HarnessError, match="no items"):
        check_items([], "task.yaml: data")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "no items"),
        ("header_only.csv", b"text,label\n", "no items"),
        ("empty.jsonl", b"\n\n", "no items"),
        ("bad.jsonl", '{"text": "가"}\n{"text": "나",}\n'.encode(), "line 2 is not valid JSON"),
        ("list.jsonl", b'["not", "an", "object"]\n', "line 1 is not a JSON object"),
        ("wide.csv", "text,label\n가,나,다\n".encode(), "more fields than the header"),
        ("blank_header.csv", "text,\n가,나\n".encode(), "distinct, non-empty column names"),
        ("items.xlsx", b"PK", "not an Excel workbook"),
        ("items.xls", b"\xd0\xcf\x11\xe0", ".xls workbooks are not read; save the sheet as .xlsx"),
        ("items.parquet", b"PAR1", "not a Parquet file"),
        ("items.txt", "text\n가\n".encode(), "unknown data format '.txt'; use .csv, .tsv"),
        ("binary.csv", bytes([0xFF, 0xFE, 0xFA, 0x80]) * 4, "neither UTF-8 nor CP949"),
    ],
)
def test_unreadable_data_is_an_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(HarnessError) as caught:
        read_table(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_file_or_a_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="data file not found") as caught:
        read_table(tmp_path / "nowhere.csv")
    assert str(tmp_path / "nowhere.csv") in str(caught.value)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(HarnessError, match="is a folder"):
        read_table(tmp_path / "folder.csv")


def test_a_csv_cell_longer_than_the_csv_modules_default_limit_is_read(tmp_path: Path) -> None:
    passage = "가나다라마바사 " * 40_000  # 320,000 characters: a long document in one cell
    path = tmp_path / "long.csv"
    path.write_text(f'text,label\n"{passage}",기쁨\n', encoding="utf-8")
    assert read_table(path) == [{"text": passage, "label": "기쁨"}]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path, separator: str) -> None:
    rows = [{"text": f"첫 줄{separator}둘째 줄", "label": "기쁨"}, {"text": "셋", "label": "슬픔"}]
    path = tmp_path / "items.jsonl"
    # as written by json.dumps(ensure_ascii=False): the separators stay as they are
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert separator in path.read_text(encoding="utf-8")
    assert read_table(path) == rows
