"""Chat templates: prompts laid out as turns and sent through the tokenizer's template.

The chat models are tiny GPT-2s whose tokenizer carries a template written for these
tests (``tests.tiny_models.chat_model``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.engines.models import load_tokenizer
from tests.conftest import EMOTION_ROWS
from tests.tiny_models import NO_SYSTEM_TEMPLATE, chat_model


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory) -> Path:
    return chat_model(tmp_path_factory.mktemp("chat") / "model")


def expected_turns(task_item: dict, example: dict | None) -> list[dict[str, str]]:
    """The turns of the tiny task (conftest's BASE_TASK) for one item, written out."""
    turns = [{"role": "system", "content": "감정을 고르세요."}]
    if example is not None:
        turns += [{"role": "user", "content": f"문장: {example['text']}\n감정:"},
                  {"role": "assistant", "content": example["label"]}]
    return turns + [{"role": "user", "content": f"문장: {task_item['text']}\n감정:"}]


def raw_preview(capsys, *argv: str) -> str:
    assert main(["preview", *argv, "--raw"]) == 0
    return capsys.readouterr().out


def test_preview_shows_the_templated_turns(write_task, chat_dir, capsys) -> None:
    task = write_task()
    assert main(["preview", str(task), "--chat", "--model", str(chat_dir), "--shots", "1"]) == 0
    shown = capsys.readouterr().out
    assert "chat: turns" in shown and "turns: system, user, assistant, user" in shown
    for marker in ("<|system|>", "<|user|>", "<|assistant|>"):
        assert marker in shown
    assert shown.index("<|system|>") < shown.index("<|assistant|>")


def test_turns_are_the_instruction_the_examples_and_the_query(write_task, chat_dir, capsys,
                                                              tmp_path) -> None:
    task = write_task()
    tokenizer = load_tokenizer(str(chat_dir))
    zero = raw_preview(capsys, str(task), "--chat", "turns", "--model", str(chat_dir),
                       "--shots", "0")
    assert zero == tokenizer.apply_chat_template(
        expected_turns(EMOTION_ROWS[0], None), tokenize=False, add_generation_prompt=True)
    one = raw_preview(capsys, str(task), "--chat", "--model", str(chat_dir), "--shots", "1")
    # the example drawn for item 1 is one of the other rows: find which, then check all
    example = next(row for row in EMOTION_ROWS[1:] if f"문장: {row['text']}" in one)
    assert one == tokenizer.apply_chat_template(
        expected_turns(EMOTION_ROWS[0], example), tokenize=False, add_generation_prompt=True)
    assert one.endswith("<|assistant|>\n")  # the answer starts here


def test_single_is_one_user_turn_of_the_plain_prompt(write_task, chat_dir, capsys) -> None:
    task = write_task()
    plain = raw_preview(capsys, str(task), "--shots", "1")
    single = raw_preview(capsys, str(task), "--chat", "single", "--model", str(chat_dir),
                         "--shots", "1")
    tokenizer = load_tokenizer(str(chat_dir))
    assert single == tokenizer.apply_chat_template(
        [{"role": "user", "content": plain}], tokenize=False, add_generation_prompt=True)


def test_a_templated_prompt_is_tokenized_as_transformers_tokenizes_a_chat(chat_dir) -> None:
    from harness.engines.tokens import prompt_ids

    tokenizer = load_tokenizer(str(chat_dir))
    turns = expected_turns(EMOTION_ROWS[0], EMOTION_ROWS[1])
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.apply_chat_template(turns, tokenize=True, add_generation_prompt=True)
    ids = ids if isinstance(ids, list) else ids["input_ids"]
    assert text.startswith("<s>") and tokenizer(text)["input_ids"][:2] == [0, 0]
    assert prompt_ids(tokenizer, [text]) == [list(ids)]  # one <s>, not two
    # a plain prompt keeps the one <s> the tokenizer adds
    assert prompt_ids(tokenizer, ["문장: 좋아요"])[0][0] == tokenizer.bos_token_id


def test_a_run_with_chat_records_the_template_and_the_templated_prompts(
    write_task, chat_dir, tmp_path, capsys
) -> None:
    from harness.engines.models import template_digest

    task = write_task(chat="turns")
    assert main(["run", str(task), "--model", str(chat_dir), "--out", str(tmp_path / "r"),
                 "--no-cache"]) == 0
    err = capsys.readouterr().err
    assert "note:" not in err
    (run_dir,) = (tmp_path / "r").iterdir()
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["chat"] == "turns" and run["task"]["chat"] == "turns"
    assert run["model"]["chat_template"] == template_digest(load_tokenizer(str(chat_dir)))
    samples = [json.loads(line) for line in
               (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert samples and all(s["prompt"].startswith("<s><|system|>\n감정을 고르세요.<|end|>")
                           and s["prompt"].endswith("<|assistant|>\n") for s in samples)


def test_a_chat_model_run_on_plain_text_gets_one_line_saying_so(
    write_task, chat_dir, tmp_path, capsys
) -> None:
    task = write_task()
    assert main(["run", str(task), "--model", str(chat_dir), "--out", str(tmp_path / "r"),
                 "--no-cache"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "chat template" in notes[0] and "--chat" in notes[0]


def test_preview_of_plain_prompts_on_a_chat_model_says_the_template_is_unused(
    write_task, chat_dir, hf_model_dir, capsys
) -> None:
    task = write_task()
    assert main(["preview", str(task), "--model", str(chat_dir)]) == 0
    shown = capsys.readouterr().out
    assert "<|user|>" not in shown and shown.rstrip().endswith("sends them through it")
    assert main(["preview", str(task), "--model", str(hf_model_dir)]) == 0  # no template
    assert "chat template" not in capsys.readouterr().out


def test_a_model_without_a_chat_template_is_refused_in_one_line(
    write_task, hf_model_dir, tmp_path, capsys
) -> None:
    task = write_task()
    for argv in (["run", str(task), "--chat", "--out", str(tmp_path / "r")],
                 ["preview", str(task), "--chat"],
                 ["validate", str(task), "--chat"]):
        assert main([*argv, "--model", str(hf_model_dir)]) == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if line.startswith("harness:")]
        assert "has no chat template" in line and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_template_that_refuses_a_system_turn_gets_the_instruction_in_the_first_user_turn(
    write_task, tmp_path, capsys
) -> None:
    folder = chat_model(tmp_path / "strict", template=NO_SYSTEM_TEMPLATE)
    text = raw_preview(capsys, str(write_task()), "--chat", "--model", str(folder),
                       "--shots", "0")
    assert "<|system|>" not in text
    assert text.startswith("<s><|user|>\n감정을 고르세요.\n\n문장: ")


def test_chat_turns_needs_a_target_for_the_examples_answers(write_task, chat_dir, capsys
                                                            ) -> None:
    rows = [{"text": r["text"], "label": r["label"]} for r in EMOTION_ROWS]
    task = write_task(rows=rows, kind="generation", target=None, labels=None, shots=[1])
    assert main(["validate", str(task), "--chat", "--model", str(chat_dir)]) == 2
    assert "target" in capsys.readouterr().err
    assert main(["validate", str(task), "--chat", "single", "--model", str(chat_dir)]) == 0


def test_the_shipped_dialogue_task_previews_as_turns(chat_dir, capsys) -> None:
    from harness.cli import TASKS_DIR

    task = TASKS_DIR / "dialogue.yaml"
    assert main(["preview", str(task), "--chat", "--model", str(chat_dir), "--shots", "1"]) == 0
    shown = capsys.readouterr().out
    assert "turns: system, user, assistant, user" in shown
    assert "<|system|>" in shown and "다음은 두 친구 A와 B의 대화입니다." in shown
