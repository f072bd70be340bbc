"""People's ratings of a run's outputs: the file the report exports, its checks, and
what the summary makes of them.

The report (ratings.js) lets a person score outputs on the task's scale, one score per
criterion, with a note, and choose the better of two outputs shown blind; it exports
one JSON file per rater:

    {"harness_ratings": 1, "run": RUN_ID, "task": NAME, "rater": "지수",
     "scale": ["bad", "good"], "criteria": ["overall"], "exported_at": "...",
     "outputs": [{"item": 0, "setting": "greedy", "shots": 0, "seed": null,
                  "sequence": 0, "output": "...", "scores": {"overall": "good"},
                  "note": "..."}],
     "pairs": [{"item": 0, "a": {"setting", "shots", "seed", "sequence"}, "b": {...},
                "winner": "a" | "b" | "tie", "left": "a" | "b"}]}

``harness ratings`` checks such files against the run (``check``), merges them by rater
(``merge``; a rater's newer file replaces their older one) and keeps the result as
ratings.json in the run folder. Each output's human score is then the mean of its
raters' points on the scale (``per_output``), a column of the summary like any metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from harness.errors import HarnessError
from harness.scoring import agreement, pairwise
from harness.scoring.metrics import KINDS, Metric

if TYPE_CHECKING:
    from harness.records.record import Record  # the record contract, a layer above

FORMAT = 1
OVERALL = "overall"  # the one criterion of a task that names none
WINNERS = ("a", "b", "tie")
MAX_NOTE = 2000

OutputKey = tuple[int, str, int, int | None, int]  # item, setting, shots, seed, sequence


@dataclass(frozen=True)
class Scale:
    """The task's rating scale (worst first) and its criteria."""

    points: tuple[str, ...] = ("bad", "good")
    criteria: tuple[str, ...] = (OVERALL,)

    @classmethod
    def of(cls, run: dict[str, Any]) -> Scale:
        rating = run.get("task", {}).get("rating") or {}
        return cls(tuple(rating.get("scale") or cls.points),
                   tuple(rating.get("criteria") or (OVERALL,)))

    def value(self, point: str) -> float:
        """A point's number: itself where every point is a number (1 to 5), else its place
        (bad 0, good 1)."""
        if all(_number(p) is not None for p in self.points):
            return float(point)
        return float(self.points.index(point))

    def field(self, criterion: str) -> str:
        """The record field (and summary column) of a criterion's human score."""
        return "human" if self.criteria == (OVERALL,) else f"human_{criterion}"

    def metrics(self) -> list[Metric]:
        low, high = self.value(self.points[0]), self.value(self.points[-1])
        return [Metric(self.field(c), f"mean human rating{'' if c == OVERALL else ' of ' + c} "
                       f"on the scale {' / '.join(self.points)} ({low:g} to {high:g}), over "
                       "the rated outputs (each the mean of its raters)",
                       f"human: {c}", kinds=KINDS, field=self.field(c), digits=2,
                       heading="human" if c == OVERALL else f"human: {c}")
                for c in self.criteria]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def run_id(run: dict[str, Any]) -> str:
    """What names a run in a ratings file: its task, start time and model fingerprint
    (the same in a copy of the folder, different in any other run)."""
    fingerprint = (run.get("model") or {}).get("fingerprint") or "-"
    return f"{run['task']['name']}/{run.get('started_at', '-')}/{fingerprint[:12]}"


def output_key(record: Record) -> OutputKey:
    return (record["item"], record["setting"], record["shots"], record["seed"],
            record["sequence"])


# ---------------------------------------------------------------- checking a file


def check(data: Any, run: dict[str, Any], found: Sequence[Record], source: str
          ) -> dict[str, Any]:
    """A ratings file checked against the run: the run id, the scale and criteria, every
    output's key (and its text), every pair's two outputs. Returns it cleaned (only the
    fields kept); a mismatch is one line naming the file."""
    if not isinstance(data, dict) or data.get("harness_ratings") != FORMAT:
        raise HarnessError(f"{source}: not a ratings file exported from a harness report")
    if data.get("run") != run_id(run):
        raise HarnessError(f"{source}: these ratings are of run {data.get('run')!r}, not of "
                           f"this one ({run_id(run)}); import them into the run they came from")
    scale = Scale.of(run)
    if list(data.get("scale") or []) != list(scale.points) or list(
            data.get("criteria") or []) != list(scale.criteria):
        raise HarnessError(f"{source}: rated on the scale {data.get('scale')} with criteria "
                           f"{data.get('criteria')}, but the run's task has {list(scale.points)}"
                           f" and {list(scale.criteria)}")
    rater = data.get("rater")
    if not isinstance(rater, str) or not rater.strip():
        raise HarnessError(f"{source}: no rater's name in it; type a name in the report and "
                           "export again")
    texts = {output_key(r): r["output"] for r in found}
    outputs = [_check_output(entry, i, texts, scale, source)
               for i, entry in enumerate(_listed(data, "outputs", source))]
    pairs = [_check_pair(entry, i, texts, source)
             for i, entry in enumerate(_listed(data, "pairs", source))]
    return {"rater": rater.strip(), "exported_at": str(data.get("exported_at", "")),
            "outputs": outputs, "pairs": pairs}


