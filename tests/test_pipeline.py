"""Tests for harness.runs.pipeline: preparing a run without a model, executing it with a fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.records import read_samples as load_records
from harness.runs import pipeline
from harness.runs.pipeline import Overrides, execute, new_run_dir, prepare

MODEL_INFO = {"name": "fake", "type": "fake", "device": "cpu", "dtype": "float32",
              "fingerprint": "0" * 64, "load_s": 1.23}


def test_prepare_lays_out_every_request_without_a_model(write_task) -> None:
    plan = prepare(write_task(shots=[0, 1], decoding={"presets": ["greedy", "top_k_top_p_3"]},
                              seeds=[1, 2]))
    assert [s.name for s in plan.settings] == ["greedy", "top_k_top_p_3"]
    assert len(plan.prompts) == 4 * 2
    assert len(plan.requests) == 8 + 8 * 2
    assert plan.n_outputs == 8 + 8 * 2 * 3
    assert plan.describe() == (
        "tiny: 4 items × shots [0, 1] × 2 settings → 24 prompts, 56 outputs"
    )
    assert plan.model == "default"


def test_overrides_replace_the_tasks_choices(write_task) -> None:
    path = write_task(shots=[0, 1], decoding={"presets": ["greedy", "beam"]}, seeds=[1])
    plan = prepare(path, Overrides(shots=[1], presets=["top_p"], seeds=[5, 6], limit=2,
                                   model="some/model"))
    assert {p.shots for p in plan.prompts} == {1}
    assert {p.item for p in plan.prompts} == {0, 1}
    assert [s.name for s in plan.settings] == ["top_p"]
    assert sorted({r.seed for r in plan.requests}) == [5, 6]
    assert plan.model == "some/model"


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (Overrides(limit=0), "--limit"),
        (Overrides(shots=[-1]), "--shots"),
        (Overrides(presets=["beem"]), "did you mean 'beam'"),
        (Overrides(shots=[9]), "asks for 9 examples"),
    ],
)
def test_bad_overrides_are_refused(write_task, overrides, words) -> None:
    with pytest.raises(HarnessError, match=words):
        prepare(write_task(), overrides)


def test_a_decoding_error_names_the_task_file(write_task) -> None:
    path = write_task(decoding={"presets": ["gredy"]})
    with pytest.raises(HarnessError) as caught:
        prepare(path)
    assert str(caught.value).startswith(f"{path}: decoding: unknown preset 'gredy'")


def test_execute_writes_samples_run_json_and_reports(write_task, tmp_path, fake_backend) -> None:
    plan = prepare(write_task(shots=[0, 1], decoding={"presets": ["greedy", "top_k_top_p_3"],
                                                      "max_new_tokens": 4, "stop": ["\n"]},
                              seeds=[3]))
    fake_backend.respond = lambda prompt, setting, seed, index: "기쁨"
    run_dir = new_run_dir(tmp_path / "reports", plan.task.spec.name)

    fake_backend.info = MODEL_INFO

    records = execute(plan, fake_backend, run_dir)

    assert {p.name for p in run_dir.iterdir()} == {
        "samples.jsonl", "run.json", "results.csv", "summary.csv", "labels.csv", "index.html"
    }
    assert len(records) == plan.n_outputs == 8 + 8 * 3
    assert len(load_records(run_dir / "samples.jsonl")) == len(records)
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["task"]["name"] == "tiny" and run["task"]["labels"][0] == "기쁨"
    assert run["model"] == MODEL_INFO
    assert run["seeds"] == [3] and run["shots"] == [0, 1] and run["items"] == 4
    assert run["options"] == {"max_new_tokens": 4, "stop": ["\n"], "bad_words": []}
    assert [s["name"] for s in run["settings"]] == ["greedy", "top_k_top_p_3"]
    assert {"python", "torch", "transformers", "harness"} <= set(run["versions"])
    assert run["timings"]["load_s"] == 1.23
    assert run["n_outputs"] == len(records)
    assert "작은 감정 분류" in (run_dir / "run.json").read_text(encoding="utf-8")
    assert all(r["correct"] == float(r["references"] == ["기쁨"]) for r in records)
    assert {options for options in fake_backend.options} == {plan.options}
    assert plan.options.stop == ("\n",) and plan.options.max_new_tokens == 4


def test_new_run_dirs_never_collide(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path / "reports", "tiny")
    second = new_run_dir(tmp_path / "reports", "tiny")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("tiny-") and second.name.startswith("tiny-")


def test_an_unwritable_report_folder_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HarnessError, match="--out"):
        pipeline.new_run_dir(blocker / "reports", "tiny")
