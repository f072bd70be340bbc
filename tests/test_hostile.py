"""Issue 12: broken inputs, full disks and interrupted runs end in one line, lose nothing
and serve nothing stale.

Runs go through the command line. Most use a fake backend whose answers depend on the
batch they were generated in (as float rounding does in a real model), so that any
difference in batching between two runs shows; the scenarios of the issue also run on a
tiny real model.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from harness import cli, records
from harness.common import files
from harness.engines import registry as engines
from harness.engines.contract import Generation
from harness.engines.hf.backend import HFBackend
from harness.engines.models import load_model
from tests.conftest import KOREAN_SENTENCES, FakeBackend

LABELS = ["기쁨", "슬픔", "분노", "중립"]
ROWS = [{"text": s, "label": LABELS[i % 4]} for i, s in enumerate(KOREAN_SENTENCES[:12])]
TASK = {"shots": [0, 1], "seeds": [7],
        "decoding": {"presets": ["greedy", "top_k_top_p_3"], "max_new_tokens": 4}}
OUTPUTS = 12 * 2 * (1 + 3)


class BatchSensitive(FakeBackend):
    """A fake whose log-probabilities carry the size and the longest prompt of the batch
    that made them, as a real model's rounding depends on the batch's padding."""

    def __init__(self) -> None:
        super().__init__(rows=6)

    def generate(self, prompts, setting, seeds, options):
        widest = max(len(p) for p in prompts)
        made = super().generate(prompts, setting, seeds, options)
        return [[Generation(g.text, g.raw, g.n_tokens, -1.0 - len(prompts) * 1e-3 - widest * 1e-6,
                            g.stop_reason) for g in outputs] for outputs in made]


@pytest.fixture
def fake(monkeypatch) -> BatchSensitive:
    backend = BatchSensitive()
    monkeypatch.setattr(engines, "open_backend", lambda *args, **kwargs: backend)
    return backend


@pytest.fixture
def task(write_task) -> Path:
    return write_task(rows=ROWS, **TASK)


def run(task: Path, out: Path, *extra: str) -> int:
    return cli.main(["run", str(task), "--out", str(out), "--backend", "hf", *extra])


def run_dir(out: Path) -> Path:
    (found,) = [p for p in out.iterdir() if p.is_dir()]
    return found


def canonical(folder: Path) -> list[str]:
    lines = (folder / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False)
                  for line in lines)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def kill_during_write(monkeypatch, at: int) -> None:
    """The ``at``-th batch write stops halfway through its last line and the process
    dies (KeyboardInterrupt stands in for SIGKILL): every request of that batch but the
    last is on disk whole."""
    real = records.append
    calls = []

    def append(handle, batch):
        calls.append(1)
        if len(calls) == at:
            lines = [records.line(r) for r in batch]
            handle.write("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
            handle.flush()
            raise KeyboardInterrupt
        real(handle, batch)

    monkeypatch.setattr(records, "append", append)


# ---------------------------------------------------------------- resume gives the same run


def test_a_run_killed_mid_batch_resumes_to_exactly_the_uninterrupted_run(
    task, tmp_path, fake, monkeypatch
) -> None:
    assert run(task, tmp_path / "whole", "--no-cache") == 0
    with monkeypatch.context() as patch:
        kill_during_write(patch, at=5)
        assert run(task, tmp_path / "cut", "--no-cache") == 130
    cut = run_dir(tmp_path / "cut")
    assert 0 < len(records.read_samples(cut / "samples.jsonl")) < OUTPUTS

    assert run(task, tmp_path / "cut", "--no-cache", "--resume", str(cut)) == 0

    assert canonical(cut) == canonical(run_dir(tmp_path / "whole"))


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_space(
    task, tmp_path, fake, broken_disk, capsys
) -> None:
    assert run(task, tmp_path / "whole", "--no-cache") == 0
    out = tmp_path / "full"
    disk = broken_disk(out, errno.ENOSPC, room=6000)  # run.json and a few batches fit
    capsys.readouterr()

    assert run(task, out, "--no-cache") == 2

    line = one_line(capsys.readouterr().err)
    folder = run_dir(out)
    assert "No space left on device" in line and "free some space" in line
    assert f"harness run {task} --resume {folder}" in line
    disk["room"] = 10**9
    assert run(task, out, "--no-cache", "--resume", str(folder)) == 0
    assert canonical(folder) == canonical(run_dir(tmp_path / "whole"))


def test_a_run_that_fails_before_any_output_leaves_no_folder(
    task, tmp_path, fake, broken_disk, capsys
) -> None:
    broken_disk(tmp_path / "out", errno.ENOSPC, room=0)
    assert run(task, tmp_path / "out", "--no-cache") == 2
    line = one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "nothing was kept" in line
    assert list((tmp_path / "out").iterdir()) == []


def test_a_backend_error_before_any_output_leaves_no_folder(task, tmp_path, fake, capsys) -> None:
    from harness.errors import HarnessError

    def fail(*args: Any) -> None:
        raise HarnessError("out of cuda memory for a single prompt under setting 'greedy'")

    fake.generate = fail  # type: ignore[method-assign]
    assert run(task, tmp_path / "out", "--no-cache") == 2
    assert "out of cuda memory" in one_line(capsys.readouterr().err)
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- damaged samples.jsonl

DAMAGED_LINES = ["{}\n", "null\n", "[1, 2]\n", '"가"\n', '{"item": "1", "shots": 0}\n']


def test_resume_and_report_leave_out_lines_that_are_not_records(
    task, tmp_path, fake, capsys
) -> None:
    assert run(task, tmp_path / "whole", "--no-cache") == 0
    assert run(task, tmp_path / "r", "--no-cache") == 0
    folder = run_dir(tmp_path / "r")
    samples = folder / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    damaged = b"".join(lines[:30]) + "".join(DAMAGED_LINES).encode() + b"\xff\xfe\x80 not utf-8\n"
    samples.write_bytes(damaged + b"".join(lines[30:]))
    capsys.readouterr()

    assert cli.main(["report", str(folder)]) == 0
    err = capsys.readouterr().err
    assert f"{samples}: 6 damaged line(s) left out" in err and "Traceback" not in err

    assert run(task, tmp_path / "r", "--no-cache", "--resume", str(folder)) == 0
    assert canonical(folder) == canonical(run_dir(tmp_path / "whole"))


# ---------------------------------------------------------------- read-only folders


@pytest.fixture
def finished(task, tmp_path, fake) -> Path:
    assert run(task, tmp_path / "r", "--no-cache") == 0
    return run_dir(tmp_path / "r")


def test_resume_in_a_read_only_folder_is_one_line_before_the_model_loads(
    task, finished, broken_disk, monkeypatch, capsys
) -> None:
    broken_disk(finished, errno.EROFS)
    monkeypatch.setattr(engines, "open_backend", lambda *a, **k: pytest.fail("model loaded"))
    assert run(task, finished.parent, "--resume", str(finished)) == 2
    assert "Read-only file system" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["report", "rescore"])
def test_report_and_rescore_of_a_read_only_run_are_one_line(
    finished, broken_disk, capsys, command
) -> None:
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    broken_disk(finished, errno.EROFS)
    capsys.readouterr()
    assert cli.main([command, str(finished)]) == 2
    assert "Read-only file system" in one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_a_full_disk_while_writing_the_page_keeps_the_old_page(
    finished, broken_disk, capsys
) -> None:
    page = (finished / "index.html").read_bytes()
    broken_disk(finished, errno.ENOSPC, room=len(page) // 2)
    capsys.readouterr()
    assert cli.main(["report", str(finished)]) == 2
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert (finished / "index.html").read_bytes() == page
    assert not [p for p in finished.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- one writer per run


def test_two_resumes_of_one_run_at_once_are_refused(task, finished, capsys) -> None:
    with files.locked(finished, "the first --resume"):
        assert run(task, finished.parent, "--resume", str(finished)) == 2
    assert "another harness is writing" in one_line(capsys.readouterr().err)
    assert run(task, finished.parent, "--resume", str(finished)) == 0  # free again


def test_a_run_being_written_cannot_be_resumed_or_rescored(task, tmp_path, fake,
                                                          monkeypatch, capsys) -> None:
    """While a run writes its folder, a --resume or rescore of it is refused."""
    seen: list[tuple[int, int]] = []
    real = fake.generate

    def meanwhile(prompts, *rest):
        if not seen:
            folder = run_dir(tmp_path / "r")
            seen.append((run(task, tmp_path / "r", "--resume", str(folder)),
                         cli.main(["rescore", str(folder)])))
        return real(prompts, *rest)

    fake.generate = meanwhile  # type: ignore[method-assign]
    assert run(task, tmp_path / "r", "--no-cache") == 0
    assert seen == [(2, 2)]
    assert capsys.readouterr().err.count("another harness is writing") == 2
    assert len(records.read_samples(run_dir(tmp_path / "r") / "samples.jsonl")) == OUTPUTS


# ---------------------------------------------------------------- the scenarios, real model


@pytest.fixture
def tiny_model(hf_model_dir, monkeypatch) -> Path:
    """The tiny Hugging Face model, in batches of 6 rows (so the runs have many)."""
    monkeypatch.setattr(engines, "open_backend",
                        lambda name, model, device="auto", fast=True, parallel=None:
                        HFBackend(load_model(model, "cpu"), rows=6, fast=fast))
    return hf_model_dir


def test_a_limited_run_then_a_full_one_on_its_cache_gives_the_fresh_run(
    task, tmp_path, tiny_model, monkeypatch
) -> None:
    model = ["--model", str(tiny_model)]
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "shared"))
    assert run(task, tmp_path / "limited", *model, "--limit", "3") == 0
    assert run(task, tmp_path / "after", *model) == 0
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "fresh"))
    assert run(task, tmp_path / "fresh", *model) == 0

    def outputs(out: Path) -> dict[tuple, tuple[str, float]]:
        found = records.read_samples(run_dir(out) / "samples.jsonl")
        return {(*records.record_id(r), r["sequence"]): (r["output"], r["mean_logprob"])
                for r in found}

    after, fresh = outputs(tmp_path / "after"), outputs(tmp_path / "fresh")
    assert len(after) == len(fresh) == OUTPUTS
    assert {k: text for k, (text, _) in after.items()} == {k: text for k, (text, _) in fresh.items()}
    # the 3 items answered from the limited run's cache were computed in other batches:
    # their log-probabilities may differ from the fresh run's in the last digits only
    for key, (_, logprob) in after.items():
        assert logprob == pytest.approx(fresh[key][1], abs=1e-4)


def test_a_no_cache_run_killed_mid_batch_resumes_to_the_same_numbers(
    task, tmp_path, tiny_model, monkeypatch
) -> None:
    model = ["--model", str(tiny_model), "--no-cache"]
    assert run(task, tmp_path / "whole", *model) == 0
    with monkeypatch.context() as patch:
        kill_during_write(patch, at=6)
        assert run(task, tmp_path / "cut", *model) == 130
    cut = run_dir(tmp_path / "cut")
    assert run(task, tmp_path / "cut", *model, "--resume", str(cut)) == 0
    assert canonical(cut) == canonical(run_dir(tmp_path / "whole"))  # every float too
