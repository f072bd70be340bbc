"""Tests for harness.cli: the commands as a user types them, run in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness import cli
from harness.tasks.decoding import PRESETS

SHIPPED = sorted(cli.TASKS_DIR.glob("*.yaml"))


def run_dir_of(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_shipped_tasks_validate(capsys) -> None:
    assert len(SHIPPED) >= 5
    assert cli.main(["validate", *map(str, SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert [line.split()[:2] for line in out.splitlines()] == [["ok", str(p)] for p in SHIPPED]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("max_new_tokens: 4", "max_new_token: 4"),  # unknown key
        ("kind: classification", "kind: poem"),  # wrong value
        ("data: data.csv", "data: missing.csv"),  # data file not there
        ("shots:\n- 0\n- 1", "shots: [0, 1"),  # YAML syntax
        ("query: '문장: {{ text }}", "query: '문장: {{ text }"),  # Jinja syntax
        ("data: data.csv", "data: 5"),  # neither a path nor a list
        ("presets:\n  - greedy", "presets:\n  - gredy"),  # unknown preset
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_broken_task_is_one_error_line_and_exit_code_2(
    write_task, tmp_path, capsys, command, old, new
) -> None:
    path = write_task()
    text = path.read_text(encoding="utf-8")
    assert old in text, text
    path.write_text(text.replace(old, new), encoding="utf-8")
    argv = [command, str(path)] + (["--out", str(tmp_path / "out")] if command == "run" else [])

    assert cli.main(argv) == 2

    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("harness: error: ")
    assert "Traceback" not in err + out
    assert not (tmp_path / "out").exists()


def test_validate_reports_each_broken_file_and_checks_the_rest(write_task, capsys) -> None:
    broken = write_task(name="broken.yaml", kind="poem")
    assert cli.main(["validate", str(broken), str(SHIPPED[0])]) == 2
    out, err = capsys.readouterr()
    assert str(broken) in err and out.startswith(f"ok  {SHIPPED[0]}")


def test_list_shows_the_presets_and_the_shipped_tasks(capsys) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"  {name} " in out
    for path in SHIPPED:
        assert path.name in out
    assert "(invalid:" not in out  # every shipped task loads
    assert "num_beams=5" in out
    # and every metric, with the kinds that have it and its meaning
    assert "  macro_f1     ↑ classification" in out
    assert "  length         every kind" in out


def test_version_exits_cleanly(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("harness ")


TASK_FIELDS = {"shots": [0, 1], "seeds": [1, 2]}


@pytest.mark.parametrize(
    ("model", "presets", "outputs_per_prompt"),
    [
        ("kogpt2", ["greedy", "beam_5_sequences"], 1 + 5),
        ("hf", ["greedy", "top_k_top_p_3"], 1 + 2 * 3),  # sampled: 2 seeds x 3 sequences
    ],
)
def test_run_writes_the_whole_report(
    write_task, tmp_path, capsys, kogpt2_dir, hf_model_dir, model, presets, outputs_per_prompt
) -> None:
    folder = kogpt2_dir if model == "kogpt2" else hf_model_dir
    path = write_task(decoding={"presets": presets, "max_new_tokens": 4, "stop": ["\n"]},
                      **TASK_FIELDS)
    out_dir = tmp_path / "reports"

    code = cli.main(["run", str(path), "--model", str(folder), "--out", str(out_dir),
                     "--device", "cpu"])

    assert code == 0
    run_dir = run_dir_of(out_dir)
    assert run_dir.name.startswith("tiny-")
    for name in ("index.html", "results.csv", "summary.csv", "samples.jsonl", "run.json"):
        assert (run_dir / name).stat().st_size > 0, name
    items, shots = 4, 2
    rows = csv_rows(run_dir / "results.csv")
    assert len(rows) == items * shots * outputs_per_prompt
    assert len((run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()) == len(rows)
    assert {r["setting"] for r in rows} == set(presets)
    assert all("\n" not in r["output"] for r in rows)  # the task's stop string applied
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["model"]["type"] == "gpt2" and run["model"]["name"] == str(folder)
    assert len(run["model"]["fingerprint"]) == 64
    out = capsys.readouterr().out
    assert f"report: {run_dir / 'index.html'}" in out
    assert all(name in out for name in presets)  # the summary table


def test_run_with_limit_and_overrides(write_task, tmp_path, kogpt2_dir) -> None:
    path = write_task(**TASK_FIELDS)
    out_dir = tmp_path / "reports"
    code = cli.main(["run", str(path), "--model", str(kogpt2_dir), "--out", str(out_dir),
                     "--limit", "2", "--shots", "0,1", "--presets", "greedy,beam"])
    assert code == 0
    run_dir = run_dir_of(out_dir)
    rows = csv_rows(run_dir / "results.csv")
    assert len(rows) == 2 * 2 * 2  # items x shots x settings
    assert {r["item"] for r in rows} == {"0", "1"}
    assert {r["shots"] for r in rows} == {"0", "1"}
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["items"] == 2


def test_a_model_that_is_not_there_is_one_error_line(write_task, tmp_path, capsys) -> None:
    code = cli.main(["run", str(write_task()), "--model", str(tmp_path / "no-model"),
                     "--out", str(tmp_path / "out")])
    assert code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines()
                 if line.startswith("harness: ")]
    assert len(err_lines) == 1 and "no such file or folder" in err_lines[0]


def test_validate_names_the_settings_and_the_seeds_of_sampled_ones(write_task, capsys) -> None:
    path = write_task(decoding={"presets": ["greedy", "top_p"]}, seeds=[1, 2])
    assert cli.main(["validate", str(path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"ok  {path}  tiny: 4 items × shots [0, 1] × 2 settings → 24 prompts, "
                    "24 outputs  [greedy, top_p; seeds 1, 2]")


def test_an_unknown_metric_is_refused_with_a_suggestion(write_task, capsys) -> None:
    assert cli.main(["validate", str(write_task(metrics=["acuracy"]))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("metrics: 'acuracy' is not a metric of a classification task; "
            "did you mean 'accuracy'?") in err


@pytest.mark.parametrize(("args", "words"), [
    (["--shots", ","], "give one shot count or more"),
    (["--shots", "0,0"], "a shot count is given twice"),
    (["--seed", ","], "give one seed or more"),
    (["--seed", "1,1"], "a seed is given twice"),
    (["--seed", str(2**63)], "from 0 to 2^63 - 1"),
    (["--limit", "x"], "--limit"),
])
def test_bad_numbers_on_the_command_line_are_one_line(write_task, tmp_path, capsys, args,
                                                      words) -> None:
    code = cli.main(["run", str(write_task()), "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("harness: error: ")
    assert words in err
    assert not (tmp_path / "r").exists()


def test_a_seed_above_2_63_in_a_task_fails_validate(write_task, capsys) -> None:
    assert cli.main(["validate", str(write_task(seeds=[2**64]))]) == 2
    assert "seeds" in capsys.readouterr().err


def test_sigterm_ends_a_command_as_ctrl_c_does(monkeypatch, capsys) -> None:
    import os
    import signal
    import time

    from harness import cli as cli_module

    def stopped(args) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives first
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli_module, "cmd_validate", stopped)
    assert cli_module.main(["validate", str(cli_module.TASKS_DIR / "emotion.yaml")]) == 130
    assert capsys.readouterr().err.startswith("harness: interrupted")
    assert signal.getsignal(signal.SIGTERM) is before
