"""Tests for harness.records: the typed record agrees with what the harness writes and
reads back."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import records
from harness.engines.contract import Generation, LabelScore
from harness.records.record import Record
from harness.scoring import metrics
from harness.scoring.kinds import KINDS
from harness.tasks.prompts import Prompt


def _task(kind: str) -> SimpleNamespace:
    labels = ["기쁨", "슬픔"] if kind == "classification" else None
    return SimpleNamespace(name="tiny", kind=kind, labels=labels)


PROMPT = Prompt(item=2, shots=1, text="본문 : 좋다\n감정 :", references=["기쁨"], examples=[0])


def test_every_field_the_harness_writes_is_a_field_of_the_record_type() -> None:
    assert set(records.GENERATED) <= records.FIELDS
    # a metric with a per-output score adds its field to the record type as well
    assert set(metrics.sample_fields()) <= records.FIELDS, (
        "add the new per-output field to harness/records/record.py")


@pytest.mark.parametrize("kind", KINDS)
def test_a_generated_record_has_the_required_fields_and_no_other(kind: str) -> None:
    made = records.generated(_task(kind), PROMPT, "greedy", None, 0,
                             Generation("기쁨이요", "기쁨이요\n", 3, -0.5, "stop"))
    assert Record.__required_keys__ <= set(made) <= records.FIELDS
    assert records.is_record(made)


def test_a_ranked_record_has_the_required_fields_and_no_other() -> None:
    made = records.ranked(_task("classification"), PROMPT,
                          [LabelScore("기쁨", -1.0, 2), LabelScore("슬픔", -3.0, 2)])
    assert Record.__required_keys__ <= set(made) <= records.FIELDS
    assert made["output"] == "기쁨" and made["label_logprobs"] == {"기쁨": -1.0, "슬픔": -3.0}


@pytest.mark.parametrize("missing", sorted(Record.__required_keys__))
def test_a_line_without_a_required_field_is_not_read_as_a_record(missing: str) -> None:
    made = records.generated(_task("qa"), PROMPT, "greedy", None, 0,
                             Generation("서울", "서울", 1, -0.1, "eos"))
    assert records.is_record(made)
    assert not records.is_record({k: v for k, v in made.items() if k != missing})
