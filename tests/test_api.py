"""Tests for the Python API (``import harness``): runs, tables, loaded models, tasks
given as dicts or YAML text, and mistakes as HarnessError with the command line's line."""

from __future__ import annotations

import csv
import math
import numbers
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness import cli
from harness.scoring.metrics import METRICS
from tests.conftest import BASE_TASK, EMOTION_ROWS, FakeBackend

EMOTION = cli.TASKS_DIR / "emotion.yaml"

# The columns users index by; renaming one breaks their notebooks.
SAMPLE_COLUMNS = [
    "task", "item", "shots", "setting", "seed", "sequence", "output", "reference",
    "references", "predicted", "correct", "invalid", "acc_norm", "exact_match", "f1", "contains",
    "repetition", "hangul", "wrong_language", "n_tokens", "mean_logprob", "stop_reason", "raw_output", "prompt",
]


def csv_cells(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def same_value(value: object, cell: str) -> bool:
    """Whether a table's value is what a CSV cell holds: missing as empty, numbers equal
    as numbers (3 and "3.0" alike), text as it is."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return cell == ""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return cell != "" and float(cell) == float(value)
    return str(value) == cell


def unguarded(text: str) -> str:
    """A results.csv cell without the quote that keeps spreadsheets from running it."""
    return text[1:] if text[:1] == "'" and text[1:2] in ("=", "+", "-", "@", "\t", "\r") else text


def assert_frame_is_csv(frame: pd.DataFrame, path: Path) -> None:
    header, rows = csv_cells(path)
    assert list(frame.columns) == header
    assert len(frame) == len(rows)
    for number, (values, cells) in enumerate(zip(frame.itertuples(index=False), rows)):
        for column, value, cell in zip(header, values, cells):
            assert same_value(value, unguarded(cell)), (path.name, number, column, value, cell)


@pytest.fixture
def fake_model(fake_backend: FakeBackend) -> harness.Model:
    fake_backend.respond = lambda prompt, setting, seed, index: "기쁨"
    return harness.Model(fake_backend, "fake")


def test_a_shipped_task_gives_tables_equal_to_its_csv_files(tmp_path, hf_model_dir) -> None:
    run = harness.run(EMOTION, model=hf_model_dir, limit=2, shots=[0, 1],
                      presets=["greedy", "top_k_top_p_3"], seed=[1, 2], out=tmp_path,
                      device="cpu")

    assert isinstance(run, harness.Run)
    assert run.report_path == run.run_dir / "index.html" and run.report_path.exists()
    assert run.run_dir.parent == tmp_path and run.task == "emotion"
    samples = run.samples
    # 2 items x 2 shot counts: greedy once, 3 sequences per seed, labels ranked once
    assert len(samples) == 2 * 2 * (1 + 2 * 3 + 1)
    assert list(samples.columns) == SAMPLE_COLUMNS
    assert set(samples.setting) == {"greedy", "top_k_top_p_3", "likelihood"}
    assert samples.reference.isin(["기쁨", "슬픔", "분노", "불안", "중립"]).all()
    assert_frame_is_csv(samples, run.run_dir / "results.csv")

    summary = run.summary
    assert list(summary.columns[:7]) == ["setting", "shots", "accuracy", "accuracy_low",
                                         "accuracy_high", "accuracy_mark", "accuracy_p"]
    assert len(summary) == 3 * 2
    assert (summary.n == [2, 2, 12, 12, 2, 2]).all()
    assert_frame_is_csv(summary, run.run_dir / "summary.csv")

    again = harness.load(run.run_dir)  # without a model
    pd.testing.assert_frame_equal(again.samples, samples)
    pd.testing.assert_frame_equal(again.summary, summary)


def test_the_tables_hold_numbers_and_hangul(tmp_path, fake_model, write_task) -> None:
    run = harness.run(write_task(), model=fake_model, out=tmp_path / "reports")
    samples, summary = run.samples, run.summary
    assert samples["item"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert samples.dtypes["shots"].kind == "i" and samples.dtypes["correct"].kind == "f"
    assert samples.seed.isna().all() and str(samples.dtypes["seed"]) == "Int64"
    assert samples.output.tolist() == ["기쁨"] * 8
    assert samples.correct.tolist() == [1.0, 1.0] + [0.0] * 6
    assert summary.accuracy.tolist() == [0.25, 0.25]
    counted = [m.name for m in METRICS if m.count and m.name in summary.columns]
    assert counted and all(str(summary.dtypes[c]) == "Int64" for c in counted)


def test_a_loaded_model_is_reused_and_left_open(tmp_path, fake_model, write_task,
                                                 monkeypatch) -> None:
    from harness.engines import registry as engines

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded although one was given")

    monkeypatch.setattr(engines, "open_backend", no_loading)
    first = harness.run(write_task(), model=fake_model, out=tmp_path / "a", shots=0,
                        cache=False)
    second = harness.run(write_task(), model=fake_model, out=tmp_path / "b", shots=1,
                         cache=False)
    assert not fake_model.backend.closed
    assert len(fake_model.backend.calls) == 2
    assert set(first.samples.shots) == {0} and set(second.samples.shots) == {1}
    with fake_model:
        pass
    assert fake_model.backend.closed


def test_load_model_loads_once_for_several_runs(tmp_path, hf_model_dir, write_task) -> None:
    with harness.load_model(hf_model_dir, device="cpu") as model:
        assert model.describe()["type"] == "gpt2" and "gpt2" in repr(model)
        runs = [harness.run(write_task(), model=model, out=tmp_path, presets=p)
                for p in ("greedy", "beam")]
        assert [set(r.samples.setting) for r in runs] == [{"greedy"}, {"beam"}]
        fingerprints = {r.info["model"]["fingerprint"] for r in runs}
        assert fingerprints == {model.describe()["fingerprint"]}


def test_a_task_as_a_dict_with_a_dataframe(tmp_path, fake_model) -> None:
    frame = pd.DataFrame(EMOTION_ROWS[:3])
    task = {**BASE_TASK, "data": frame, "fewshot": EMOTION_ROWS[3:] + EMOTION_ROWS[:1]}
    run = harness.run(task, model=fake_model, out=tmp_path)
    assert len(run.samples) == 3 * 2
    assert run.samples.prompt[0].endswith("문장: 시험에 합격해서 너무 기뻐요.\n감정:")
    assert run.info["task"]["data"][0] == EMOTION_ROWS[0]
    assert (run.run_dir / "samples.jsonl").exists()


def test_a_translation_summary_keeps_sacrebleus_signature_as_text(tmp_path, fake_backend
                                                                   ) -> None:
    fake_backend.respond = lambda prompt, setting, seed, index: "I am happy."
    rows = [{"ko": "나는 행복하다.", "en": "I am happy."}, {"ko": "비가 온다.", "en": "It rains."}]
    task = {"name": "ko_en", "kind": "translation", "data": rows,
            "prompt": {"query": "{{ ko }} =>"}, "target": "{{ en }}"}
    run = harness.run(task, model=harness.Model(fake_backend, "fake"), out=tmp_path)
    signature = run.summary["bleu_signature"]
    assert str(signature.dtype) == "string" and signature[0].startswith("nrefs:1")
    assert run.summary["bleu"].dtype.kind == "f"
    assert_frame_is_csv(run.summary, run.run_dir / "summary.csv")


def test_a_dataframes_empty_cells_and_numbers(tmp_path, fake_model) -> None:
    frame = pd.DataFrame({"text": ["가", None, "다"], "label": ["기쁨", "슬픔", "분노"],
                          3: [1, 2, 3]})
    task = {**BASE_TASK, "data": frame, "shots": [0],
            "prompt": {"query": "[{{ text }}] {{ label }}"}}
    run = harness.run(task, model=fake_model, out=tmp_path)
    assert run.samples.prompt.tolist() == ["[가] 기쁨", "[] 슬픔", "[다] 분노"]
    assert run.info["task"]["data"][0] == {"text": "가", "label": "기쁨", "3": 1}


def test_a_task_as_yaml_text_with_data_beside_the_working_folder(
    tmp_path, fake_model, monkeypatch
) -> None:
    from tests.conftest import write_csv

    write_csv(tmp_path / "items.csv", EMOTION_ROWS)
    monkeypatch.chdir(tmp_path)
    text = (
        "name: quick\nkind: classification\ndata: items.csv\n"
        "prompt:\n  query: '{{ text }} 감정:'\ntarget: '{{ label }}'\n"
        "labels: [기쁨, 슬픔, 분노, 중립]\n"
    )
    run = harness.run(text, model=fake_model)
    assert run.run_dir.parent == Path("reports") and len(run.samples) == 4
    assert run.samples.prompt[1] == "키우던 강아지가 떠나서 슬퍼요. 감정:"


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("name: x\nkind: classification\npromt: {}\n",
         "<yaml>:3: promt: unknown key 'promt'; did you mean 'prompt'?"),
        ({**BASE_TASK, "data": EMOTION_ROWS, "decoding": {"presets": ["gredy"]}},
         "<dict>: decoding: unknown preset 'gredy'"),
        ({**BASE_TASK, "data": []}, "<dict>: data: no items"),
        (42, "task: expected a task file's path, a dict of its fields or its YAML text"),
    ],
)
def test_a_mistake_in_a_task_given_from_python(fake_model, task, message) -> None:
    with pytest.raises(harness.HarnessError) as caught:
        harness.run(task, model=fake_model)
    assert message in str(caught.value).splitlines()[-1]


@pytest.mark.parametrize(
    ("options", "args"),
    [
        ({"limit": 0}, ["--limit", "0"]),
        ({"presets": "beem"}, ["--presets", "beem"]),
        ({"shots": 9}, ["--shots", "9"]),
        ({"backend": "tgi"}, None),
    ],
)
def test_a_mistake_raises_the_line_the_command_line_prints(
    write_task, tmp_path, capsys, options, args
) -> None:
    path = write_task()
    with pytest.raises(harness.HarnessError) as caught:
        harness.run(path, out=tmp_path, **options)
    if args is not None:
        assert cli.main(["run", str(path), "--out", str(tmp_path), *args]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"harness: error: {caught.value}"
    assert not list(tmp_path.glob("tiny-*"))  # refused before any run folder


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shots": "0,1"}, "shots: expected a whole number or a list of them, got '0,1'"),
        ({"seed": [1.5]}, "seed: expected a whole number"),
        ({"presets": [1]}, "presets: expected a name or a list of names"),
        ({"limit": "2"}, "limit: expected a whole number, got '2'"),
    ],
)
def test_options_of_the_wrong_type_are_refused(write_task, fake_model, options,
                                               message) -> None:
    with pytest.raises(harness.HarnessError, match=message):
        harness.run(write_task(), model=fake_model, **options)


def test_single_values_and_numpy_numbers_are_accepted(write_task, fake_model,
                                                      tmp_path) -> None:
    import numpy as np

    run = harness.run(write_task(), model=fake_model, shots=np.int64(1), seed=7,
                      presets="top_k", out=tmp_path)
    assert set(run.samples.shots) == {1} and set(run.samples.seed) == {7}
    assert set(run.samples.setting) == {"top_k"}


def test_resume_true_finishes_the_newest_run(write_task, fake_model, tmp_path) -> None:
    path = write_task()
    first = harness.run(path, model=fake_model, out=tmp_path)
    calls = len(fake_model.backend.calls)
    again = harness.run(path, model=fake_model, out=tmp_path, resume=True)
    assert again.run_dir == first.run_dir
    assert len(fake_model.backend.calls) == calls  # nothing left to generate
    pd.testing.assert_frame_equal(again.samples, first.samples)


def test_load_refuses_what_is_not_a_run_as_harness_report_does(tmp_path, capsys) -> None:
    with pytest.raises(harness.HarnessError) as caught:
        harness.load(tmp_path / "nowhere")
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"harness: error: {caught.value}"


def test_a_run_shows_its_summary_and_charts_in_jupyter(write_task, fake_model, tmp_path) -> None:
    run = harness.run(write_task(description="작은 감정 분류"), model=fake_model, out=tmp_path)
    page = run._repr_html_()
    assert "<table" in page and page.count("<tr") == 1 + 2  # heading and two rows
    assert "작은 감정 분류" in page and "greedy" in page and "0.250" in page
    assert "<svg" in page and str(run.report_path) in page
    assert repr(run).startswith("<harness run tiny: 8 outputs")


def test_fine_tune_refuses_an_unknown_option(tmp_path) -> None:
    with pytest.raises(harness.HarnessError, match="fine_tune: unknown option 'epoch'"):
        harness.fine_tune(tmp_path / "pairs.csv", tmp_path / "out", epoch=1)


def test_fine_tune_trains_a_model_that_run_loads(tmp_path, hf_model_dir) -> None:
    from tests.conftest import write_csv

    pairs = write_csv(tmp_path / "pairs.csv", [
        {"Q": "오늘 날씨 어때?", "A": "하늘이 맑아요."},
        {"Q": "주말에 뭐 해?", "A": "도서관에 가요."},
        {"Q": "배고파", "A": "김치찌개를 끓여요."},
    ])
    tuned = harness.fine_tune(pairs, tmp_path / "tuned", model=hf_model_dir, epochs=1,
                              val_share=0.0, device="cpu")
    assert tuned.task_query == "<s>{{ Q }}</s><s>"
    task = {"name": "chat", "kind": "generation", "data": [{"Q": "배고파", "A": "밥 먹어요."}],
            "prompt": {"query": tuned.task_query}, "target": "{{ A }}",
            "decoding": {"presets": ["greedy"], "max_new_tokens": 4}}
    run = harness.run(task, model=tuned.out, out=tmp_path, device="cpu")
    assert run.info["model"]["name"] == str(tmp_path / "tuned")
    assert run.samples.prompt.tolist() == ["<s>배고파</s><s>"]


def test_importing_harness_and_validating_leave_pandas_and_torch_unloaded(tmp_path) -> None:
    # validate asks transformers' GenerationConfig whether each setting makes sense; on
    # some transformers versions (5.19, which vLLM's CPU build pins) that loads torch
    script = (
        "import sys, harness; from harness import cli;"
        "print('pandas' in sys.modules, 'torch' in sys.modules, 'openpyxl' in sys.modules);"
        f"code = cli.main(['validate', {str(EMOTION)!r}]);"
        "print(code, 'pandas' in sys.modules, 'openpyxl' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    imported, validated = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    assert imported.split() == ["False", "False", "False"]
    assert validated.split() == ["0", "False", "False"]


def test_ratings_typed_in_python_are_kept_as_an_imported_file(tmp_path: Path) -> None:
    from tests.judged_runs import make_run

    run_dir = make_run(tmp_path, rating={"scale": [1, 2, 3, 4, 5],
                                         "criteria": ["자연스러움", "관련성"]}, shots=(0,))
    run = harness.load(run_dir)
    picked = run.samples.query("item < 2")[["item", "setting", "shots", "seed", "sequence"]]
    picked = picked.sort_values(["setting", "item"])  # beam 0, 1; greedy 0, 1; top_p 0, 1
    scores = picked.assign(자연스러움=[2, 2, 5, 4, 1, 3], 관련성=[1, 3, 4, 4, 1, None],
                           note=["", "", "좋다", "", "", ""])
    rated = harness.rate(run, scores, rater="지수")
    frame = rated.ratings
    assert len(frame) == 11 and set(frame.rater) == {"지수"}  # the empty cell is not a rating
    first = frame.query("item == 0 and setting == 'greedy' and criterion == '자연스러움'")
    assert first.point.tolist() == ["5"] and first.note.tolist() == ["좋다"]
    summary = rated.summary.set_index("setting")
    assert summary.loc["greedy", "human_자연스러움"] == pytest.approx((5 + 4) / 2)
    assert summary.loc["greedy", "human_관련성"] == pytest.approx((4 + 4) / 2)
    # the same rater again replaces; the ratings are where `harness ratings` keeps them
    again = harness.rate(run_dir, [{**scores.iloc[0].to_dict(), "자연스러움": 1}], rater="지수")
    assert again.ratings.query("criterion == '자연스러움'").point.tolist() == ["1"]
    assert (run_dir / "ratings.json").exists() and "지수" in (run_dir / "index.html").read_text(
        encoding="utf-8")
    with pytest.raises(harness.HarnessError, match="not a point of the scale"):
        harness.rate(run, scores.assign(관련성=7), rater="민호")
    with pytest.raises(harness.HarnessError, match="DataFrame or a list"):
        harness.rate(run, "5점", rater="민호")


def test_judge_scores_a_run_with_a_loaded_model(tmp_path: Path) -> None:
    from tests.judged_runs import RUBRIC, make_run

    run_dir = make_run(tmp_path, rating={"scale": [1, 2, 3, 4, 5]}, judge={"rubric": RUBRIC},
                       shots=(0,))
    judge = FakeBackend()
    judge.info = {**judge.info, "name": "fake-judge", "fingerprint": "j" * 64}
    judge.respond = lambda prompt, setting, seed, index: " 5" if "괜찮아" in prompt.split(
        "B의 답:", 1)[1].split("\n", 1)[0] else " 2"
    judged = harness.judge(harness.load(run_dir), model=harness.Model(judge, "fake-judge"))
    column = judged.summary.set_index("setting")["judge"]
    assert column["greedy"] == 5.0 and column["beam"] == 2.0
    assert judged.info["judge"]["model"] == "fake-judge" and not judge.closed
    with pytest.raises(harness.HarnessError, match="no judge"):
        harness.judge(make_run(tmp_path / "plain", shots=(0,)), model="x")
