"""Issue 24: model chat templates, empty prompts, the Python API, one model shared by
threads, compare, few-shot drawing, null answers and NaN log-probabilities.

Each case is what a careless user or a hostile model folder does; each ends in one line
naming what to fix (a HarnessError in Python), or is now right where it was silently
wrong.
"""

from __future__ import annotations

import json
import math
import threading
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

import harness
import harness.tasks.spec
from harness import cli
from harness.reports import compare
from harness.tasks.prompts import Examples
from tests.conftest import BASE_TASK, EMOTION_ROWS, KOREAN_SENTENCES, FakeBackend
from tests.tiny_models import CHAT_TEMPLATE, chat_model


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def preview(capsys, task: Path, *extra: str) -> tuple[int, str]:
    code = cli.main(["preview", str(task), "--raw", "--shots", "0", *extra])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- model chat templates

LOOPS = ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
         + CHAT_TEMPLATE)
HUGE = "{% for a in range(100000) %}{{ 'x' * 100000 }}{% endfor %}" + CHAT_TEMPLATE
DROPS_SYSTEM = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] != 'system' %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.mark.parametrize(("template", "expected"), [
    (LOOPS, "its chat template: template stopped: rendering took longer than 2 s"),
    (HUGE, "its chat template: template stopped: it renders more than 1,000,000 characters"),
    ("{% if false %}{% endif %}", "its chat template renders nothing for a prompt"),
])
def test_a_hostile_model_chat_template_is_one_line_in_bounded_time_and_memory(
    write_task, tmp_path, capsys, template, expected
) -> None:
    from harness.engines.models import load_tokenizer
    from harness.tasks.chat import render

    folder = chat_model(tmp_path / "model", template=template)
    tokenizer = load_tokenizer(str(folder))
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(harness.HarnessError) as caught:
        render(tokenizer, [{"role": "user", "content": "문장: 좋아요"}], str(folder))
    took = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(caught.value).startswith(f"--model {folder}: {expected}")
    assert took < 10 and peak < 100 * 2**20
    # and from the command line, one line and exit 2
    code, err = preview(capsys, write_task(), "--chat", "--model", str(folder))
    assert code == 2 and one_line(err).startswith(f"harness: error: --model {folder}: {expected}")


