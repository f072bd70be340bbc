"""Issue 24: hostile workbooks and Parquet files are one line naming the file, read in
seconds and bounded memory.

Each file is built here: a valid workbook from openpyxl whose sheet (and shared strings)
are then written by hand, as an attacker or a broken exporter would write them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.tasks.data import read_table

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
SHARED_TYPE = ('<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
               'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>')
HEADER = ('<row r="1"><c r="A1" t="inlineStr"><is><t>text</t></is></c>'
          '<c r="B1" t="inlineStr"><is><t>label</t></is></c></row>')


def workbook(path: Path, rows: Iterable[str], shared: Iterable[str] | None = None,
             dimension: str = "A1:B2", doctype: str = "") -> Path:
    """An .xlsx whose first sheet's <sheetData> holds ``rows`` (XML text, streamed into
    the zip) and, when given, a shared-strings part of the text ``shared``."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["text", "label"])
    made = io.BytesIO()
    book.save(made)
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                with out.open(info.filename, "w", force_zip64=True) as handle:
                    handle.write(f'{doctype}<worksheet xmlns="{MAIN}"><dimension ref="{dimension}"/>'
                                 "<sheetData>".encode())
                    for row in rows:
                        handle.write(row.encode())
                    handle.write(b"</sheetData></worksheet>")
                continue
            if info.filename == "[Content_Types].xml" and shared is not None:
                data = data.replace(b"</Types>", SHARED_TYPE.encode() + b"</Types>")
            out.writestr(info, data)
        if shared is not None:
            with out.open("xl/sharedStrings.xml", "w", force_zip64=True) as handle:
                for part in shared:
                    handle.write(part.encode())
    return path


def number_rows(count: int) -> Iterable[str]:
    yield HEADER
    for row in range(2, count + 2):
        yield f'<row r="{row}"><c r="A{row}"><v>{row}</v></c><c r="B{row}"><v>1</v></c></row>'


def row(cells: str, number: int = 2) -> list[str]:
    return [HEADER, f'<row r="{number}">{cells}</row>']


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">'
                  + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                            for i in range(8)) + "]>")

