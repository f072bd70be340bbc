"""Data files in binary table formats: Excel workbooks (.xlsx) and Parquet.

Each is read by its own package, imported only when such a file is read, so that other
commands never pay for it: openpyxl (small, pure Python, installed with the harness) for
.xlsx, pyarrow (large; the ``parquet`` extra) for .parquet. A workbook's cells are read as
text, as a CSV file's are; a Parquet file's values keep their types, as a JSONL file's do.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

Item = dict[str, Any]


# What a table file may hold. Excel's own sheets stop at 1,048,576 rows; a Parquet file of
# more is refused from its footer, before a value is read.
MAX_ROWS = 2**20
# What a workbook's parts may expand to, read from the zip directory before anything is
# unpacked: the XML is about twice the text it holds, so this passes the CSV reader's bound
# of text in spirit while a few kilobytes of zip can no longer unpack into gigabytes.
MAX_WORKBOOK_BYTES = 256 * 2**20
# What a Parquet file's values may take once read (Arrow's count of their bytes).
MAX_PARQUET_BYTES = 512 * 2**20

# What a broken workbook raises from openpyxl or the XML parser while its rows are read
# (a missing part, XML that is not well-formed or expands entities past expat's limit, a
# number cell holding text, a shared string that is not there, a column past XFD).
_BROKEN_SHEET = (ValueError, IndexError, KeyError, TypeError, OverflowError, SyntaxError,
                 AttributeError, EOFError, OSError)


def read_xlsx(path: Path, raw: bytes) -> list[Item]:
    """The first sheet's rows under its header row, every cell as text ("" when empty);
    ``raw`` is the file's bytes, read and checked by ``data.read_table``."""
    openpyxl = _need("openpyxl", path, ".xlsx")
    import zipfile

    from openpyxl.utils.exceptions import InvalidFileException

    _check_unpacked_size(path, raw)
    try:
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, *_BROKEN_SHEET) as exc:
        raise HarnessError(f"{path}: not an Excel workbook that can be read ({_short(exc)})") from None
    try:
        if not book.worksheets:
            raise HarnessError(f"{path}: the workbook has no sheet; save the data in its first sheet")
        sheet = book.worksheets[0]
        try:
            _count_rows(path, book, sheet)
            return _items(path, _sheet_rows(sheet))
        except (zipfile.BadZipFile, *_BROKEN_SHEET) as exc:
            reason = ("a cell refers to a shared string the workbook does not have"
                      if isinstance(exc, IndexError) else _short(exc))
            raise HarnessError(
                f"{path}: its first sheet cannot be read ({reason}); open it in a "
                "spreadsheet program and save it again as .xlsx, or save it as .csv"
            ) from None
    finally:
        book.close()


