"""Classification in detail: per-label precision, recall and F1 with their intervals, the
confusion matrices, the references' label distribution and the majority-class baseline.

All of it comes from the confusion counts that macro-F1 sums (corpus.confusion_stats),
per setting × shot count, so the numbers agree with the summary's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.scoring import corpus, metrics, stats
from harness.scoring.stats import Items
from harness.scoring.summary import Cell, Key, Summary

if TYPE_CHECKING:
    from harness.records.record import Record  # the record contract, a layer above

NO_LABEL = "no label"  # the confusion matrix's last column: answers that name no label


@dataclass(frozen=True)
class Baseline:
    """What always answering the most frequent reference label would score."""

    label: str
    items: int  # items whose reference it is
    of: int  # items in all
    accuracy: float
    macro_f1: float
    ties: int = 1  # labels as frequent as it (any of them scores the same)

    @property
    def name(self) -> str:
        """How the page names the baseline: the label, or "one label" in a tie."""
        return f"“{self.label}”" if self.ties == 1 else "any one label"


def references(records: list[Record]) -> dict[int, str]:
    """Each item's reference label (its first reference)."""
    return {r["item"]: r["references"][0] for r in records if r.get("references")}


def distribution(records: list[Record], labels: tuple[str, ...]) -> dict[str, int]:
    """How many items have each label as their reference, in the labels' order."""
    counted = Counter(references(records).values())
    return {label: counted[label] for label in labels}


def baseline(records: list[Record], labels: tuple[str, ...]) -> Baseline | None:
    """Always answering the most frequent reference (the first of a tie), over the items."""
    golds = list(references(records).values())
    if not golds:
        return None
    counted = Counter(golds)
    majority = max(labels, key=lambda label: counted[label])  # max keeps the first of a tie
    sums = corpus.confusion_stats(golds, [majority] * len(golds), labels).sum(axis=0)
    ties = sum(1 for label in labels if counted[label] == counted[majority])
    return Baseline(majority, counted[majority], len(golds), counted[majority] / len(golds),
                    float(corpus.macro_f1(sums, len(labels))), ties)


def confusion(summary: Summary, key: Key) -> np.ndarray:
    """Outputs per reference label (rows) and answer (columns: the labels, then no label)."""
    part = _counts(summary, summary.cells[key])
    return corpus.confusion(part.total, len(summary.scope.labels))


def _counts(summary: Summary, cell: Cell) -> Items:
    """A cell's confusion counts per item (macro-F1's statistics, summed per item: only
    distinct-n keeps n-grams instead)."""
    part = cell.part(metrics.get("macro_f1"), summary.scope)
    assert isinstance(part, Items)
    return part


def label_rows(summary: Summary) -> list[dict[str, Any]]:
    """Per setting × shots × label: precision, recall and F1 with 95% intervals, the
    label's references (support) and the answers naming it."""
    labels = summary.scope.labels
    size = len(labels)
    rows = []
    for key, cell in summary.cells.items():
        part = _counts(summary, cell)
        found = corpus.per_label(part.total, size)
        with np.errstate(divide="ignore", invalid="ignore"):
            resampled = corpus.per_label(stats.resample_counts(len(part)) @ part.stats, size)
        for i, label in enumerate(labels):
            row: dict[str, Any] = {"setting": key[0], "shots": key[1], "label": label}
            for name in ("precision", "recall", "f1"):
                value = float(found[name][i])
                row[name] = None if np.isnan(value) else value
                low, high = stats.bounds(resampled[name][:, i])
                row[f"{name}_low"], row[f"{name}_high"] = (
                    (None, None) if row[name] is None else (low, high))
            row["support"] = int(found["support"][i])
            row["answered"] = int(found["answered"][i])
            rows.append(row)
    return rows


LABEL_COLUMNS = ["setting", "shots", "label", "precision", "precision_low", "precision_high",
                 "recall", "recall_low", "recall_high", "f1", "f1_low", "f1_high", "support",
                 "answered"]
