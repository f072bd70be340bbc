"""``harness ratings RUN_DIR FILE...``: people's ratings, exported from the report, taken
into the run folder (ratings.json) and the report rendered again with them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import records
from harness.common import files
from harness.errors import HarnessError
from harness.records import judged
from harness.reports import report
from harness.scoring import ratings

MAX_FILE = 64 * files.MiB


@dataclass
class Imported:
    run: dict[str, Any]
    stored: dict[str, Any]  # ratings.json as now kept
    added: list[dict[str, Any]]  # each file's rater, outputs and pairs


def import_ratings(run_dir: str | Path, paths: list[str | Path]) -> Imported:
    """Check every file against the run before keeping any (one bad file changes
    nothing), merge them by rater into ratings.json, and render the report again."""
    if not Path(run_dir).is_dir():
        raise HarnessError(f"{run_dir}: no such run folder")
    given = []
    for path in map(Path, paths):
        raw = files.read_regular(path, "ratings file", MAX_FILE)
        try:
            given.append((str(path), json.loads(raw.decode("utf-8-sig"))))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HarnessError(f"{path}: not a JSON ratings file ({exc})") from None
    return keep_ratings(run_dir, given)


def keep_ratings(run_dir: str | Path, given: list[tuple[str, Any]]) -> Imported:
    """``import_ratings`` on ratings already read (or typed in Python): (source, content
    of a ratings file) pairs, checked and kept the same way."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: no such run folder")
    with files.locked(run_dir, f"ratings {run_dir}"):
        run, found = records.load_run(run_dir)
        checked = [ratings.check(data, run, found, source) for source, data in given]
        names = [c["rater"] for c in checked]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise HarnessError(f"rater {twice[0]!r} is in two of these files; import the newer "
                               "one (a rater's later file replaces the earlier)")
        stored = ratings.merge(judged.read_ratings(run_dir), checked, run)
        try:
            judged.write_ratings(run_dir, stored)
            report.write_all(run_dir, run, found)
        except OSError as exc:
            raise HarnessError(f"ratings {run_dir}: cannot write there "
                               f"({files.reason(exc)})") from None
    return Imported(run, stored, checked)
