"""Reasoning split from the answer: think tags in the text, a server's reasoning field,
a template that opens the thinking in the prompt, and thinking that never ends."""

from __future__ import annotations

import pytest

from harness.engines.contract import Generation
from harness.records import generated, reasoning
from harness.tasks.prompts import Prompt


@pytest.mark.parametrize(("text", "prompt", "field", "answer", "thought", "unfinished"), [
    ("기쁨", "감정:", None, "기쁨", None, False),
    ("<think>합격이니 기쁨</think>\n기쁨", "감정:", None, "기쁨", "합격이니 기쁨", False),
    ("  <think>\n생각\n</think>\n\n슬픔", "", None, "슬픔", "생각", False),
    ("<think>\n\n</think>\n\n중립", "", None, "중립", "", False),  # thinking switched off
    ("생각한다</think>분노", "<|assistant|>\n<think>\n", None, "분노", "생각한다", False),
    ("<think>끝나지 않는 생각", "", None, "", "끝나지 않는 생각", True),
    ("끝나지 않는 생각", "<think>\n", None, "", "끝나지 않는 생각", True),
    ("기쁨", "", "서버가 따로 준 생각", "기쁨", "서버가 따로 준 생각", False),
])
def test_split_keeps_the_answer_apart_from_the_reasoning(
    text: str, prompt: str, field: str | None, answer: str, thought: str | None,
    unfinished: bool
) -> None:
    got = reasoning.split(text, prompt, field)
    assert (got.answer, got.reasoning, got.unfinished) == (answer, thought, unfinished)


def test_a_record_scores_the_answer_and_keeps_the_thinking() -> None:
    from harness.tasks.spec import Task

    task = Task.model_validate({
        "name": "t", "kind": "classification", "data": [{"text": "a", "label": "기쁨"}],
        "prompt": {"query": "{{ text }}"}, "target": "{{ label }}", "labels": ["기쁨", "슬픔"],
    })
    prompt = Prompt(0, 0, "문장: 합격\n감정:", ["기쁨"], [])
    thinking = Generation("<think>슬픔일까? 아니, 기쁨</think> 기쁨", "<think>슬픔일까? 아니, "
                          "기쁨</think> 기쁨", 12, -0.5, "eos")
    record = generated(task, prompt, "greedy", None, 0, thinking)
    assert record["output"] == "기쁨" and record["correct"] == 1.0
    assert record["reasoning"] == "슬픔일까? 아니, 기쁨" and record["reasoning_chars"] == 12
    cut = Generation("<think>슬픔일까", "<think>슬픔일까", 4, -0.5, "length")
    record = generated(task, prompt, "greedy", None, 0, cut)
    assert record["stop_reason"] == "thinking" and record["output"] == ""
    assert record["correct"] == 0.0
    plain = generated(task, prompt, "greedy", None, 0, Generation("기쁨", "기쁨", 1, -0.1, "eos"))
    assert "reasoning" not in plain  # runs without reasoning keep their records as they were


def test_chat_template_arguments_reach_the_template(tmp_path, write_task) -> None:
    """--chat-arg enable_thinking=false (or the task's chat_args) is a variable of a local
    model's chat template, as transformers passes it."""
    from tiny_models import CHAT_TEMPLATE, chat_model

    from harness.runs import pipeline

    template = CHAT_TEMPLATE.replace(
        "<|assistant|>\n{% endif %}",
        "<|assistant|>\n{% if enable_thinking is defined and not enable_thinking %}"
        "<think>\n\n</think>\n\n{% endif %}{% endif %}")
    folder = chat_model(tmp_path / "thinker", template)
    task = write_task(chat="single", chat_args={"enable_thinking": False})
    plan = pipeline.prepare(task, pipeline.Overrides(model=str(folder)))
    assert all(p.text.endswith("<|assistant|>\n<think>\n\n</think>\n\n") for p in plan.prompts)
    plan = pipeline.prepare(task, pipeline.Overrides(model=str(folder),
                                                     chat_args={"enable_thinking": True}))
    assert all(p.text.endswith("<|assistant|>\n") for p in plan.prompts)
