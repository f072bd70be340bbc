"""pandas DataFrames of a run, and a DataFrame's rows as a task's items.

The tables are the CSV files' twins: ``samples`` has results.csv's columns and rows,
``summary`` summary.csv's (both built by the functions that write those files, so a
column added there appears here too), with the CSV's text turned back into values:
numbers as numbers, missing values as NaN or <NA>, no spreadsheet formula guard.
pandas is imported here only, when a table is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.reports import report

if TYPE_CHECKING:
    import pandas as pd

    from harness.records import Record
    from harness.scoring.summary import Summary

# Columns of whole numbers that may be missing: nullable integers, not floats.
_INTEGERS = ("seed", "n_tokens")


def samples(records: list[Record]) -> pd.DataFrame:
    """One row per output, with results.csv's columns in its order."""
    import pandas as pd

    columns = report.csv_columns()
    frame = pd.DataFrame([report.result_row(r, columns) for r in records], columns=columns)
    for column in _INTEGERS:
        frame[column] = frame[column].astype("Int64")
    return frame


def summary(table: Summary) -> pd.DataFrame:
    """One row per setting × shot count, with summary.csv's columns in its order."""
    import pandas as pd

    header, rows = report.summary_table(table)
    frame = pd.DataFrame(rows, columns=header)
    counts = {m.name for m in table.metrics if m.count}
    for column in header:
        if column in counts:  # counts: 3, not 3.0
            frame[column] = frame[column].astype("Int64")
        elif column.endswith(("_mark", "_signature")):  # best/tied/worse; sacrebleu's
            frame[column] = frame[column].astype("string")
        elif column not in ("setting", "shots"):
            frame[column] = frame[column].astype("float64")
    return frame


RATING_COLUMNS = ["rater", "item", "setting", "shots", "seed", "sequence", "criterion",
                  "point", "value", "note", "output"]


def ratings(run_dir: Any, run: dict[str, Any], records: list[Record]) -> pd.DataFrame:
    """People's ratings kept in a run folder (ratings.json): one row per rater, output and
    criterion, with the point given, its value on the scale, the note and the output."""
    import pandas as pd

    from harness.records import judged
    from harness.scoring.ratings import Scale, output_key

    stored = judged.read_ratings(run_dir) or {"raters": []}
    scale = Scale.of(run)
    texts = {output_key(r): r["output"] for r in records}
    rows = []
    for rater in stored["raters"]:
        for entry in rater["outputs"]:
            key = tuple(entry["key"])
            for criterion, point in entry["scores"].items():
                rows.append([rater["rater"], *key, criterion, point, scale.value(point),
                             entry["note"], texts.get(key)])
    frame = pd.DataFrame(rows, columns=RATING_COLUMNS)
    frame["seed"] = frame["seed"].astype("Int64")
    frame["value"] = frame["value"].astype("float64")
    return frame


def items(frame: Any, source: str) -> list[dict[str, Any]]:
    """A DataFrame's rows as items: column names as text, missing cells as "" (as an
    empty cell of a CSV file reads), numbers as Python numbers."""
    import pandas as pd

    from harness.errors import HarnessError

    if not isinstance(frame, pd.DataFrame):
        raise HarnessError(f"{source}: expected a DataFrame")
    names = [str(name) for name in frame.columns]
    if len(set(names)) != len(names):
        raise HarnessError(f"{source}: the DataFrame's columns need distinct names")
    filled = frame.astype(object).where(frame.notna(), "")
    return [{name: _python(value) for name, value in zip(names, row)}
            for row in filled.itertuples(index=False, name=None)]


def _python(value: Any) -> Any:
    """numpy's scalars (in a column of mixed types) as Python's own numbers and text."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
