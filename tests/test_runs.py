"""Tests for harness.runs.folders: `harness report` and `harness rescore` on a finished run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.errors import HarnessError
from harness.records import load_run
from harness.records import read_samples as load_records
from harness.runs.folders import rerender, rescore
from harness.runs.pipeline import execute, new_run_dir, prepare

MODEL_INFO = {"name": "fake", "type": "fake", "device": "cpu", "dtype": "float32",
              "fingerprint": "0" * 64}
ANSWERS = {"시험에": "기쁨이요", "키우던": "기쁨", "약속을": "분노", "고양이가": "모르겠어요"}


def answer(prompt: str, setting, seed, index) -> str:
    query = prompt.rsplit("문장: ", 1)[1]
    return next(a for start, a in ANSWERS.items() if query.startswith(start))


@pytest.fixture
def finished(write_task, tmp_path: Path, fake_backend):
    """A finished run of the tiny task (greedy and beam, 0 and 1 shots) and its task file."""
    path = write_task(decoding={"presets": ["greedy", "beam"], "stop": ["\n"]})
    plan = prepare(path)
    fake_backend.respond = answer
    run_dir = new_run_dir(tmp_path / "reports", plan.task.spec.name)
    fake_backend.info = MODEL_INFO

    execute(plan, fake_backend, run_dir)
    return run_dir, path


def test_report_renders_the_same_page_again(finished) -> None:
    run_dir, _ = finished
    before = {name: (run_dir / name).read_bytes() for name in ("index.html", "results.csv")}
    (run_dir / "index.html").unlink()
    assert rerender(run_dir) == run_dir / "index.html"
    for name, content in before.items():
        assert (run_dir / name).read_bytes() == content, name


def test_load_run_puts_records_in_the_reports_order(finished) -> None:
    run_dir, _ = finished
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (run_dir / "samples.jsonl").write_text("".join(reversed(lines)), encoding="utf-8")
    _, records = load_run(run_dir)
    keys = [(r["setting"], r["item"], r["shots"]) for r in records]
    assert keys[0] == ("greedy", 0, 0) and keys[-1] == ("beam", 3, 1)
    assert keys == sorted(keys, key=lambda k: (k[0] != "greedy", k[1], k[2]))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "nowhere", "no such run folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not a run folder (no run.json)"),
    ],
)
def test_report_of_something_else_is_one_clear_error(tmp_path, capsys, make, words) -> None:
    assert cli.main(["report", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1


def test_rescore_after_a_label_is_corrected(finished, emotion_rows, tmp_path, capsys) -> None:
    run_dir, path = finished
    old = {(r["setting"], r["item"], r["shots"]): r
           for r in load_records(run_dir / "samples.jsonl")}
    assert old[("greedy", 1, 0)]["correct"] == 0.0  # 기쁨 answered; the data said 슬픔
    rows = [dict(r) for r in emotion_rows]
    rows[1]["label"] = "기쁨"  # the data is corrected
    from tests.conftest import write_csv

    write_csv(tmp_path / "data.csv", rows)

    assert cli.main(["rescore", str(run_dir), "--task", str(path)]) == 0

    out = capsys.readouterr().out
    assert "rescored 16 outputs" in out and ": 4 changed" in out  # item 2, 2 settings × 2 shots
    new = {(r["setting"], r["item"], r["shots"]): r
           for r in load_records(run_dir / "samples.jsonl")}
    assert new[("greedy", 1, 0)]["correct"] == 1.0
    assert new[("greedy", 1, 0)]["references"] == ["기쁨"]
    assert new[("greedy", 0, 0)] == old[("greedy", 0, 0)]  # the rest as it was
    assert not list(run_dir.glob("*.tmp"))
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["rescored"]["changed"] == 4 and run["rescored"]["task_path"] == str(path)
    summary = (run_dir / "summary.csv").read_text(encoding="utf-8-sig")
    assert "greedy,0,0.75" in summary  # 3 of 4 now right
    assert "rescored" in (run_dir / "index.html").read_text(encoding="utf-8")


def test_rescore_takes_new_labels_and_metrics(finished, write_task, capsys) -> None:
    run_dir, _ = finished
    # "기쁨이요" now names the label 기쁨이요 (the longest label named first wins)
    path = write_task(labels=["기쁨", "기쁨이요", "슬픔", "분노", "중립"], metrics=["invalid"],
                      decoding={"presets": ["greedy", "beam"], "stop": ["\n"]})
    done = rescore(run_dir, path)
    item0 = next(r for r in done.records if r["item"] == 0)
    assert item0["predicted"] == "기쁨이요" and item0["correct"] == 0.0
    assert done.run["task"]["labels"][1] == "기쁨이요"
    assert done.run["task"]["metrics"] == ["invalid"]
    assert done.run["task"]["decoding"]["presets"] == ["greedy", "beam"]


def test_rescore_finds_the_task_file_named_in_run_json(finished) -> None:
    run_dir, path = finished
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert Path(run["task_path"]) == path
    assert rescore(run_dir).changed == 0


def test_rescore_refuses_another_task_and_changed_data(finished, write_task, emotion_rows,
                                                       tmp_path) -> None:
    run_dir, _ = finished
    other = write_task(name="other.yaml")  # (write_task's name is the file's)
    other.write_text(other.read_text(encoding="utf-8").replace("name: tiny", "name: other"),
                     encoding="utf-8")
    with pytest.raises(HarnessError, match="this is task 'other', but"):
        rescore(run_dir, other)
    with pytest.raises(HarnessError, match="kind is now qa"):
        rescore(run_dir, write_task(kind="qa", labels=None))
    moved = list(reversed(emotion_rows))
    with pytest.raises(HarnessError, match="no longer gives the prompt the run used"):
        rescore(run_dir, write_task(rows=moved))
    with pytest.raises(HarnessError, match="the data now has 2 items"):
        rescore(run_dir, write_task(rows=emotion_rows[:2]))


def test_rescore_without_the_task_file_says_to_pass_one(finished, tmp_path) -> None:
    run_dir, path = finished
    path.rename(tmp_path / "moved.yaml")
    with pytest.raises(HarnessError, match="pass --task TASK.yaml"):
        rescore(run_dir)


def test_report_and_rescore_do_not_import_torch(finished) -> None:
    run_dir, path = finished
    code = (
        "import sys\n"
        "from harness.cli import main\n"
        f"assert main(['report', {str(run_dir)!r}]) == 0\n"
        f"assert main(['rescore', {str(run_dir)!r}, '--task', {str(path)!r}]) == 0\n"
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
