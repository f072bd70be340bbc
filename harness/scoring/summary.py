"""A run's summary: each metric per setting × shot count with its 95% interval, and which
differences are real.

Settings and shot counts answer the same items, so they are compared paired (stats.py):
at each shot count, every setting against the best one (the summary's marks: best, tied
with the best, or significantly worse), and for each setting, every shot count against
the fewest. Each family of comparisons is Holm-corrected. ``summarize`` gives the rows
that summary.csv, the report, the command line and the API share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.scoring import metrics, stats
from harness.scoring.corpus import Grams
from harness.scoring.metrics import Metric, Scope
from harness.scoring.stats import Difference, Items

if TYPE_CHECKING:
    from harness.records.record import Record  # the record contract, a layer above

Key = tuple[str, int]  # (setting, shots)
Estimate = tuple[float | None, float | None, float | None]  # value, 95% interval


def columns(kind: str, chosen: Sequence[str] | None, references: bool = True,
            scope: Scope | None = None) -> list[str]:
    """The summary's columns: the task's chosen metrics, the kind's main one, the rest."""
    every = [m.name for m in metrics.shown(kind, references, scope, chosen or ())]
    first = [m for m in chosen or [] if m in every]
    main = metrics.main_metric(kind, every)
    if not first and main:
        first = [main]
    return first + [m for m in every if m not in first]


class Cell:
    """The outputs of one setting at one shot count, grouped by item."""

    def __init__(self, key: Key, records: list[Record]) -> None:
        self.key = key
        self.records = records
        ids = np.array([r["item"] for r in records])
        self.items, self.row_item = np.unique(ids, return_inverse=True)
        self._parts: dict[str, Any] = {}

    def part(self, metric: Metric, scope: Scope) -> Items | Grams:
        """The metric's statistics per item: summed rows, or (distinct-n) the n-grams."""
        if metric.name not in self._parts:
            if metric.distinct:
                texts: list[list[str]] = [[] for _ in self.items]
                for record, row in zip(self.records, self.row_item, strict=True):
                    texts[row].append(record["output"])
                self._parts[metric.name] = Grams.of(texts, metric.distinct,
                                                    metrics.splitter(metric))
            else:
                per_output = metric.outputs_stats(self.records, scope)
                summed = np.zeros((len(self.items), per_output.shape[1]))
                np.add.at(summed, self.row_item, per_output)
                self._parts[metric.name] = Items(
                    summed, lambda sums: metric.value(sums, scope))
        return self._parts[metric.name]


@dataclass(frozen=True)
class Comparison:
    """One paired comparison: ``key`` against ``against`` on one metric."""

    metric: str
    key: Key
    against: Key
    difference: Difference
    p_holm: float
    worse: bool  # significantly worse than ``against`` (after Holm)
    better: bool  # significantly better


