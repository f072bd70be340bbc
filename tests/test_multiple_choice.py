"""The multiple_choice kind: each item's own choices, ranked by log-probability (accuracy,
acc_norm, acc_bytes, macro-F1 over positions) or read from a generated answer."""

from __future__ import annotations

import pytest

from harness.engines.contract import LabelScore
from harness.errors import HarnessError
from harness.records import ranked
from harness.runs import pipeline
from harness.scoring import metrics
from harness.scoring.metrics import parse_choice, score_sample
from harness.scoring.summary import Summary
from harness.tasks.prompts import build_prompts
from harness.tasks.spec import load_task_mapping

ROWS = [
    {"premise": "바닥이 미끄러웠다.", "a": "넘어졌다", "b": "노래했다", "label": 0},
    {"premise": "비가 왔다.", "a": "우산을 폈다", "b": "빵을 구웠다", "label": 0},
    {"premise": "배가 고팠다.", "a": "잠을 잤다", "b": "밥을 먹었다", "label": 1},
]


def task(tmp_path, **fields):
    raw = {"name": "mc", "kind": "multiple_choice", "data": ROWS,
           "prompt": {"query": "{{ premise }} 그래서"}, "choices": "[a, b]",
           "target": "{{ label }}", "scoring": "likelihood"} | fields
    return load_task_mapping(raw, tmp_path / "mc.yaml", tmp_path)


def test_each_item_carries_its_own_choices_and_gold(tmp_path) -> None:
    prompts = build_prompts(task(tmp_path))
    assert [p.choices for p in prompts] == [("넘어졌다", "노래했다"), ("우산을 폈다", "빵을 구웠다"),
                                            ("잠을 잤다", "밥을 먹었다")]
    assert [p.references for p in prompts] == [["넘어졌다"], ["우산을 폈다"], ["밥을 먹었다"]]
    # the target may also be the choice's own text
    by_text = build_prompts(task(tmp_path, target="{{ [a, b][label] }}"))
    assert [p.references for p in by_text] == [p.references for p in prompts]


def test_choices_and_target_mistakes_are_one_line(tmp_path) -> None:
    with pytest.raises(HarnessError, match="needs choices"):
        task(tmp_path, choices=None)
    with pytest.raises(HarnessError, match="choices is only for kind: multiple_choice"):
        load_task_mapping({"name": "q", "kind": "qa", "data": ROWS, "target": "{{ a }}",
                           "prompt": {"query": "{{ premise }}"}, "choices": "[a, b]"},
                          tmp_path / "q.yaml", tmp_path)
    with pytest.raises(HarnessError, match=r"data item 1.*neither one of its choices"):
        build_prompts(task(tmp_path, target="{{ label + 5 }}"))
    with pytest.raises(HarnessError, match="should give a list of texts"):
        build_prompts(task(tmp_path, choices="premise"))
    with pytest.raises(HarnessError, match="missing from data item 1"):
        build_prompts(task(tmp_path, choices="[a, c]"))


def test_runs_rank_each_prompt_s_own_choices(tmp_path, fake_backend) -> None:
    # the fake's log-probability is minus the choice's length: the shorter choice wins
    plan = pipeline.prepare(task(tmp_path))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = pipeline.execute(plan, fake_backend, run_dir)
    assert fake_backend.ranked[0][1] == [["넘어졌다", "노래했다"], ["우산을 폈다", "빵을 구웠다"],
                                         ["잠을 잤다", "밥을 먹었다"]]
    assert [r["predicted"] for r in records] == ["넘어졌다", "우산을 폈다", "잠을 잤다"]
    assert [r["choice_logprobs"] for r in records] == [[-4.0, -4.0], [-6.0, -6.0],
                                                       [-5.0, -6.0]]
    assert [r["correct"] for r in records] == [1.0, 1.0, 0.0]
    summary = Summary("multiple_choice", records)
    key = ("likelihood", 0)
    assert summary.estimate(key, metrics.get("accuracy"))[0] == pytest.approx(2 / 3)
    # positions: gold 1, 1, 2; answered 1, 1, 1. Position 1: 2 right of 2 references and 3
    # answers, F1 = 2*2 / (2 + 3) = 0.8; position 2: none right, F1 = 0; the mean 0.4
    assert summary.estimate(key, metrics.get("macro_f1"))[0] == pytest.approx(0.4)
    assert "1. 넘어졌다" in (run_dir / "index.html").read_text(encoding="utf-8")