def _listed(data: dict[str, Any], name: str, source: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise HarnessError(f"{source}: {name} is not a list")
    return value


def _key(entry: Any, where: str, texts: dict[OutputKey, str]) -> OutputKey:
    try:
        key = (entry["item"], entry["setting"], entry["shots"], entry["seed"],
               entry["sequence"])
    except (KeyError, TypeError):
        raise HarnessError(f"{where}: needs item, setting, shots, seed and sequence") from None
    if key not in texts:
        raise HarnessError(f"{where}: the run has no output item {key[0]}, setting "
                           f"{key[1]!r}, {key[2]} shots, seed {key[3]}, sequence {key[4]}")
    return key


def _check_output(entry: Any, i: int, texts: dict[OutputKey, str], scale: Scale,
                  source: str) -> dict[str, Any]:
    where = f"{source}: outputs[{i}]"
    key = _key(entry, where, texts)
    if "output" in entry and entry["output"] != texts[key]:
        raise HarnessError(f"{where}: the rated text differs from the run's output there "
                           "(rated in another run of the same name?)")
    scores = entry.get("scores") or {}
    if not isinstance(scores, dict):
        raise HarnessError(f"{where}: scores is not a mapping of criterion to point")
    for criterion, point in scores.items():
        if criterion not in scale.criteria:
            raise HarnessError(f"{where}: unknown criterion {criterion!r}; the task has "
                               f"{', '.join(scale.criteria)}")
        if point not in scale.points:
            raise HarnessError(f"{where}: {point!r} is not a point of the scale "
                               f"{' / '.join(scale.points)}")
    note = entry.get("note") or ""
    if not isinstance(note, str):
        raise HarnessError(f"{where}: note is not text")
    return {"key": list(key), "scores": dict(scores), "note": note[:MAX_NOTE]}


def _check_pair(entry: Any, i: int, texts: dict[OutputKey, str], source: str
                ) -> dict[str, Any]:
    where = f"{source}: pairs[{i}]"
    if not isinstance(entry, dict):
        raise HarnessError(f"{where}: not a pair")
    sides = []
    for side in ("a", "b"):
        if not isinstance(entry.get(side), dict):
            raise HarnessError(f"{where}: needs a and b")
        sides.append(_key({"item": entry.get("item"), **entry[side]}, f"{where}.{side}", texts))
    if (sides[0][1], sides[0][2]) == (sides[1][1], sides[1][2]):
        raise HarnessError(f"{where}: both outputs come from the same setting and shot count")
    if entry.get("winner") not in WINNERS:
        raise HarnessError(f"{where}: winner is a, b or tie")
    left = entry.get("left") if entry.get("left") in ("a", "b") else None
    return {"a": list(sides[0]), "b": list(sides[1]), "winner": entry["winner"], "left": left}


def merge(stored: dict[str, Any] | None, files: Iterable[dict[str, Any]], run: dict[str, Any]
          ) -> dict[str, Any]:
    """ratings.json: the stored raters with each checked file's rater replaced or added."""
    scale = Scale.of(run)
    raters = {r["rater"]: r for r in (stored or {}).get("raters", [])}
    for checked in files:
        raters[checked["rater"]] = checked
    return {"harness_ratings": FORMAT, "run": run_id(run), "scale": list(scale.points),
            "criteria": list(scale.criteria), "raters": list(raters.values())}


# ---------------------------------------------------------------- what they say


def per_output(stored: dict[str, Any], scale: Scale) -> dict[OutputKey, dict[str, list[float]]]:
    """Each rated output's points per criterion, one per rater."""
    found: dict[OutputKey, dict[str, list[float]]] = {}
    for rater in stored.get("raters", []):
        for entry in rater["outputs"]:
            scores = found.setdefault(tuple(entry["key"]), {})
            for criterion, point in entry["scores"].items():
                scores.setdefault(criterion, []).append(scale.value(point))
    return found


def with_scores(found: Sequence[Record], stored: dict[str, Any], scale: Scale) -> list[Record]:
    """The records with each criterion's human score (the mean of its raters; None where
    nobody rated the output)."""
    rated = per_output(stored, scale)
    out = []
    for record in found:
        scores = rated.get(output_key(record), {})
        # a record with fields beyond the contract's: the summary reads them by name
        out.append(cast("Record", {**record, **{
            scale.field(c): (sum(scores[c]) / len(scores[c]) if scores.get(c) else None)
            for c in scale.criteria}}))
    return out


def arm(setting: str, shots: int) -> str:
    return f"{setting} · {shots}-shot"


def judgements(stored: dict[str, Any]) -> list[pairwise.Judgement]:
    """Every rater's pairs as (arm a, arm b, outcome)."""
    outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}
    return [(arm(p["a"][1], p["a"][2]), arm(p["b"][1], p["b"][2]), outcome[p["winner"]])
            for rater in stored.get("raters", []) for p in rater["pairs"]]


def left_chosen(stored: dict[str, Any]) -> list[bool]:
    """Of the decisive pairs whose shown sides are known, whether the left one won."""
    return [p["winner"] == p["left"] for rater in stored.get("raters", [])
            for p in rater["pairs"] if p["winner"] != "tie" and p.get("left")]


def agreement_by_criterion(stored: dict[str, Any], scale: Scale
                           ) -> dict[str, agreement.Alpha]:
    """Krippendorff's alpha between raters, per criterion (interval: the scale is
    ordered; for two points it equals the nominal alpha)."""
    rated = per_output(stored, scale)
    return {c: agreement.alpha({k: v.get(c, []) for k, v in rated.items()}, "interval")
            for c in scale.criteria}


def rater_table(stored: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"rater": r["rater"], "outputs": len(r["outputs"]), "pairs": len(r["pairs"]),
             "notes": sum(1 for o in r["outputs"] if o["note"]),
             "exported_at": r.get("exported_at", "")} for r in stored.get("raters", [])]