def _check_unpacked_size(path: Path, raw: bytes) -> None:
    """Refuse a workbook whose parts unpack past MAX_WORKBOOK_BYTES, from the sizes its zip
    directory declares (zipfile never reads a part past its declared size)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, *_BROKEN_SHEET) as exc:
        raise HarnessError(f"{path}: not an Excel workbook that can be read ({_short(exc)})") from None
    if unpacked > MAX_WORKBOOK_BYTES:
        raise HarnessError(
            f"{path}: the workbook unpacks to {unpacked / 2**20:,.0f} MiB, more than the "
            f"{MAX_WORKBOOK_BYTES // 2**20} MiB the harness reads; keep only the rows you "
            "evaluate, or save them as .csv"
        )


def _count_rows(path: Path, book: Any, sheet: Any) -> None:
    """Refuse a sheet of more row elements than Excel allows before parsing a row: the
    sheet's XML is unpacked a megabyte at a time and its ``<row`` tags counted, which
    takes a fraction of the time openpyxl takes to read those rows."""
    count, tail = 0, b""
    with book._archive.open(sheet._worksheet_path) as source:
        while chunk := source.read(2**20):
            data = tail + chunk
            count += data.count(b"<row")
            tail = data[-3:]  # a tag cut by the chunk's end is counted with the next
    if count > MAX_ROWS:
        raise HarnessError(
            f"{path}: the sheet has {count:,} rows, past Excel's last row ({MAX_ROWS:,}); "
            "keep only the rows you evaluate"
        )


def _sheet_rows(sheet: Any) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    """(row number, [(column number, value)]) for the rows a sheet's XML holds.

    openpyxl's own row iterator fills gaps with empty rows and pads each row to the
    sheet's declared width, so one row numbered 2,000,000,000 or a dimension claiming
    16,384 columns would make it produce billions of cells; this reads only what is
    written (openpyxl's parser, fed as its read-only sheet feeds it).
    """
    from openpyxl.worksheet._reader import WorkSheetParser

    book = sheet.parent
    with sheet._get_source() as source:
        parser = WorkSheetParser(
            source, sheet._shared_strings, data_only=True, epoch=book.epoch,
            date_formats=book._date_formats, timedelta_formats=book._timedelta_formats,
        )
        for number, cells in parser.parse():
            yield number, [(cell["column"], cell["value"]) for cell in cells]


def _items(path: Path, rows: Iterator[tuple[int, list[tuple[int, Any]]]]) -> list[Item]:
    header: list[str] = []
    items: list[Item] = []
    for number, cells in rows:
        if number > MAX_ROWS:
            raise HarnessError(
                f"{path}: the sheet has a row numbered {number:,}, past Excel's last row "
                f"({MAX_ROWS:,}); save the sheet again from a spreadsheet program"
            )
        values = {column: _cell_text(value) for column, value in cells}
        if number != 1 and not header:
            break  # the first row (the header) is empty: no items
        if number == 1:
            width = max([c for c, v in values.items() if v.strip()], default=0)
            header = [values.get(c, "").strip() for c in range(1, width + 1)]
            if not header:
                break
            if any(not name for name in header) or len(set(header)) != len(header):
                raise HarnessError(
                    f"{path}: the header row needs distinct, non-empty column names"
                )
            continue
        if any(v for c, v in values.items() if c > len(header)):
            raise HarnessError(
                f"{path}: row {number} has more cells than the header's {len(header)}"
            )
        if any(values.values()):
            items.append({name: values.get(c, "") for c, name in enumerate(header, start=1)})
    return items


def read_parquet(path: Path, raw: bytes) -> list[Item]:
    """The rows of a Parquet file, values as Python values (None where missing).

    The row count and column names come from the file's footer before any value is read;
    a file of more than MAX_ROWS rows is refused there, and values are read in batches
    until MAX_PARQUET_BYTES.
    """
    _need("pyarrow", path, ".parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(raw))
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not a Parquet file that can be read ({_short(exc)})") from None
    if rows > MAX_ROWS:
        raise HarnessError(
            f"{path}: the file holds {rows:,} rows, more than the {MAX_ROWS:,} the harness "
            "reads; keep only the rows you evaluate"
        )
    names = list(schema.names)
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if any(not name.strip() for name in names) or duplicated:
        also = f" ({', '.join(map(repr, duplicated))} more than once)" if duplicated else ""
        raise HarnessError(f"{path}: the columns need distinct, non-empty names{also}")
    # pandas stores a DataFrame's own index as a column; it is not part of the data
    index = _pandas_index(path, schema.metadata or {}, names)
    keep = [name for name in names if name not in index]
    items: list[Item] = []
    read = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024, columns=keep, use_pandas_metadata=False):
            read += batch.nbytes
            if read > MAX_PARQUET_BYTES:
                raise HarnessError(
                    f"{path}: the values take more than {MAX_PARQUET_BYTES // 2**20} MiB once "
                    "read, more than the harness reads; keep only the rows you evaluate"
                )
            items.extend(batch.to_pylist())
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not a Parquet file that can be read ({_short(exc)})") from None
    return items


def _pandas_index(path: Path, metadata: dict[bytes, bytes], names: list[str]) -> set[str]:
    """The columns pandas' metadata names as the DataFrame's index (dropped from the data).

    The metadata is as untrusted as the values: anything but the shape pandas writes
    (a JSON object whose index_columns lists column names or range descriptions) is a
    one-line error, not a KeyError from deep inside.
    """
    import json

    if b"pandas" not in metadata:
        return set()
    bad = (f"{path}: its pandas metadata (the 'pandas' key of the schema) is not what pandas "
           "writes")
    try:
        found = json.loads(metadata[b"pandas"])
    except (ValueError, UnicodeDecodeError):
        raise HarnessError(f"{bad}: not JSON; write the file again, or drop that key") from None
    if not isinstance(found, dict):
        raise HarnessError(f"{bad}: not a JSON object; write the file again")
    index = found.get("index_columns", [])
    if not isinstance(index, list):
        raise HarnessError(f"{bad}: index_columns is not a list; write the file again")
    columns = set()
    for entry in index:
        if isinstance(entry, dict):
            continue  # a RangeIndex, described rather than stored
        if not isinstance(entry, str) or entry not in names:
            raise HarnessError(
                f"{bad}: it names {entry!r} as the index, which is not one of its columns; "
                "write the file again"
            )
        columns.add(entry)
    return columns


def _short(exc: BaseException) -> str:
    """An exception as a few words on one line (pyarrow's can run to many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


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
