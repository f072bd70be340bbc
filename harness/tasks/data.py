"""Reading the items a task evaluates: CSV, TSV or JSONL files, or inline lists.

Excel workbooks and Parquet files are read by ``table_formats``, with their own packages.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import sys
from pathlib import Path
from typing import Any

from harness.common.files import MiB, read_regular
from harness.errors import HarnessError
from harness.tasks import formats

Item = dict[str, Any]

# The largest data file read: a KorQuAD-sized set is about 40 MB; far larger files are a
# mistake (or a device: only regular files are read at all).
MAX_DATA_BYTES = 512 * MiB

# Korean spreadsheets are often saved as CP949 (a superset of EUC-KR). UTF-8 is tried
# first (with or without a BOM); a file that is not UTF-8 but decodes as CP949 is read
# as CP949, so that Hangul never turns into mojibake.
_ENCODINGS = ("utf-8-sig", "cp949")


def read_text(path: Path) -> tuple[str, str]:
    """Return the text of ``path`` and the encoding it was read with."""
    raw = read_regular(path, "data file", MAX_DATA_BYTES)
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise HarnessError(
        f"{path}: neither UTF-8 nor CP949/EUC-KR text; save it as UTF-8 and try again"
    )


def read_table(path: Path) -> list[Item]:
    """Read the rows of a CSV, TSV, JSONL, .xlsx or .parquet file as mappings from
    column to value."""
    suffix = path.suffix.lower()
    if suffix in formats.READERS:
        rows = formats.READERS[suffix](path, read_regular(path, "data file", MAX_DATA_BYTES))
    elif suffix in (".csv", ".tsv", ".jsonl"):
        text, _ = read_text(path)
        if suffix == ".jsonl":
            rows = _read_jsonl(path, text)
        else:
            rows = _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")
    else:
        raise HarnessError(formats.unknown_format(path))
    if not rows:
        raise HarnessError(f"{path}: no items in the data file")
    return rows


def check_items(items: list[Item], source: str) -> list[Item]:
    """Check that inline items are mappings whose values the run can write down.

    Inline items (a task's ``data:`` list, a DataFrame or a list given to the Python API)
    are written into run.json with the task; a value JSON cannot hold (bytes, a numpy
    array, a pandas Period) is refused here, before any model loads, rather than after
    generation.
    """
    if not items:
        raise HarnessError(f"{source}: no items")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise HarnessError(f"{source}: item {number} is not a mapping of column to value")
        for column, value in item.items():
            problem = _value_problem(value)
            if problem is not None:
                raise HarnessError(
                    f"{source}: item {number}, column {str(column)!r} holds {problem}; give "
                    "text, numbers, or lists and mappings of them"
                )
    return items


# Values a run.json writes as they are; datetimes and decimals as pydantic writes them.
_PLAIN = (str, int, float, bool, type(None), dt.date, dt.time, decimal.Decimal)


def _value_problem(value: Any, depth: int = 0) -> str | None:
    """What is wrong with one inline value, or None."""
    if depth > 32:
        return "values nested more than 32 deep"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text that is not valid Unicode (a byte that did not decode)"
        return None
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, bytes | bytearray):
        return "bytes, not text (decode them first, e.g. value.decode('cp949'))"
    if isinstance(value, list | tuple):
        return next((p for v in value if (p := _value_problem(v, depth + 1))), None)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return "a mapping whose keys are not all text"
        return next((p for v in value.values() if (p := _value_problem(v, depth + 1))), None)
    kind = type(value)
    return f"a {kind.__module__.split('.')[0]}.{kind.__name__}"


def _read_delimited(path: Path, text: str, delimiter: str) -> list[Item]:
    # The csv module refuses cells over 131,072 characters by default; a long passage is
    # an ordinary cell here, and the file's size is capped already.
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _rows(path, reader)
    except csv.Error as exc:
        raise HarnessError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None


def _rows(path: Path, reader: csv.DictReader[str]) -> list[Item]:
    if not reader.fieldnames:
        return []
    columns = [name.strip() for name in reader.fieldnames]
    if any(not name for name in columns) or len(set(columns)) != len(columns):
        raise HarnessError(f"{path}: the header row needs distinct, non-empty column names")
    rows = []
    for row in reader:
        if None in row:
            raise HarnessError(
                f"{path}: line {reader.line_num} has more fields than the header's {len(columns)}"
            )
        values = [row[name] if row[name] is not None else "" for name in reader.fieldnames]
        if all(value == "" for value in values):
            continue
        rows.append(dict(zip(columns, values)))
    return rows


def _read_jsonl(path: Path, text: str) -> list[Item]:
    rows = []
    # Lines end at "\n" only: JSON strings may hold U+2028, U+2029 or NEL, which
    # str.splitlines() would also split at.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows
