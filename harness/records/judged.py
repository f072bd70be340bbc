"""The files of a run's judgements, beside samples.jsonl:

- ratings.json: people's ratings, merged by rater (``harness ratings``; see
  scoring/ratings.py for its fields);
- judge.jsonl: one line per question put to a judge model: which output(s), the prompt,
  the reply, and what the rules read in it (``harness judge``). A line's ``id`` digests
  the judge model and the prompt, so that judging again reuses every answer it already
  has (a resumed or repeated judging asks only what is new).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.common import files
from harness.errors import HarnessError

RATINGS = "ratings.json"
JUDGE = "judge.jsonl"


def read_ratings(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RATINGS
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot read it ({exc}); import the raters' files "
                           "again with harness ratings") from None
    if not isinstance(found, dict) or not isinstance(found.get("raters"), list):
        raise HarnessError(f"{path}: not a harness ratings.json")
    return found


def write_ratings(run_dir: Path, stored: dict[str, Any]) -> None:
    files.write_text(run_dir / RATINGS, json.dumps(stored, ensure_ascii=False, indent=1))


def read_judge(run_dir: Path) -> list[dict[str, Any]]:
    """The judge's lines; a line cut short by a crash is skipped (it is asked again)."""
    path = run_dir / JUDGE
    if not path.exists():
        return []
    found = []
    with path.open("rb") as handle:
        for raw in handle:
            try:
                line = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(line, dict) and isinstance(line.get("id"), str):
                found.append(line)
    return found


def append_judge(run_dir: Path, lines: list[dict[str, Any]]) -> None:
    with (run_dir / JUDGE).open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        handle.flush()
