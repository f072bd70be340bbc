"""Data files in binary table formats: Excel workbooks (.xlsx) and Parquet.

Each is read by its own package, imported only when such a file is read, so that other
commands never pay for it: openpyxl (small, pure Python, installed with the harness) for
.xlsx, pyarrow (large; the ``parquet`` extra) for .parquet. A workbook's cells are read as
text, as a CSV file's are; a Parquet file's values keep their types, as a JSONL file's do.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

Item = dict[str, Any]


def read_xlsx(path: Path, raw: bytes) -> list[Item]:
    """The first sheet's rows under its header row, every cell as text ("" when empty);
    ``raw`` is the file's bytes, read and checked by ``data.read_table``."""
    openpyxl = _need("openpyxl", path, ".xlsx")
    import zipfile

    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise HarnessError(f"{path}: not an Excel workbook that can be read ({exc})") from None
    try:
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = [_cell_text(v).strip() for v in next(rows, ())]
        while header and not header[-1]:
            header.pop()  # a sheet's used range often runs past its last column
        if not header:
            return []
        if any(not name for name in header) or len(set(header)) != len(header):
            raise HarnessError(f"{path}: the header row needs distinct, non-empty column names")
        items = []
        for number, row in enumerate(rows, start=2):
            cells = [_cell_text(v) for v in row]
            if any(cells[len(header):]):
                raise HarnessError(
                    f"{path}: row {number} has more cells than the header's {len(header)}"
                )
            cells = (cells + [""] * len(header))[: len(header)]
            if any(cells):
                items.append(dict(zip(header, cells)))
        return items
    finally:
        book.close()


def read_parquet(path: Path, raw: bytes) -> list[Item]:
    """The rows of a Parquet file, values as Python values (None where missing)."""
    _need("pyarrow", path, ".parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise HarnessError(f"{path}: not a Parquet file that can be read ({exc})") from None
    # pandas stores a DataFrame's own index as a column; it is not part of the data
    index = (table.schema.pandas_metadata or {}).get("index_columns", [])
    table = table.drop_columns([c for c in index if isinstance(c, str)])
    names = table.column_names
    if any(not name.strip() for name in names) or len(set(names)) != len(names):
        raise HarnessError(f"{path}: the columns need distinct, non-empty names")
    return table.to_pylist()


# The binary formats by file suffix (data.read_table reads the text ones).
READERS: dict[str, Callable[[Path, bytes], list[Item]]] = {
    ".xlsx": read_xlsx,
    ".parquet": read_parquet,
}


def unknown_format(path: Path) -> str:
    """The message for a data file of a format the harness does not read."""
    suffix = path.suffix.lower()
    if suffix in (".xls", ".xlsm", ".xlsb", ".ods"):
        return f"{path}: {suffix} workbooks are not read; save the sheet as .xlsx or .csv"
    return f"{path}: unknown data format {suffix!r}; use .csv, .tsv, .jsonl, .xlsx or .parquet"


def _need(package: str, path: Path, suffix: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise HarnessError(
            f"{path}: reading {suffix} files needs {package}, which is not installed: "
            f"pip install {package}"
        ) from None


def _cell_text(value: Any) -> str:
    """A cell as the sheet shows it: whole numbers without '.0', dates without a midnight."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)