# (how the workbook is built, a part of the one line it must give)
BROKEN_WORKBOOKS = {
    "sheet XML not well-formed": (lambda p: workbook(p, [HEADER, "<row r='2'><c>"]),
                                  "its first sheet cannot be read"),
    "shared string out of range": (
        lambda p: workbook(p, row('<c r="A2" t="s"><v>7</v></c>'),
                           shared=[f'<sst xmlns="{MAIN}"><si><t>하나</t></si></sst>']),
        "its first sheet cannot be read (a cell refers to a shared string the workbook does "
        "not have)"),
    "number cell holding text": (lambda p: workbook(p, row('<c r="A2" t="n"><v>abc</v></c>')),
                                 "its first sheet cannot be read"),
    "column past XFD": (lambda p: workbook(p, row('<c r="ZZZZZZ2"><v>1</v></c>')),
                        "its first sheet cannot be read"),
    "bad date cell": (lambda p: workbook(p, row('<c r="A2" t="d"><v>not a date</v></c>')),
                      "its first sheet cannot be read"),
    "entity expansion": (lambda p: workbook(p, row('<c r="A2" t="inlineStr"><is><t>&i;</t></is></c>'),
                                            doctype=BILLION_LAUGHS),
                         "its first sheet cannot be read"),
    "a row numbered 2,000,000,000": (
        lambda p: workbook(p, row('<c r="A2000000000"><v>1</v></c>', 2_000_000_000)),
        "a row numbered 2,000,000,000, past Excel's last row (1,048,576)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_WORKBOOKS))
def test_a_broken_workbook_is_one_line_naming_the_file(tmp_path, case) -> None:
    build, expected = BROKEN_WORKBOOKS[case]
    path = build(tmp_path / "items.xlsx")
    with pytest.raises(HarnessError) as caught:
        read_table(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_a_workbook_without_sheets_is_one_line(tmp_path) -> None:
    path = workbook(tmp_path / "items.xlsx", [HEADER])
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(
        parts["xl/workbook.xml"][parts["xl/workbook.xml"].index(b"<sheets>"):
                                 parts["xl/workbook.xml"].index(b"</sheets>") + 9], b"<sheets/>")
    with zipfile.ZipFile(path, "w") as out:
        for name, data in parts.items():
            out.writestr(name, data)
    with pytest.raises(HarnessError, match="the workbook has no sheet"):
        read_table(path)


def test_a_dimension_claiming_the_whole_sheet_reads_only_the_cells_written(tmp_path) -> None:
    path = workbook(tmp_path / "items.xlsx", row('<c r="A2" t="inlineStr"><is><t>가</t></is></c>'),
                    dimension="A1:XFD1048576")
    assert read_table(path) == [{"text": "가", "label": ""}]


def bounded(code: str, limit_s: float = 60) -> tuple[str, int]:
    """Run ``code`` (which prints its one line) in a fresh interpreter; its last line of
    output and its peak memory in MiB."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=limit_s, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    *_, line, peak = done.stdout.splitlines()
    return line, int(peak)


# The peak resident memory of this process (ru_maxrss would count the parent's too: Linux
# keeps it across exec).
PEAK = ("def peak_mib():\n    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n            return int(line.split()[1]) // 1024\n")
READ = (PEAK + "import sys\nfrom harness.errors import HarnessError\n"
        "from harness.tasks.data import read_table\n"
        "try:\n    print(len(read_table(__import__('pathlib').Path({path!r}))))\n"
        "except HarnessError as exc:\n    print(exc)\n"
        "print(peak_mib())\n")


def test_one_huge_shared_string_is_refused_from_the_zip_directory(tmp_path) -> None:
    path = workbook(tmp_path / "big.xlsx", row('<c r="A2" t="s"><v>0</v></c>'), shared=[
        f'<sst xmlns="{MAIN}"><si><t>', *("가" * 2**18 for _ in range(400)), "</t></si></sst>"])
    assert path.stat().st_size < 2**20 < 300 * 2**20  # a small file that unpacks to 300 MiB
    line, peak = bounded(READ.format(path=str(path)), limit_s=30)
    assert line == (f"{path}: the workbook unpacks to 300 MiB, more than the 256 MiB the harness "
                    "reads; keep only the rows you evaluate, or save them as .csv")
    assert peak < 400


def test_rows_past_excels_last_row_are_counted_before_they_are_read(tmp_path) -> None:
    path = workbook(tmp_path / "rows.xlsx", number_rows(1_100_000))
    assert path.stat().st_size < 16 * 2**20
    started = time.monotonic()
    line, peak = bounded(READ.format(path=str(path)), limit_s=60)
    assert time.monotonic() - started < 20  # openpyxl would take about as long per 10,000
    assert line == (f"{path}: the sheet has 1,100,001 rows, past Excel's last row (1,048,576); "
                    "keep only the rows you evaluate")
    assert peak < 400


# ---------------------------------------------------------------- Parquet


def parquet(path: Path, table, pandas: bytes | None = None) -> Path:
    import pyarrow.parquet as pq

    if pandas is not None:
        table = table.replace_schema_metadata({b"pandas": pandas})
    pq.write_table(table, path)
    return path


def test_a_parquet_file_of_too_many_rows_is_refused_from_its_footer(tmp_path) -> None:
    import pyarrow as pa

    path = parquet(tmp_path / "rows.parquet", pa.table({"text": pa.nulls(3_000_000, pa.string())}))
    assert path.stat().st_size < 2**20
    line, peak = bounded(READ.format(path=str(path)), limit_s=30)
    assert line == (f"{path}: the file holds 3,000,000 rows, more than the 1,048,576 the "
                    "harness reads; keep only the rows you evaluate")
    assert peak < 400


def pandas_meta(index) -> bytes:
    return json.dumps({"index_columns": index, "columns": []}).encode()


@pytest.mark.parametrize(("metadata", "expected"), [
    (pandas_meta(["missing"]), "it names 'missing' as the index, which is not one of its columns"),
    (pandas_meta("text"), "index_columns is not a list"),
    (pandas_meta([7]), "it names 7 as the index, which is not one of its columns"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_lying_pandas_metadata_is_one_line(tmp_path, metadata, expected) -> None:
    import pyarrow as pa

    path = parquet(tmp_path / "items.parquet", pa.table({"text": ["가"], "label": ["나"]}), metadata)
    with pytest.raises(HarnessError) as caught:
        read_table(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: its pandas metadata (the 'pandas' key of the schema) "
                              "is not what pandas writes: ")
    assert expected in message and "\n" not in message


def test_duplicated_parquet_column_names_are_one_line(tmp_path) -> None:
    import pyarrow as pa

    table = pa.Table.from_arrays([pa.array(["가"]), pa.array(["나"]), pa.array([1])],
                                 names=["text", "text", "n"])
    path = parquet(tmp_path / "items.parquet", table)
    with pytest.raises(HarnessError) as caught:
        read_table(path)
    assert str(caught.value) == (f"{path}: the columns need distinct, non-empty names "
                                 "('text' more than once)")


def test_a_pandas_range_index_is_left_alone(tmp_path) -> None:
    import pandas as pd

    pd.DataFrame({"text": ["가", "나"]}).to_parquet(tmp_path / "items.parquet")
    assert read_table(tmp_path / "items.parquet") == [{"text": "가"}, {"text": "나"}]