class Summary:
    """Every number of a run's summary, computed once for the CSV, the page and the CLI."""

    def __init__(self, kind: str, records: list[Record], labels: Sequence[str] | None = None,
                 chosen: Sequence[str] | None = None, language: str | None = None,
                 bleu_tokenize: str | None = None, extra: Sequence[Metric] = ()) -> None:
        """``extra``: metrics beyond the registry's (people's ratings, a judge's scores),
        shown after the main column."""
        self.kind = kind
        self.scope = metrics.scope_of(kind, records, labels, language, bleu_tokenize)
        grouped: dict[Key, list[Record]] = {}
        for record in records:
            grouped.setdefault((record["setting"], record["shots"]), []).append(record)
        self.cells = {key: Cell(key, rows) for key, rows in grouped.items()}
        self.references = any(r.get("references") for r in records)
        self.columns = columns(kind, chosen, self.references, self.scope)
        self.columns[1:1] = [m.name for m in extra]
        added = {m.name: m for m in extra}
        self.metrics = [added.get(name) or metrics.get(name) for name in self.columns]
        # sacrebleu's signature of each corpus metric shown, to reproduce it
        self.signatures = {m.name: m.signature(self.scope) for m in self.metrics
                           if m.signature is not None}
        self.settings = list(dict.fromkeys(s for s, _ in self.cells))
        self.shots = sorted({k for _, k in self.cells})
        self._estimates: dict[tuple[Key, str], Estimate] = {}

    # ------------------------------------------------------------ one cell

    def estimate(self, key: Key, metric: Metric) -> Estimate:
        """The metric's value over a cell and its 95% interval (none for counts)."""
        if (key, metric.name) not in self._estimates:
            self._estimates[(key, metric.name)] = self._estimate(key, metric)
        return self._estimates[(key, metric.name)]

    def _estimate(self, key: Key, metric: Metric) -> Estimate:
        part = self.cells[key].part(metric, self.scope)
        if isinstance(part, Grams):
            value = part.value()
            low, high = stats.jackknife(value, part.leave_one_out())
            return value, _clip(low, 0, 1), _clip(high, 0, 1)
        if math.isnan(part.value):
            return None, None, None
        if metric.count:
            return part.value, None, None
        return (part.value, *part.interval())

    # ------------------------------------------------------------ two cells

    def versus(self, key: Key, against: Key, metric: Metric) -> Difference:
        """``key`` minus ``against`` on the items both answered, paired."""
        return paired(metric, self.scope, self.cells[key], self.cells[against])

    @cached_property
    def settings_compared(self) -> dict[tuple[str, int], list[Comparison]]:
        """Per (metric, shots): each other setting against the best at that shot count."""
        found = {}
        for metric in self.metrics:
            if metric.higher is None:
                continue
            for k in self.shots:
                keys = [(s, k) for s in self.settings if (s, k) in self.cells]
                best = self._best(keys, metric)
                if best is None:
                    continue
                others = [key for key in keys
                          if key != best and self.estimate(key, metric)[0] is not None]
                found[(metric.name, k)] = self._family(metric, others, best)
        return found

    @cached_property
    def shots_compared(self) -> dict[tuple[str, str], list[Comparison]]:
        """Per (metric, setting): each shot count against the fewest."""
        found = {}
        for metric in self.metrics:
            if metric.higher is None or len(self.shots) < 2:
                continue
            for setting in self.settings:
                keys = [(setting, k) for k in self.shots if (setting, k) in self.cells]
                if len(keys) > 1:
                    found[(metric.name, setting)] = self._family(metric, keys[1:], keys[0])
        return found

    def _best(self, keys: list[Key], metric: Metric) -> Key | None:
        """The first of the keys with the best value; None when all values are equal."""
        known = {key: value for key in keys
                 if (value := self.estimate(key, metric)[0]) is not None}
        if len(known) < 2 or len(set(known.values())) < 2:
            return None  # nothing to choose between
        sign = -1 if metric.higher else 1
        return min(known, key=lambda key: sign * known[key])  # min keeps the first of a tie

    def _family(self, metric: Metric, keys: list[Key], against: Key) -> list[Comparison]:
        differences = [self.versus(key, against, metric) for key in keys]
        adjusted = stats.holm([d.p for d in differences])
        out = []
        for key, difference, p in zip(keys, differences, adjusted, strict=True):
            significant = p < stats.ALPHA and difference.diff != 0
            better_side = (difference.diff > 0) == bool(metric.higher)
            out.append(Comparison(metric.name, key, against, difference, p,
                                  significant and not better_side, significant and better_side))
        return out

    def comparison(self, key: Key, metric: Metric) -> Comparison | None:
        """The comparison of a cell with the best setting at its shot count, if any."""
        family = self.settings_compared.get((metric.name, key[1]), [])
        return next((c for c in family if c.key == key), None)

    # ------------------------------------------------------------ the rows

    def marks(self, key: Key, metric: Metric) -> tuple[str | None, float | None]:
        """best / tied / worse for a cell among the settings at its shot count, with the
        Holm-adjusted p-value against the best."""
        family = self.settings_compared.get((metric.name, key[1]))
        value = self.estimate(key, metric)[0]
        if not family or value is None:
            return None, None
        best = family[0].against
        if key == best or value == self.estimate(best, metric)[0]:
            return "best", None
        found = next(c for c in family if c.key == key)
        return ("worse" if found.worse else "tied"), found.p_holm

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """One row per (setting, shots), in the records' order: each metric's value, and
        for each its interval (``_low``, ``_high``) and, where a direction is better, its
        mark (``_mark``) and Holm-adjusted p-value against the best (``_p``)."""
        out = []
        for key in self.cells:
            row: dict[str, Any] = {"setting": key[0], "shots": key[1]}
            for metric in self.metrics:
                value, low, high = self.estimate(key, metric)
                row[metric.name] = value
                if metric.count:
                    continue
                row[f"{metric.name}_low"], row[f"{metric.name}_high"] = low, high
                if metric.higher is not None:
                    row[f"{metric.name}_mark"], row[f"{metric.name}_p"] = self.marks(key, metric)
                if metric.name in self.signatures:
                    row[f"{metric.name}_signature"] = self.signatures[metric.name]
            out.append(row)
        return out

    def row_columns(self) -> list[str]:
        """The keys of a row after setting and shots, in summary.csv's order."""
        out = []
        for metric in self.metrics:
            out.append(metric.name)
            if not metric.count:
                out += [f"{metric.name}_low", f"{metric.name}_high"]
                if metric.higher is not None:
                    out += [f"{metric.name}_mark", f"{metric.name}_p"]
            if metric.name in self.signatures:
                out.append(f"{metric.name}_signature")
        return out


def summarize(kind: str, records: list[Record], labels: Sequence[str] | None = None,
              chosen: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (setting, shots), in the records' order, with every metric of the kind,
    its 95% interval and its significance mark (see ``Summary.rows``)."""
    return Summary(kind, records, labels, chosen).rows


def paired(metric: Metric, scope: Scope, a: Cell, b: Cell) -> Difference:
    """a minus b on one metric over the items both cells have, paired."""
    part_a, part_b = a.part(metric, scope), b.part(metric, scope)
    if not np.array_equal(a.items, b.items):  # keep the items both have, in one order
        _, rows_a, rows_b = np.intersect1d(a.items, b.items, assume_unique=True,
                                           return_indices=True)
        part_a, part_b = part_a.take(rows_a), part_b.take(rows_b)
    if isinstance(part_a, Grams) and isinstance(part_b, Grams):
        return stats.paired_jackknife(part_a.value(), part_b.value(), part_a.leave_one_out(),
                                      part_b.leave_one_out())
    assert isinstance(part_a, Items) and isinstance(part_b, Items)
    difference = stats.paired(part_a, part_b)
    if metric.binary and _one_each(part_a.stats) and _one_each(part_b.stats):
        # right/wrong, one answer per item: the exact test (the randomization test's limit)
        difference = replace(difference, p=stats.mcnemar(part_a.stats[:, 0],
                                                         part_b.stats[:, 0]), test="McNemar")
    return difference


def _one_each(part: np.ndarray) -> bool:
    """One output per item (a mean's statistics are [sum, count] per item)."""
    return bool(len(part)) and bool((part[:, 1] == 1).all())


def _clip(value: float | None, low: float, high: float) -> float | None:
    return None if value is None or math.isnan(value) else min(max(value, low), high)