def test_a_template_that_drops_the_system_turn_gets_the_instruction_in_the_first_user_turn(
    write_task, tmp_path, capsys
) -> None:
    folder = chat_model(tmp_path / "drops", template=DROPS_SYSTEM)
    assert cli.main(["preview", str(write_task()), "--raw", "--shots", "0", "--chat",
                     "--model", str(folder)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("<s><|user|>\n감정을 고르세요.\n\n문장: ")


def test_the_bounded_render_is_transformers_render(tmp_path) -> None:
    from harness.engines.models import load_tokenizer
    from harness.tasks.chat import render

    template = ("{% for m in messages %}{% if loop.index0 == 5 %}{% break %}{% endif %}"
                "{% generation %}{{ m | tojson }}{% endgeneration %}\n  {% endfor %}"
                "{{ eos_token }}{% if add_generation_prompt %}>>{% endif %}")
    folder = chat_model(tmp_path / "model", template=template)
    tokenizer = load_tokenizer(str(folder))
    turns = [{"role": "system", "content": "감정을 고르세요."},
             {"role": "user", "content": "문장: \"따옴표\"\n감정:"}]
    assert render(tokenizer, turns, "m") == tokenizer.apply_chat_template(
        turns, tokenize=False, add_generation_prompt=True)


# ---------------------------------------------------------------- empty prompts


@pytest.mark.parametrize("chat", [[], ["--chat"]])
def test_a_query_that_renders_nothing_is_one_line(write_task, tmp_path, capsys, chat) -> None:
    rows = [{"text": "", "label": "기쁨"}, *EMOTION_ROWS[1:]]
    task = write_task(rows=rows, shots=[0], prompt={"query": "{{ text }}"})
    folder = chat_model(tmp_path / "model")
    code, err = preview(capsys, task, "--model", str(folder), *chat)
    assert code == 2
    assert one_line(err) == (
        f"harness: error: {task}: prompt.query renders nothing for data item 1, so the item "
        "would not be in its prompt; check the template and the item's columns")


def test_a_prompt_of_no_tokens_is_one_line_from_the_backend(hf_loaded) -> None:
    from harness.engines.contract import Options
    from harness.engines.hf.backend import HFBackend
    from harness.tasks.decoding import expand

    backend = HFBackend(hf_loaded)
    setting = expand(harness.tasks.spec.Task.model_validate(
        {**BASE_TASK, "data": EMOTION_ROWS}).decoding, None)[0]
    with pytest.raises(harness.HarnessError, match="a prompt gives the model no tokens"):
        backend.generate(["", "문장:"], setting, [None, None], Options(4, (), ()))


# ---------------------------------------------------------------- the Python API


@pytest.fixture
def fake_model(fake_backend: FakeBackend) -> harness.Model:
    fake_backend.respond = lambda prompt, setting, seed, index: "기쁨"
    return harness.Model(fake_backend, "fake")


@pytest.mark.parametrize(("cell", "expected"), [
    (__import__("numpy").array([1, 2]), "holds a numpy.ndarray"),
    (b"\xff\xfe\xfa", "holds bytes, not text (decode them first, e.g. value.decode('cp949'))"),
    (pd.Period("2026-12", freq="M"), "holds a pandas.Period"),
    ("\udcff", "holds text that is not valid Unicode (a byte that did not decode)"),
])
def test_a_dataframe_cell_json_cannot_hold_is_refused_before_generation(
    tmp_path, fake_model, cell, expected
) -> None:
    frame = pd.DataFrame({"text": ["가", None], "label": ["기쁨", "슬픔"]}, dtype=object)
    frame.at[1, "text"] = cell
    with pytest.raises(harness.HarnessError) as caught:
        harness.run({**BASE_TASK, "data": frame, "shots": [0]}, model=fake_model, out=tmp_path)
    assert str(caught.value) == (f"<dict>: data: item 2, column 'text' {expected}; give text, "
                                 "numbers, or lists and mappings of them")
    assert fake_model.backend.calls == [] and not list(tmp_path.iterdir())


@pytest.mark.parametrize(("options", "expected"), [
    ({"out": None}, "out: expected a folder's path, got None"),
    ({"out": 123}, "out: expected a folder's path, got 123"),
    ({"resume": 123}, "resume: expected True or a run folder, got 123"),
])
def test_path_options_of_the_wrong_type_are_one_line(write_task, fake_model, options,
                                                     expected) -> None:
    with pytest.raises(harness.HarnessError) as caught:
        harness.run(write_task(), model=fake_model, **options)
    assert str(caught.value) == expected


def test_load_none_is_one_line() -> None:
    with pytest.raises(harness.HarnessError) as caught:
        harness.load(None)  # type: ignore[arg-type]
    assert str(caught.value) == "run_dir: expected a folder's path, got None"


@pytest.mark.parametrize(("options", "expected"), [
    ({"epochs": "3"}, "fine_tune: epochs expected an int, got '3'"),
    ({"lr": "1e-4"}, "fine_tune: lr expected a float, got '1e-4'"),
    ({"force": 1}, "fine_tune: force expected a bool, got 1"),
    ({"epochs": True}, "fine_tune: epochs expected an int, got True"),
])
def test_fine_tune_options_of_the_wrong_type_are_one_line(tmp_path, options, expected) -> None:
    with pytest.raises(harness.HarnessError) as caught:
        harness.fine_tune(tmp_path / "pairs.csv", tmp_path / "out", **options)
    assert str(caught.value) == expected


def test_a_dict_task_stopped_part_way_says_how_to_resume_in_python(
    tmp_path, fake_model, monkeypatch
) -> None:
    from harness.runs import runner

    real = runner.run
    task = {**BASE_TASK, "data": EMOTION_ROWS * 30, "shots": [0]}

    def full_disk(spec, requests, backend, options, samples, *rest, **named):
        # the first batch is written, then the disk is full
        batches = rest[-1]
        real(spec, batches[0], backend, options, samples, *rest[:-1], batches[:1], **named)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "run", full_disk)
    fake_model.backend.rows = 8
    with pytest.raises(harness.HarnessError) as caught:
        harness.run(task, model=fake_model, out=tmp_path)
    message = str(caught.value)
    (run_dir,) = list(tmp_path.iterdir())
    assert message == (f"{run_dir}: cannot write the run (No space left on device); the 8 "
                       "outputs finished so far are kept there: free some space, then resume "
                       f'with: harness.run(task, resume="{run_dir}")')


def test_chat_turns_with_a_model_object_use_that_models_template(
    tmp_path, write_task
) -> None:
    folder = chat_model(tmp_path / "chat")
    model = harness.load_model(folder, backend="hf")
    other = chat_model(tmp_path / "other", template="[[{{ messages[-1]['content'] }}]]")
    for named in (None, str(other)):  # no model field; a model field naming another folder
        task = write_task(chat="turns", shots=[0], **({"model": named} if named else {}))
        run = harness.run(task, model=model, out=tmp_path / "r", limit=1, cache=False)
        assert run.samples.prompt[0].startswith("<s><|system|>\n감정을 고르세요.<|end|>\n")


# ---------------------------------------------------------------- one model, two threads


def test_two_threads_on_one_loaded_model_give_the_sequential_outputs(
    tmp_path, write_task, hf_model_dir
) -> None:
    rows = [{"text": s, "label": ["기쁨", "슬픔", "분노", "중립"][i % 4]}
            for i, s in enumerate(KOREAN_SENTENCES[:12])]
    tasks = [write_task(rows=rows, name=f"t{i}.yaml", shots=[0, 1],
                        decoding={"presets": [preset], "max_new_tokens": 6},
                        scoring="both")
             for i, preset in enumerate(("greedy", "top_k_top_p_3"))]
    model = harness.load_model(hf_model_dir, backend="hf")

    def outputs(run: harness.Run) -> list[tuple]:
        return sorted((r["setting"], r["item"], r["shots"], r["sequence"], r["output"],
                       r["mean_logprob"]) for r in run.records)

    alone = [outputs(harness.run(t, model=model, out=tmp_path / "alone", cache=False))
             for t in tasks]
    together: list[list[tuple] | BaseException] = [[], []]

    def work(i: int) -> None:
        try:
            together[i] = outputs(harness.run(tasks[i], model=model,
                                              out=tmp_path / f"thread{i}", cache=False))
        except BaseException as exc:  # noqa: BLE001 - shown by the assert below
            together[i] = exc

    for _ in range(2):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert together == alone


# ---------------------------------------------------------------- compare


def finished_run(tmp_path: Path, fake_model, rows, name: str) -> Path:
    task = {**BASE_TASK, "data": rows, "shots": [0]}
    return harness.run(task, model=fake_model, out=tmp_path / name, cache=False).run_dir


def test_compare_pairs_items_by_content_and_says_how_many_matched(
    tmp_path, fake_model, capsys
) -> None:
    fake_model.backend.respond = lambda prompt, setting, seed, index: (
        "기쁨" if "합격" in prompt or "고양이" in prompt else "분노")
    first = finished_run(tmp_path, fake_model, EMOTION_ROWS, "a")
    changed = [*EMOTION_ROWS[::-1][:3], {"text": "새로운 문장이에요.", "label": "중립"}]
    second = finished_run(tmp_path, fake_model, changed, "b")
    capsys.readouterr()
    page = compare.compare([first, second], tmp_path / "cmp")
    err = capsys.readouterr().err
    assert "compare: 3 of B's 4 items match one of A's 4 by content" in err
    assert "note: compare: items whose fields or references differ between A and B are " \
           "left out" in err
    rows = list(__import__("csv").reader((page.parent / "compare.csv").open(encoding="utf-8-sig")))
    accuracy = next(r for r in rows if r[2] == "accuracy")
    # A and B answer the three shared items alike: no change, though B's rows are reversed
    assert float(accuracy[3]) == float(accuracy[6]) and float(accuracy[9]) == 0.0


def test_a_nan_logprob_leaves_the_cell_and_compare_writes_no_nan(tmp_path, fake_model) -> None:
    from harness.engines.contract import Generation

    fake_model.backend.respond = lambda prompt, setting, seed, index: Generation(
        "기쁨", "기쁨", 1, math.nan if "합격" in prompt else -2.0, "eos")
    first = finished_run(tmp_path, fake_model, EMOTION_ROWS, "a")
    run = harness.load(first)
    row = run.summary.iloc[0]
    assert row["logprob"] == pytest.approx(-2.0)
    fake_model.backend.respond = lambda prompt, setting, seed, index: Generation(
        "기쁨", "기쁨", 1, math.nan, "eos")
    second = finished_run(tmp_path, fake_model, EMOTION_ROWS, "b")
    page = compare.compare([first, second], tmp_path / "cmp")
    text = (page.parent / "compare.csv").read_text(encoding="utf-8-sig")
    assert "nan" not in text.lower()
    logprob = next(line for line in text.splitlines() if ",logprob," in line).split(",")
    assert logprob[3] == "-2.0" and logprob[6] == "" and logprob[9:15] == [""] * 6


# ---------------------------------------------------------------- few-shot, null answers


def test_a_row_with_nan_cells_is_never_its_own_example() -> None:
    pool = [{"text": f"문장 {i}", "score": math.nan} for i in range(4)]
    examples = Examples("t", pool)
    for index, item in enumerate(pool):
        copy = {"text": item["text"], "score": float("nan")}  # another NaN object
        assert index not in examples.draw(index, copy, 3)


def test_parquet_data_as_its_own_pool_never_shows_an_item_its_answer(tmp_path, write_yaml) -> None:
    from harness.runs.pipeline import prepare

    pd.DataFrame({"text": [r["text"] for r in EMOTION_ROWS], "label": [r["label"] for r in EMOTION_ROWS],
                  "score": [math.nan] * 4}).to_parquet(tmp_path / "items.parquet")
    task = write_yaml("name: nan\nkind: classification\ndata: items.parquet\n"
                      "fewshot: items.parquet\nshots: [3]\nprompt:\n"
                      "  example: '{{ text }} => {{ label }}'\n  query: '{{ text }} =>'\n"
                      "target: '{{ label }}'\nlabels: [기쁨, 슬픔, 분노, 중립]\n")
    for prompt in prepare(task).prompts:
        query = EMOTION_ROWS[prompt.item]["text"]
        assert prompt.text.count(query) == 1


@pytest.mark.parametrize("source", ["jsonl", "parquet"])
def test_a_null_answer_is_refused_not_the_text_none(tmp_path, write_yaml, capsys, source) -> None:
    rows = [{"question": "한국의 수도는?", "answer": "서울"}, {"question": "일 년은?", "answer": None}]
    if source == "jsonl":
        (tmp_path / "qa.jsonl").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(tmp_path / f"qa.{source}")
    task = write_yaml(f"name: qa\nkind: qa\ndata: qa.{source}\nshots: [0]\nprompt:\n"
                      "  query: '{{ question }}'\ntarget: '{{ answer }}'\n")
    assert cli.main(["validate", str(task)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"harness: error: {task}: data item 2 has no answer: its column 'answer' is null; "
        "fill it in or leave the row out")


# ---------------------------------------------------------------- Hangul in JSON


def test_run_json_and_the_json_files_write_hangul_as_text(tmp_path, fake_model, write_task) -> None:
    run = harness.run(write_task(), model=fake_model, out=tmp_path)
    written = [p for p in run.run_dir.iterdir() if p.suffix in (".json", ".jsonl")]
    assert {p.name for p in written} >= {"run.json", "samples.jsonl"}
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert "\\u" not in text and "감정" in text, path.name
