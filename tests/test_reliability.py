"""Issue 4: bad input is one line and exit code 2; runs survive interruption; the cache."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from harness import cli
from harness.engines.contract import Generation, Options
from harness.engines.hf.backend import HFBackend
from harness.runs.cache import ResultCache, request_key
from tests.conftest import EMOTION_ROWS, write_csv

# ---------------------------------------------------------------- bad input


def _replace(old: str, new: str):
    def edit(path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text, text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def _data(rows=None, raw: bytes | None = None):
    def edit(path: Path) -> None:
        data = path.parent / "data.csv"
        if raw is not None:
            data.write_bytes(raw)
        else:
            write_csv(data, rows)

    return edit


def _jsonl(rows):
    def edit(path: Path) -> None:
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        (path.parent / "data.jsonl").write_text("\n".join(lines), encoding="utf-8")
        _replace("data: data.csv", "data: data.jsonl")(path)

    return edit


BAD_INPUTS = {
    "yaml syntax": (_replace("shots:\n- 0\n- 1", "shots: [0, 1"), ["task.yaml:", "YAML"]),
    "duplicate key": (_replace("kind: classification", "kind: classification\nkind: qa"),
                      ["duplicate key 'kind'", "task.yaml:"]),
    "unknown key": (_replace("labels:", "lables:"), ["unknown key 'lables'", "did you mean 'labels'"]),
    "wrong type": (_replace("max_new_tokens: 4", "max_new_tokens: lots"),
                   ["decoding.max_new_tokens"]),
    "out of range": (_replace("max_new_tokens: 4", "max_new_tokens: 0"),
                     ["decoding.max_new_tokens"]),
    "missing field": (_replace("kind: classification\n", ""), ["kind", "required"]),
    "template syntax": (_replace("'문장: {{ text }}\n\n    감정:'", "'문장: {{ text }\n\n    감정:'"),
                        ["prompt.query", "line 1"]),
    "missing column": (_data([{"sentence": "좋아요", "label": "기쁨"}]),
                       ["uses text", "data item 1", "columns label, sentence"]),
    "column missing from one row": (_jsonl([{"text": "좋아요", "label": "기쁨"}, {"label": "분노"}]),
                                    ["uses text", "data item 2", "columns label"]),
    "missing data file": (_replace("data: data.csv", "data: nowhere.csv"), ["nowhere.csv", "not found"]),
    "empty data file": (_data(raw=b""), ["data.csv", "no items"]),
    "unreadable data": (_data(raw=b"text,label\n\xff\xfe\xfa\x80\x81,x\n"), ["data.csv", "UTF-8"]),
    "shots above the pool": (_replace("- 1\n", "- 9\n"), ["shots asks for 9"]),
    "unknown preset": (_replace("- greedy", "- gredy"), ["unknown preset 'gredy'", "greedy"]),
    "unknown generate argument": (
        _replace("presets:\n  - greedy", "configs:\n    mine: {beams: 3}"),
        ["unknown generate() argument 'beams'"]),
    "temperature zero": (_replace("presets:\n  - greedy",
                                  "configs:\n    hot: {do_sample: true, temperature: 0}"),
                         ["temperature"]),
    "top_p above one": (_replace("presets:\n  - greedy",
                                 "configs:\n    wide: {do_sample: true, top_p: 1.5}"), ["top_p"]),
    "more sequences than beams": (
        _replace("presets:\n  - greedy", "configs:\n    few: {num_beams: 2, num_return_sequences: 3}"),
        ["num_return_sequences"]),
    "negative ngram": (_replace("presets:\n  - greedy",
                                "configs:\n    neg: {no_repeat_ngram_size: -1}"),
                       ["no_repeat_ngram_size"]),
    "temperature without sampling": (
        _replace("presets:\n  - greedy", "configs:\n    cold: {temperature: 0.5}"), ["do_sample"]),
    "label outside labels": (_data([{"text": "무서워요", "label": "공포"}, *EMOTION_ROWS]),
                             ["공포", "labels"]),
    "name escaping the reports folder": (_replace("name: tiny", "name: ../../etc"), ["name"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_nothing_written(write_task, tmp_path, capsys, case):
    edit, expected = BAD_INPUTS[case]
    path = write_task()
    edit(path)
    out_dir = tmp_path / "reports"

    code = cli.main(["run", str(path), "--model", str(tmp_path / "unused"), "--out", str(out_dir)])

    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("harness: error: ") and "Traceback" not in err
    for part in expected:
        assert part in err, (part, err)
    assert not out_dir.exists()


def test_a_cp949_csv_reads_as_hangul(write_task, tmp_path):
    from harness.tasks.spec import load_task

    path = write_task()
    write_csv(tmp_path / "data.csv", EMOTION_ROWS, encoding="cp949")
    assert load_task(path).items == EMOTION_ROWS


@pytest.mark.parametrize("what", ["missing", "not a model"])
def test_a_model_path_that_is_not_a_model(write_task, tmp_path, capsys, what):
    model = tmp_path / "model"
    if what == "not a model":
        model.mkdir()
        (model / "notes.txt").write_text("hello", encoding="utf-8")
    code = cli.main(["run", str(write_task()), "--model", str(model), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("harness: error:") == 1
    assert str(model) in err
    assert not list((tmp_path / "r").glob("tiny-*"))


def test_an_output_folder_under_a_file(write_task, tmp_path, capsys, kogpt2_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    code = cli.main(["run", str(write_task()), "--model", str(kogpt2_dir), "--out", str(blocker / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the report" in err and err.count("harness: error") == 1


# ---------------------------------------------------------------- interruption and resume


def _samples(run_dir: Path) -> list[dict]:
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _canonical(records: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)


TASK = {"shots": [0, 1], "decoding": {"presets": ["greedy", "beam_5_sequences"], "max_new_tokens": 4}}


def _run(path: Path, out: Path, model: Path, *extra: str) -> int:
    return cli.main(["run", str(path), "--model", str(model), "--out", str(out), "--device", "cpu",
                     *extra])


def test_a_run_cut_short_resumes_to_the_same_report(write_task, tmp_path, kogpt2_dir):
    path = write_task(**TASK)
    assert _run(path, tmp_path / "whole", kogpt2_dir, "--no-cache") == 0
    whole = next((tmp_path / "whole").iterdir())

    assert _run(path, tmp_path / "cut", kogpt2_dir, "--no-cache") == 0
    cut = next((tmp_path / "cut").iterdir())
    lines = (cut / "samples.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    # SIGKILL at an arbitrary moment: some requests whole, one half-written line, part
    # of a 5-sequence request, and no report yet.
    kept = lines[:11] + [lines[11][:25]]
    (cut / "samples.jsonl").write_text("".join(kept), encoding="utf-8")
    for name in ("index.html", "results.csv"):
        (cut / name).unlink()

    assert _run(path, tmp_path / "cut", kogpt2_dir, "--no-cache", "--resume") == 0

    assert _canonical(_samples(cut)) == _canonical(_samples(whole))
    assert (cut / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    run = json.loads((cut / "run.json").read_text(encoding="utf-8"))
    assert run["timings"]["resumed_outputs"] == 8  # 8 greedy + nothing of the partial beam


def test_ctrl_c_keeps_finished_work_and_says_how_to_resume(
    write_task, tmp_path, kogpt2_dir, capsys, monkeypatch
):
    path = write_task(**TASK)
    real = HFBackend.generate
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "generate", interrupted)
    assert _run(path, tmp_path / "r", kogpt2_dir, "--no-cache") == 130
    run_dir = next((tmp_path / "r").iterdir())
    err = capsys.readouterr().err
    assert f"--resume {run_dir}" in err and "Traceback" not in err
    assert len(_samples(run_dir)) == 8  # the first batch: 8 greedy outputs

    monkeypatch.setattr(HFBackend, "generate", real)
    assert _run(path, tmp_path / "r", kogpt2_dir, "--no-cache", "--resume", str(run_dir)) == 0
    records = _samples(run_dir)
    assert len(records) == 8 + 8 * 5
    assert len({(r["setting"], r["item"], r["shots"], r["sequence"]) for r in records}) == len(records)


def test_resume_refuses_a_run_of_other_options(write_task, tmp_path, kogpt2_dir, capsys):
    path = write_task(**TASK)
    assert _run(path, tmp_path / "r", kogpt2_dir, "--no-cache") == 0
    run_dir = next((tmp_path / "r").iterdir())
    before = (run_dir / "samples.jsonl").read_bytes()
    code = _run(path, tmp_path / "r", kogpt2_dir, "--resume", str(run_dir), "--shots", "0")
    assert code == 2 and "another task file" in capsys.readouterr().err
    assert (run_dir / "samples.jsonl").read_bytes() == before


# ---------------------------------------------------------------- the result cache


def _count_generations(monkeypatch) -> list[int]:
    real = HFBackend.generate
    counted: list[int] = []

    def counting(self, prompts, *args, **kwargs):
        counted.append(len(prompts))
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "generate", counting)
    return counted


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def test_a_second_identical_run_generates_nothing(
    write_task, tmp_path, kogpt2_dir, monkeypatch, empty_cache
):
    path = write_task(**TASK)
    counted = _count_generations(monkeypatch)
    assert _run(path, tmp_path / "a", kogpt2_dir) == 0
    assert sum(counted) == 16  # 8 prompts x 2 settings
    counted.clear()
    assert _run(path, tmp_path / "b", kogpt2_dir) == 0
    assert counted == []
    first, second = (next((tmp_path / d).iterdir()) for d in "ab")
    assert _canonical(_samples(first)) == _canonical(_samples(second))

    assert _run(path, tmp_path / "c", kogpt2_dir, "--no-cache") == 0
    assert sum(counted) == 16


def test_changing_one_part_of_the_key_regenerates_only_what_it_affects(
    write_task, tmp_path, kogpt2_dir, monkeypatch, empty_cache
):
    counted = _count_generations(monkeypatch)
    assert _run(write_task(**TASK), tmp_path / "a", kogpt2_dir) == 0
    counted.clear()
    # one more shot count: only the 2-shot prompts are new
    assert _run(write_task(shots=[0, 1, 2], decoding=TASK["decoding"]), tmp_path / "b", kogpt2_dir) == 0
    assert sum(counted) == 4 * 2  # 4 items x 2 settings, at 2 shots
    counted.clear()
    # another max_new_tokens changes every request
    changed = {**TASK, "decoding": {**TASK["decoding"], "max_new_tokens": 3}}
    assert _run(write_task(**changed), tmp_path / "c", kogpt2_dir) == 0
    assert sum(counted) == 16


def test_the_model_fingerprint_is_in_the_key(tmp_path):
    options = Options(8, ("\n",))
    a = request_key("model-a", "프롬프트", {"num_beams": 5}, options, None)
    assert a == request_key("model-a", "프롬프트", {"num_beams": 5}, options, None)
    assert a != request_key("model-b", "프롬프트", {"num_beams": 5}, options, None)
    assert a != request_key("model-a", "프롬프트 ", {"num_beams": 5}, options, None)
    assert a != request_key("model-a", "프롬프트", {"num_beams": 4}, options, None)
    assert a != request_key("model-a", "프롬프트", {"num_beams": 5}, Options(8, ("\n", ".")), None)
    assert a != request_key("model-a", "프롬프트", {"num_beams": 5}, options, 1)


def _writer(path: str, worker: int) -> None:
    cache = ResultCache(Path(path))
    for batch in range(20):
        items = [
            (f"{worker}-{batch}-{i}", [Generation(f"답 {worker} {batch} {i}", "", 3, -1.0, "eos")])
            for i in range(10)
        ]
        cache.put(items)
    cache.close()


def test_two_processes_can_fill_the_cache_at_once(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultCache(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    keys = [f"{w}-{b}-{i}" for w in range(3) for b in range(20) for i in range(10)]
    found = ResultCache(path).get(keys)
    assert len(found) == 600
    assert found["2-19-9"][0].text == "답 2 19 9"
