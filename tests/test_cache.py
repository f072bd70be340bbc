"""Tests for harness.runs.cache: what the key holds, and a cache that never fails a run.

Runs go through the command line with a fake backend in place of a model (its identity
and fingerprint are what the key sees), so each one takes a moment.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from harness import cli
from harness.engines import registry as engines
from harness.engines.contract import Generation, Options
from harness.engines.models import hub_fingerprint
from harness.runs import cache
from harness.runs.cache import ResultCache, open_cache, request_key
from tests.conftest import FakeBackend

TASK = {"shots": [0, 1], "decoding": {"presets": ["greedy", "top_k_top_p_3"], "max_new_tokens": 4},
        "seeds": [3]}
PROMPTS = 4 * 2 * 2  # items x shot counts x settings


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(folder))
    return folder


@pytest.fixture
def backend(monkeypatch) -> FakeBackend:
    fake = FakeBackend()
    monkeypatch.setattr(engines, "open_backend", lambda *args, **kwargs: fake)
    return fake


def run(path: Path, out: Path, *extra: str) -> int:
    return cli.main(["run", str(path), "--out", str(out), "--backend", "hf", *extra])


def generated(backend: FakeBackend) -> int:
    return sum(len(prompts) for prompts, _, _ in backend.calls)


def samples(out: Path) -> list[dict]:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: json.dumps(r, sort_keys=True))


def warnings(err: str) -> list[str]:
    """The warning lines (a progress bar drawn with carriage returns may precede one)."""
    return re.findall(r"harness: warning: [^\r\n]*", err)


# ---------------------------------------------------------------- the key


def test_the_key_changes_with_every_part_of_the_scope() -> None:
    options = Options(8, ("\n",))
    base = cache.scope("sha-of-files", {"backend": "hf", "device": "cpu", "dtype": "float32"})
    key = request_key(base, "프롬프트", {}, options, None)
    assert base["harness"] == cache.code_version() and base["model"] == "sha-of-files"
    for change in ({"model": "other-files"}, {"harness": "another-version"},
                   {"device": "cuda"}, {"dtype": "bfloat16"}, {"backend": "vllm"},
                   {"bf16_screen": True}, {"libraries": {"torch": "0.0"}}):
        assert request_key(base | change, "프롬프트", {}, options, None) != key, change


@pytest.mark.parametrize("module", ["engines/blocking.py", "engines/hf/conditions.py",
                                    "engines/vllm/processor.py", "engines/vllm/beam.py",
                                    "engines/sampling.py", "engines/hf/backend.py"])
def test_an_edit_to_any_generating_module_changes_every_key(tmp_path, module: str) -> None:
    package = Path(cache.__file__).resolve().parent.parent
    copy = tmp_path / "harness"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert cache.code_digest(copy) == cache.code_version()
    with (copy / module).open("a", encoding="utf-8") as handle:
        handle.write("\n# an edit\n")
    assert cache.code_digest(copy) != cache.code_version()


def test_a_module_added_to_an_engine_is_in_the_key(tmp_path) -> None:
    package = Path(cache.__file__).resolve().parent.parent
    copy = tmp_path / "harness"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "engines" / "hf" / "new_speedup.py").write_text("STEP = 2\n", encoding="utf-8")
    assert cache.code_digest(copy) != cache.code_version()


def test_a_package_without_generating_code_is_refused(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="no generating modules"):
        cache.code_digest(tmp_path)


def test_a_hub_model_of_unknown_revision_has_no_fingerprint() -> None:
    assert hub_fingerprint("skt/kogpt2-base-v2", "abc123") == "hub:skt/kogpt2-base-v2@abc123"
    assert hub_fingerprint("skt/kogpt2-base-v2", None) is None


def test_a_cache_filled_by_another_harness_version_is_not_read(
    write_task, tmp_path, cache_dir, backend, monkeypatch
) -> None:
    path = write_task(**TASK)
    assert run(path, tmp_path / "a") == 0
    assert generated(backend) == PROMPTS
    backend.calls.clear()
    assert run(path, tmp_path / "b") == 0
    assert generated(backend) == 0  # the same version: every answer from the cache
    monkeypatch.setattr(cache, "code_version", lambda: "a-later-commit")
    assert run(path, tmp_path / "c") == 0
    assert generated(backend) == PROMPTS


def cached_outputs(out: Path) -> int:
    """What run.json says the result cache gave."""
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    run_json = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return run_json["timings"]["cached_outputs"]


def test_a_run_says_how_many_outputs_came_from_the_cache(
    write_task, tmp_path, cache_dir, backend, capsys
) -> None:
    path = write_task(**TASK)
    outputs = 4 * 2 * (1 + 3)  # items x shot counts x (greedy + 3 sampled sequences)
    assert run(path, tmp_path / "a") == 0
    assert f"0 of {outputs} outputs from the result cache" in capsys.readouterr().out
    assert cached_outputs(tmp_path / "a") == 0

    assert run(path, tmp_path / "b") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == f"{outputs} of {outputs} outputs from the result cache"
    assert lines[-1].startswith("report: ")
    assert cached_outputs(tmp_path / "b") == outputs

    backend.calls.clear()
    assert run(path, tmp_path / "c", "--shots", "0,1,2") == 0  # only 2-shot prompts are new
    more = outputs // 2 * 3
    assert f"{outputs} of {more} outputs from the result cache" in capsys.readouterr().out
    assert cached_outputs(tmp_path / "c") == outputs
    assert len(samples(tmp_path / "c")) == more
    assert generated(backend) == 4 * 2  # 2-shot prompts x settings

    assert run(path, tmp_path / "d", "--no-cache") == 0
    assert "from the result cache" not in capsys.readouterr().out
    assert cached_outputs(tmp_path / "d") == 0


@pytest.mark.parametrize("change", [{"device": "cuda"}, {"dtype": "float16"},
                                    {"backend": "vllm"}, {"bf16_screen": False}])
def test_another_device_dtype_or_backend_does_not_share_entries(
    write_task, tmp_path, cache_dir, backend, change
) -> None:
    identity = {"backend": "hf", "device": "cpu", "dtype": "float32", "bf16_screen": True}
    backend.identity = lambda: identity  # type: ignore[method-assign]
    path = write_task(**TASK)
    assert run(path, tmp_path / "a") == 0
    backend.calls.clear()
    identity = identity | change
    assert run(path, tmp_path / "b") == 0
    assert generated(backend) == PROMPTS


def test_a_model_that_cannot_be_identified_does_not_use_the_cache(
    write_task, tmp_path, cache_dir, backend, capsys
) -> None:
    backend.info = {**backend.info, "fingerprint": None}  # a hub id at an unknown commit
    path = write_task(**TASK)
    assert run(path, tmp_path / "a") == 0 and run(path, tmp_path / "b") == 0
    assert generated(backend) == 2 * PROMPTS
    assert "result cache is not used" in capsys.readouterr().err


# ---------------------------------------------------------------- damaged databases


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x13 this is not SQLite " * 400)


def _cut_in_half(path: Path) -> None:
    db = ResultCache(path)
    db.put([(f"key {i}", [Generation("답 " * 200, "", 3, -1.0, "eos")]) for i in range(500)])
    db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("a folder where the database was", encoding="utf-8")


DAMAGE = {"garbage": _garbage, "cut in half": _cut_in_half, "a folder": _folder}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cache_is_set_aside_and_the_run_goes_on(
    write_task, tmp_path, cache_dir, backend, capsys, damage
) -> None:
    cache_dir.mkdir()
    database = cache_dir / "results.sqlite"
    DAMAGE[damage](database)
    path = write_task(**TASK)

    assert run(path, tmp_path / "a") == 0

    err = capsys.readouterr().err
    (line,) = warnings(err)
    assert "results.sqlite" in line and "moved it to results.sqlite.damaged-" in line
    assert "Traceback" not in err
    assert len(list(cache_dir.glob("results.sqlite.damaged-*"))) == 1
    assert len(samples(tmp_path / "a")) == 4 * 2 * (1 + 3)
    backend.calls.clear()
    assert run(path, tmp_path / "b") == 0  # the new cache works
    assert generated(backend) == 0 and warnings(capsys.readouterr().err) == []


def test_a_cache_folder_that_is_a_file_means_no_cache_not_a_failure(
    write_task, tmp_path, backend, monkeypatch, capsys
) -> None:
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker))
    assert run(write_task(**TASK), tmp_path / "a") == 0
    (line,) = warnings(capsys.readouterr().err)
    assert f"{blocker} is a file" in line and "running without it" in line
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_a_database_damaged_during_a_run_is_set_aside(tmp_path) -> None:
    said: list[str] = []
    db = open_cache(tmp_path / "results.sqlite", said.append)
    assert db is not None
    db.put([("a", [Generation("가", "가", 1, -1.0, "eos")])])
    db.close()
    db = open_cache(tmp_path / "results.sqlite", said.append)
    assert db is not None
    db._db.close()
    (tmp_path / "results.sqlite").write_bytes(b"garbage" * 2000)
    db._db = sqlite3.connect(tmp_path / "results.sqlite", isolation_level=None)
    assert db.get(["a"]) == {}
    db.put([("b", [Generation("나", "나", 1, -1.0, "eos")])])  # quietly nothing
    (message,) = said
    assert "is damaged" in message and "goes on without it" in message
    assert list(tmp_path.glob("results.sqlite.damaged-*"))


# ---------------------------------------------------------------- unwritable caches


def _limited(monkeypatch, pragma: str) -> None:
    real = cache._connect

    def connect(path, readonly):
        db = real(path, readonly)
        db.execute(pragma)
        return db

    monkeypatch.setattr(cache, "_connect", connect)


def test_a_full_disk_for_the_cache_is_a_warning_and_later_runs_are_unaffected(
    write_task, tmp_path, cache_dir, backend, monkeypatch, capsys
) -> None:
    path = write_task(**TASK)
    cache_dir.mkdir()
    ResultCache(cache_dir / "results.sqlite").close()
    with monkeypatch.context() as patch:
        # no page beyond those it has: SQLite's own "database or disk is full"
        _limited(patch, "PRAGMA max_page_count = 1")
        assert run(path, tmp_path / "a") == 0
    (line,) = warnings(capsys.readouterr().err)
    assert "cannot write the result cache" in line and "full" in line
    assert len(samples(tmp_path / "a")) == 4 * 2 * (1 + 3)

    assert run(path, tmp_path / "b") == 0  # space again: stores everything
    assert warnings(capsys.readouterr().err) == []
    backend.calls.clear()
    assert run(path, tmp_path / "c") == 0
    assert generated(backend) == 0
    assert samples(tmp_path / "a") == samples(tmp_path / "c")


def test_a_read_only_cache_is_still_read(
    write_task, tmp_path, cache_dir, backend, monkeypatch, capsys
) -> None:
    path = write_task(**TASK)
    assert run(path, tmp_path / "a") == 0
    backend.calls.clear()
    capsys.readouterr()
    _limited(monkeypatch, "PRAGMA query_only = 1")  # as SQLite sees a read-only file
    assert run(path, tmp_path / "b", "--shots", "0,1,2") == 0
    assert generated(backend) == 4 * 2  # only the new 2-shot prompts
    (line,) = warnings(capsys.readouterr().err)
    assert "cannot write the result cache" in line and "readonly" in line


def test_a_cache_that_cannot_even_be_made_means_a_run_without_one(
    write_task, tmp_path, cache_dir, backend, monkeypatch, capsys
) -> None:
    _limited(monkeypatch, "PRAGMA max_page_count = 1")  # a full disk before the first run
    assert run(write_task(**TASK), tmp_path / "a") == 0
    (line,) = warnings(capsys.readouterr().err)
    assert "cannot open the result cache" in line and "running without it" in line
    assert len(samples(tmp_path / "a")) == 4 * 2 * (1 + 3)
