"""The shipped benchmarks (tasks/benchmarks/): each one read from a datasets folder of rows in
its dataset's own columns, its prompts as its reference writes them, and kobest_copa run
whole from the command line as CI runs it (no Hub)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness import cli
from harness.tasks.prompts import build_prompts
from harness.tasks.spec import load_task
from tests.benchmark_rows import COPA, save_mirror

BENCHMARKS = sorted((cli.TASKS_DIR / "benchmarks").glob("*.yaml"))


@pytest.fixture(scope="session")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mirror(tmp_path_factory.mktemp("datasets"))


@pytest.fixture
def mirror(mirror_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_DATASETS", str(mirror_root))
    return mirror_root


def test_the_benchmarks_named_in_the_issue_are_shipped() -> None:
    names = {path.stem for path in BENCHMARKS}
    assert {"kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_sentineg",
            "kobest_wic", "korquad_v1", "nsmc", "klue_ynat"} <= names
    assert any(n.startswith("kmmlu_") for n in names)
    assert any(n.startswith("haerae_") for n in names)


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_each_benchmark_reads_its_datasets_folder_and_renders(path: Path, mirror: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "license" in text.lower() and "Data:" in text  # source and license in the file
    task = load_task(path)
    prompts = build_prompts(task, [0, 1])
    assert prompts and all(p.references for p in prompts)
    source = task.sources["data"]
    assert source["dataset"] == task.spec.data.dataset
    assert source["from"] == "$HARNESS_DATASETS" and source["fingerprint"]
    if task.spec.kind == "multiple_choice":
        assert all(p.references[0] in p.choices for p in prompts)
    elif task.spec.kind == "classification":
        assert all(p.references[0] in task.spec.labels for p in prompts)


def test_kobest_copa_prompts_are_lm_evaluation_harness_s(mirror: Path) -> None:
    task = load_task(cli.TASKS_DIR / "benchmarks" / "kobest_copa.yaml")
    first, second = build_prompts(task, [0])[:2]
    # premise, two spaces, the connector of the question (결과: 그래서, 원인: 왜냐하면)
    assert first.text == "바닥이 미끄러웠다.  그래서"
    assert first.choices == ("그는 넘어졌다.", "그는 노래를 불렀다.")
    assert first.references == ["그는 넘어졌다."]  # label 0
    assert second.text == "아이가 울음을 터뜨렸다.  왜냐하면"
    assert second.references == ["아이는 장난감을 잃어버렸다."]  # label 1


def test_kmmlu_and_haerae_prompts(mirror: Path) -> None:
    kmmlu = build_prompts(load_task(cli.TASKS_DIR / "benchmarks" / "kmmlu_korean_history.yaml"),
                          [0])[0]
    assert kmmlu.text == "조선을 세운 사람은?\nA. 왕건\nB. 이성계\nC. 주몽\nD. 온조\n정답："
    assert kmmlu.references == ["B"]  # answer 2, counted from 1
    haerae = build_prompts(load_task(cli.TASKS_DIR / "benchmarks" / "haerae_history.yaml"),
                           [0])[1]
    assert haerae.text.endswith("(E) 1945년\n정답:") and haerae.references == ["(B)"]


def test_korquad_takes_every_answer_as_a_reference(mirror: Path) -> None:
    prompts = build_prompts(load_task(cli.TASKS_DIR / "benchmarks" / "korquad_v1.yaml"), [0])
    assert prompts[0].references == ["세종", "세종대왕"]
    assert prompts[0].text.endswith("질문: 한글을 만든 사람은?\n답:")


def test_list_names_the_benchmarks_without_their_data(capsys, monkeypatch) -> None:
    monkeypatch.delenv("HARNESS_DATASETS", raising=False)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "kobest_copa.yaml" in out and "multiple_choice" in out
    assert "(invalid" not in out


def test_kobest_copa_runs_from_a_datasets_folder(mirror: Path, tmp_path: Path, capsys,
                                                 hf_model_dir: Path) -> None:
    out_dir = tmp_path / "reports"
    code = cli.main(["run", str(cli.TASKS_DIR / "benchmarks" / "kobest_copa.yaml"),
                     "--model", str(hf_model_dir), "--out", str(out_dir), "--device", "cpu"])
    assert code == 0
    run_dir = next(out_dir.iterdir())
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["data"]["data"]["dataset"] == "skt/kobest_v1"
    assert run["data"]["data"]["config"] == "copa" and run["data"]["data"]["fingerprint"]
    records = [json.loads(line) for line in
               (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(COPA)
    for record in records:
        assert len(record["choices"]) == len(record["choice_logprobs"]) == 2
        best = max(range(2), key=lambda j: record["choice_logprobs"][j])
        assert record["output"] == record["predicted"] == record["choices"][best]
        assert record["correct"] == float(record["predicted"] == record["references"][0])
    with (run_dir / "summary.csv").open(encoding="utf-8-sig") as handle:
        row = next(csv.DictReader(handle))
    accuracy = sum(r["correct"] for r in records) / len(records)
    assert float(row["accuracy"]) == pytest.approx(accuracy)
    assert "macro_f1" in row and "acc_norm" in row
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "1. 그는 넘어졌다." in page  # the choices with their log-probabilities


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_each_benchmark_meets_the_shipped_schema(path: Path) -> None:
    import jsonschema
    import yaml

    from harness.tasks.schema import SHIPPED_SCHEMA

    schema = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(
        yaml.safe_load(path.read_text(encoding="utf-8")))
