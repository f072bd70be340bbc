"""Reading the items a task evaluates: CSV, TSV or JSONL files, or inline lists.

Excel workbooks and Parquet files are read by ``table_formats``, with their own packages.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from . import table_formats
from .errors import HarnessError

Item = dict[str, Any]

# Korean spreadsheets are often saved as CP949 (a superset of EUC-KR). UTF-8 is tried
# first (with or without a BOM); a file that is not UTF-8 but decodes as CP949 is read
# as CP949, so that Hangul never turns into mojibake.
_ENCODINGS = ("utf-8-sig", "cp949")


def read_text(path: Path) -> tuple[str, str]:
    """Return the text of ``path`` and the encoding it was read with."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HarnessError(f"{path}: data file not found") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a folder, not a data file") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read data file ({exc.strerror})") from None
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
    if suffix in table_formats.READERS:
        rows = table_formats.READERS[suffix](path)
    elif suffix in (".csv", ".tsv", ".jsonl"):
        text, _ = read_text(path)
        if suffix == ".jsonl":
            rows = _read_jsonl(path, text)
        else:
            rows = _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")
    else:
        raise HarnessError(table_formats.unknown_format(path))
    if not rows:
        raise HarnessError(f"{path}: no items in the data file")
    return rows


def check_items(items: list[Item], source: str) -> list[Item]:
    """Check that inline items are mappings with the same columns."""
    if not items:
        raise HarnessError(f"{source}: no items")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise HarnessError(f"{source}: item {number} is not a mapping of column to value")
    return items


def _read_delimited(path: Path, text: str, delimiter: str) -> list[Item]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
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
    for number, line in enumerate(text.splitlines(), start=1):
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