def test_acc_norm_divides_by_characters_and_acc_bytes_by_utf8_bytes() -> None:
    # "ab": 2 characters, 2 bytes; "가": 1 character, 3 bytes
    choices, logprobs = ["ab", "가"], [-3.0, -2.0]
    scores = score_sample("multiple_choice", "가", ["ab"], None, choices=choices,
                          logprobs=logprobs)
    assert scores["predicted"] == "가" and scores["correct"] == 0.0  # -2 beats -3
    assert scores["acc_norm"] == 1.0  # -3/2 = -1.5 beats -2/1 = -2: "ab", the reference
    acc_bytes = metrics.get("acc_bytes").sample
    assert acc_bytes is not None
    seen = metrics.Output("가", ["ab"], None, "가", choices, logprobs)
    assert acc_bytes(seen) == 0.0  # -3/2 = -1.5 loses to -2/3 = -0.67: "가", not the reference
    # a tie goes to the first option, as numpy's argmax
    tie = score_sample("multiple_choice", "", ["가"], None, choices=["가", "나"],
                       logprobs=[-1.0, -1.0])
    assert tie["predicted"] == "가" and tie["acc_norm"] == 1.0


def test_acc_norm_of_ranked_labels_too() -> None:
    scores = score_sample("classification", "긍정", ["매우 긍정"], ["긍정", "매우 긍정"],
                          choices=["긍정", "매우 긍정"], logprobs=[-2.0, -3.0])
    assert scores["correct"] == 0.0 and scores["acc_norm"] == 1.0  # -2/2 = -1 < -3/5 = -0.6


@pytest.mark.parametrize(("output", "form", "expected"), [
    ("정답은 B 입니다", "letter", "둘"),
    ("(c)", "letter", "셋"),
    ("Ｄ", "letter", None),  # full-width D (NFKC: D) is beyond three choices
    ("AB", "letter", None),  # no letter standing alone
    ("답: 3번", "number", "셋"),
    ("12", "number", None),
    ("아마 둘이겠죠", "text", "둘"),
    ("모르겠다", "text", None),
])
def test_generated_answers_are_read_as_letter_number_or_text(output, form, expected) -> None:
    assert parse_choice(output, ["하나", "둘", "셋"], form) == expected


def test_a_generated_multiple_choice_answer_is_scored(tmp_path, fake_backend) -> None:
    loaded = task(tmp_path, scoring="generate", answer_format="number",
                  decoding={"presets": ["greedy"]})
    plan = pipeline.prepare(loaded)
    answers = {"바닥이": "1번", "비가": "2", "배가": "모름"}
    fake_backend.respond = lambda prompt, setting, seed, index: answers[prompt.split()[0]]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = sorted(pipeline.execute(plan, fake_backend, run_dir), key=lambda r: r["item"])
    assert [r["predicted"] for r in records] == ["넘어졌다", "빵을 구웠다", None]
    assert [r["correct"] for r in records] == [1.0, 0.0, 0.0]
    assert [r["invalid"] for r in records] == [0.0, 0.0, 1.0]
    assert all(r.get("acc_norm") is None for r in records)  # nothing ranked


def test_ranked_record_keeps_choices_in_order_even_when_two_read_the_same(tmp_path) -> None:
    loaded = task(tmp_path)
    prompt = build_prompts(loaded)[0]
    record = ranked(loaded.spec, prompt, [LabelScore("넘어졌다", -1.0, 1),
                                          LabelScore("노래했다", -0.5, 1)])
    assert record["choices"] == ["넘어졌다", "노래했다"]
    assert record["choice_logprobs"] == [-1.0, -0.5]
    assert record["output"] == "노래했다" and record["correct"] == 0.0


def test_hf_rank_choices_equals_ranking_each_prompt_alone(hf_loaded) -> None:
    from harness.engines.hf.backend import HFBackend

    backend = HFBackend(hf_loaded)
    prompts = ["오늘은 날씨가", "나는 학교에", "밥을"]
    choices = [["좋다", "나쁘다"], ["간다", "왔다", "있다"], ["먹었다", "샀다"]]
    together = backend.rank_choices(prompts, choices)
    for prompt, own, got in zip(prompts, choices, together, strict=True):
        alone = backend.rank_labels([prompt], own)[0]
        assert [s.label for s in got] == own
        assert [s.logprob for s in got] == pytest.approx([s.logprob for s in alone], abs=1e-4)
