"""Task data read with ``datasets``: folders written by save_to_disk, the mapping form of
data (Hub name, config, split, revision; columns made with Jinja), the HARNESS_DATASETS
folder, and the one line a run gets offline when a Hub dataset is not cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runs import pipeline
from harness.tasks.spec import load_task_mapping, load_task_text

ROWS = [
    {"text": "오늘은 정말 기쁘다", "label": 1, "tags": ["a", "b"]},
    {"text": "너무 슬픈 하루였다", "label": 0, "tags": []},
]
FIELDS = {"name": "t", "kind": "classification", "prompt": {"query": "{{ text }} 감정:"},
          "target": "{{ ['슬픔', '기쁨'][label] }}", "labels": ["슬픔", "기쁨"]}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    from datasets import Dataset

    folder = tmp_path / "saved"
    Dataset.from_list(ROWS).save_to_disk(str(folder))
    return folder


@pytest.fixture
def saved_splits(tmp_path: Path) -> Path:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_list(ROWS[:1]), "test": Dataset.from_list(ROWS)}
                ).save_to_disk(str(folder))
    return folder


def test_a_saved_dataset_folder_reads_like_a_file(tmp_path, saved) -> None:
    task = load_task_mapping(FIELDS | {"data": "saved"}, tmp_path / "t.yaml", tmp_path)
    assert task.items == ROWS  # values keep their types, as a JSONL file's
    assert task.sources["data"]["fingerprint"] and task.sources["data"]["rows"] == 2


def test_a_dataset_dict_folder_needs_its_split(tmp_path, saved_splits) -> None:
    with pytest.raises(HarnessError, match="holds the splits train, test; name one"):
        load_task_mapping(FIELDS | {"data": "splits"}, tmp_path / "t.yaml", tmp_path)
    task = load_task_mapping(FIELDS | {"data": {"path": "splits", "split": "test"},
                                       "fewshot": {"path": "splits", "split": "train"}},
                             tmp_path / "t.yaml", tmp_path)
    assert len(task.items) == 2 and task.pool == ROWS[:1]
    assert task.sources["fewshot"]["split"] == "train"


def test_columns_are_made_with_jinja_from_each_row(tmp_path, saved) -> None:
    data = {"path": "saved", "columns": {"sentence": "{{ text }}!", "n": "{{ tags | length }}"}}
    fields = FIELDS | {"data": data, "prompt": {"query": "{{ sentence }} ({{ n }})"}}
    task = load_task_mapping(fields, tmp_path / "t.yaml", tmp_path)
    assert task.items[0]["sentence"] == "오늘은 정말 기쁘다!" and task.items[1]["n"] == "0"
    with pytest.raises(HarnessError, match=r"columns\.x uses missing, missing from item 1"):
        load_task_mapping(FIELDS | {"data": {"path": "saved", "columns": {"x": "{{ missing }}"}}},
                          tmp_path / "t.yaml", tmp_path)


def test_columns_work_on_a_plain_data_file_too(tmp_path) -> None:
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), encoding="utf-8")
    data = {"path": "d.jsonl", "columns": {"text": "문장: {{ text }}"}}
    task = load_task_mapping(FIELDS | {"data": data}, tmp_path / "t.yaml", tmp_path)
    assert task.items[0]["text"] == "문장: 오늘은 정말 기쁘다"


@pytest.mark.parametrize(("data", "message"), [
    ("{dataset: a/b, path: x}", "give either dataset"),
    ("{dataset: a/b}", "dataset a/b: give its split"),
    ("{path: x.csv, revision: main}", "revision is for a Hub dataset"),
    ("{dataset: a/b, split: test, colums: {}}", "unknown key 'colums'; did you mean 'columns'"),
])
def test_mapping_mistakes_name_the_line(tmp_path, data, message) -> None:
    text = ("name: t\nkind: classification\nlabels: [a, b]\ntarget: '{{ label }}'\n"
            f"prompt: {{query: '{{{{ text }}}}'}}\ndata: {data}\n")
    with pytest.raises(HarnessError, match=message) as caught:
        load_task_text(text, tmp_path / "t.yaml", tmp_path)
    assert f"{tmp_path / 't.yaml'}:6: data" in str(caught.value)


def test_the_datasets_folder_stands_for_the_hub(tmp_path, saved_splits, monkeypatch) -> None:
    from datasets import load_from_disk

    root = tmp_path / "mirror"
    load_from_disk(str(saved_splits)).save_to_disk(str(root / "someone" / "feelings" / "ko"))
    monkeypatch.setenv("HARNESS_DATASETS", str(root))
    data = {"dataset": "someone/feelings", "config": "ko", "split": "test", "revision": "v1"}
    task = load_task_mapping(FIELDS | {"data": data}, tmp_path / "t.yaml", tmp_path)
    assert task.items == ROWS
    source = task.sources["data"]
    assert (source["dataset"], source["config"], source["split"], source["revision"]) == (
        "someone/feelings", "ko", "test", "v1")
    assert source["fingerprint"]


def test_the_data_s_fingerprint_is_part_of_the_plan(tmp_path, saved, fake_backend) -> None:
    from datasets import Dataset

    first = pipeline.prepare(load_task_mapping(FIELDS | {"data": "saved"}, tmp_path / "t.yaml",
                                               tmp_path))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pipeline.execute(first, fake_backend, run_dir)
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["data"]["data"]["fingerprint"] == first.task.sources["data"]["fingerprint"]
    # the same rows saved again carry another fingerprint: another plan (no silent resume)
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "again"))
    second = pipeline.prepare(load_task_mapping(FIELDS | {"data": "again"}, tmp_path / "t.yaml",
                                                tmp_path))
    assert [p.text for p in first.prompts] == [p.text for p in second.prompts]
    assert pipeline.plan_id(first) != pipeline.plan_id(second)


def test_offline_a_missing_hub_dataset_is_one_line(tmp_path) -> None:
    task = tmp_path / "hub.yaml"
    task.write_text(
        "name: hub\nkind: classification\nlabels: [아니오, 예]\n"
        "target: \"{{ ['아니오', '예'][label] }}\"\nprompt: {query: '{{ question }}'}\n"
        "data: {dataset: skt/kobest_v1, config: boolq, split: test}\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("HARNESS_DATASETS", None)
    done = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(task)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "dataset skt/kobest_v1 (boolq, test) is not in the local datasets cache" in lines[0]
    assert "HF_HUB_OFFLINE is set" in lines[0] and "HARNESS_DATASETS" in lines[0]
