"""Prompts longer than the model's context are found before any generation: refused in
one line that names them, or cut from the left where the task says so.

The tiny GPT-2 of the fixtures has 128 positions; past them it cannot run at all.
"""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.tasks.prompts import Prompt
from tests.conftest import EMOTION_ROWS, KOREAN_SENTENCES

LONG = " ".join(KOREAN_SENTENCES[:12])  # about 150 tokens of the tiny vocabulary
ROWS = [*EMOTION_ROWS[:2], {"text": LONG, "label": "중립"}, *EMOTION_ROWS[2:]]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("harness:")]
    return line


def test_run_refuses_prompts_past_the_context_and_names_them(write_task, hf_model_dir,
                                                             tmp_path, capsys) -> None:
    task = write_task(rows=ROWS, shots=[0])
    out = tmp_path / "reports"
    assert main(["run", str(task), "--model", str(hf_model_dir), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith("harness: error: ")
    assert "item 3 (0 shots" in line and "128 tokens" in line and "too_long: cut_left" in line
    assert not list(out.glob("*/samples.jsonl"))  # refused before any generation


def test_validate_with_a_model_finds_them_without_loading_weights(write_task, hf_model_dir,
                                                                  capsys, monkeypatch) -> None:
    from harness.engines import models

    def no_weights(*args, **kwargs):
        raise AssertionError("validate loaded the model")

    monkeypatch.setattr(models, "load_model", no_weights)
    task = write_task(rows=ROWS, shots=[0])
    assert main(["validate", str(task)]) == 0  # without --model: nothing to count against
    capsys.readouterr()
    assert main(["validate", str(task), "--model", str(hf_model_dir)]) == 2
    assert "item 3 (0 shots" in error_line(capsys)


def test_cut_left_cuts_the_start_of_long_prompts_and_says_so(write_task, hf_model_dir,
                                                             hf_loaded, tmp_path, capsys) -> None:
    task = write_task(rows=ROWS, shots=[0], too_long="cut_left",
                      decoding={"presets": ["greedy"], "max_new_tokens": 8})
    out = tmp_path / "reports"
    assert main(["validate", str(task), "--model", str(hf_model_dir)]) == 0
    assert "item 3 (0 shots) is cut from the left" in capsys.readouterr().out
    assert main(["run", str(task), "--model", str(hf_model_dir), "--out", str(out),
                 "--no-cache"]) == 0
    assert "cut item 3 (0 shots) from the left" in capsys.readouterr().err
    (run_dir,) = out.iterdir()
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    (cut,) = run["cut_prompts"]
    assert cut["item"] == 3 and cut["tokens"] > 128 and cut["kept"] + 8 <= 128
    samples = [json.loads(line) for line in
               (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    prompt = next(s["prompt"] for s in samples if s["item"] == 2)
    full = "감정을 고르세요.\n문장: " + LONG + "\n감정:"
    assert full.endswith(prompt) and len(prompt) == len(full) - cut["characters_cut"]
    assert prompt.endswith(LONG[-20:] + "\n감정:")  # the end, where the answer follows, stays
    assert len(hf_loaded.tokenizer(prompt)["input_ids"]) == cut["kept"]
    assert "cut from the left" in (run_dir / "index.html").read_text(encoding="utf-8")
    # the other prompts are untouched
    assert next(s["prompt"] for s in samples if s["item"] == 0).startswith("감정을 고르세요.")


def _prompt(text: str, item: int = 0) -> Prompt:
    return Prompt(item, 0, text, [], [])


def count_words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def test_a_cut_keeps_the_most_it_can_and_starts_at_a_word() -> None:
    from harness.tasks.context import fit

    prompts = [_prompt("하나 둘 셋 넷 다섯 여섯 일곱"), _prompt("짧은 글", 1)]
    made, cuts = fit(prompts, count_words, limit=6, room=2, cut=True, where="t.yaml")
    assert made[0].text == "넷 다섯 여섯 일곱"  # 4 words + 2 free = the limit
    assert made[1] is prompts[1] and [c.item for c in cuts] == [0]
    assert (cuts[0].tokens, cuts[0].kept) == (7, 4)


def test_without_room_for_any_prompt_even_a_cut_is_refused() -> None:
    from harness.tasks.context import fit

    with pytest.raises(HarnessError, match="lower max_new_tokens"):
        fit([_prompt("하나 둘")], count_words, limit=4, room=4, cut=True, where="t.yaml")
    assert fit([_prompt("하나 둘")], count_words, limit=None, room=10**6, cut=False,
               where="t.yaml")[1] == []
