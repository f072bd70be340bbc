"""Tests for harness.runner, with a fake backend in place of a model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness.engines.contract import Generation, Options, request_seed
from harness.records import read_samples as load_records
from harness.runs.runner import count_outputs, plan, run
from harness.tasks.decoding import PRESETS, Setting
from harness.tasks.prompts import Prompt, build_prompts
from harness.tasks.spec import load_task

GREEDY = Setting("greedy", {})
BEAM5 = Setting("beam_5_sequences", PRESETS["beam_5_sequences"])
SAMPLED3 = Setting("top_k_top_p_3", PRESETS["top_k_top_p_3"])
OPTIONS = Options(max_new_tokens=4)

RECORD_KEYS = {
    "task", "item", "shots", "setting", "seed", "sequence", "prompt", "output", "raw_output",
    "references", "n_tokens", "mean_logprob", "stop_reason",
}


@pytest.fixture
def task(write_task):
    return load_task(write_task(shots=[0, 1]))


@pytest.fixture
def prompts(task) -> list[Prompt]:
    return build_prompts(task)


def test_plan_runs_sampled_settings_once_per_seed_and_the_others_once(prompts) -> None:
    requests = plan(prompts, [GREEDY, BEAM5, SAMPLED3], [1, 2, 3])
    assert len(prompts) == 8  # 4 items x 2 shot counts
    assert len(requests) == 8 + 8 + 8 * 3
    by_setting: dict[str, set] = {}
    for r in requests:
        by_setting.setdefault(r.setting.name, set()).add(r.seed)
    assert by_setting == {"greedy": {None}, "beam_5_sequences": {None},
                          "top_k_top_p_3": {1, 2, 3}}
    assert count_outputs(requests) == 8 * 1 + 8 * 5 + 8 * 3 * 3


def test_records_are_items_x_shots_x_settings_x_seeds_x_sequences(task, prompts,
                                                                  fake_backend) -> None:
    seeds = [7, 8]
    requests = plan(prompts, [GREEDY, BEAM5, SAMPLED3], seeds)
    progress: list[int] = []
    records = run(task.spec, requests, fake_backend, OPTIONS, on_progress=progress.append)

    items, shots = 4, 2
    assert len(records) == items * shots * (1 + 5 + len(seeds) * 3)
    assert len(records) == count_outputs(requests) == sum(progress)
    keys = {(r["setting"], r["item"], r["shots"], r["seed"], r["sequence"]) for r in records}
    assert len(keys) == len(records)  # every output once
    # The fake answers "<setting>/<the prompt's own seed>/<sequence>": each record got
    # its own answer, drawn with a seed of its own (the task's, mixed with the prompt)
    for r in records:
        own = request_seed(r["seed"], r["prompt"])
        assert r["output"] == f"{r['setting']}/{own}/{r['sequence']}"


def test_records_come_back_in_a_stable_order(task, prompts, fake_backend) -> None:
    requests = plan(prompts, [SAMPLED3, GREEDY], [2, 1])
    records = run(task.spec, requests, fake_backend, OPTIONS)
    order = [(r["setting"], r["item"], r["shots"], r["seed"] or 0, r["sequence"]) for r in records]
    setting_rank = {"top_k_top_p_3": 0, "greedy": 1}
    assert order == sorted(order, key=lambda k: (setting_rank[k[0]], *k[1:]))


def test_the_backend_gets_seeds_only_for_sampled_settings(task, prompts, fake_backend) -> None:
    run(task.spec, plan(prompts, [GREEDY, SAMPLED3], [5, 6]), fake_backend, OPTIONS)
    seen = {(setting, prompt, seed) for batch, setting, seeds in fake_backend.calls
            for prompt, seed in zip(batch, seeds)}
    assert {(p.text, None) for p in prompts} == {(t, s) for n, t, s in seen if n == "greedy"}
    sampled = {(t, s) for n, t, s in seen if n == "top_k_top_p_3"}
    assert sampled == {(p.text, request_seed(seed, p.text)) for p in prompts for seed in (5, 6)}
    assert len({s for _, s in sampled}) == 2 * len(prompts)  # a seed of its own each


def test_batches_are_longest_first_and_never_above_the_backends_size(
    task, prompts, fake_backend
) -> None:
    fake_backend.rows = 6  # greedy: 6 prompts a batch; 3 sequences: 2; 5 beams: 1
    run(task.spec, plan(prompts, [GREEDY, SAMPLED3, BEAM5], [1]), fake_backend, OPTIONS)
    limits = {"greedy": 6, "top_k_top_p_3": 2, "beam_5_sequences": 1}
    sent: dict[tuple, list[str]] = {}
    for batch, setting, seeds in fake_backend.calls:
        assert 1 <= len(batch) <= limits[setting]
        sent.setdefault(setting, []).extend(batch)
    for group in sent.values():
        lengths = [len(text) for text in group]  # the fake counts characters as tokens
        assert lengths == sorted(lengths, reverse=True)
        assert sorted(group) == sorted(p.text for p in prompts)  # every prompt, once
    assert [len(b) for b, s, _ in fake_backend.calls if s == "greedy"] == [6, 2]


def test_a_record_carries_the_prompt_the_answer_and_its_scores(task, prompts,
                                                               fake_backend) -> None:
    fake_backend.respond = lambda prompt, setting, seed, index: Generation(
        "슬픔이에요", "슬픔이에요\n다음", 3, -0.5, "stop"
    )
    records = run(task.spec, plan(prompts[:1], [GREEDY], [42]), fake_backend, OPTIONS)
    (record,) = records
    assert RECORD_KEYS <= set(record)
    assert record["task"] == "tiny"
    assert (record["item"], record["shots"], record["setting"]) == (0, 0, "greedy")
    assert record["seed"] is None and record["sequence"] == 0
    assert record["prompt"] == prompts[0].text
    assert record["output"] == "슬픔이에요" and record["raw_output"] == "슬픔이에요\n다음"
    assert record["references"] == ["기쁨"]
    assert (record["n_tokens"], record["mean_logprob"], record["stop_reason"]) == (3, -0.5, "stop")
    # classification scores: the label named, and whether it is the reference
    assert record["predicted"] == "슬픔"
    assert record["correct"] == 0.0 and record["invalid"] == 0.0


def test_samples_jsonl_has_one_utf8_line_per_output_with_hangul_as_is(
    task, prompts, fake_backend, tmp_path: Path
) -> None:
    fake_backend.respond = lambda prompt, setting, seed, index: f"기쁨 {index}"
    path = tmp_path / "samples.jsonl"
    with path.open("w", encoding="utf-8") as samples:
        records = run(task.spec, plan(prompts, [GREEDY, SAMPLED3], [1]), fake_backend,
                      OPTIONS, samples)
    raw = path.read_bytes()
    assert b"\\u" not in raw
    assert "기쁨".encode() in raw and "문장:".encode() in raw
    lines = raw.decode("utf-8").splitlines()
    assert len(lines) == len(records) == 8 + 8 * 3
    key = lambda r: (r["setting"], r["item"], r["shots"], r["sequence"])
    assert sorted(map(json.loads, lines), key=key) == sorted(records, key=key)
    assert load_records(path) == [json.loads(line) for line in lines]


def test_samples_are_written_as_each_batch_finishes(task, prompts, fake_backend) -> None:
    """A crash mid-run keeps what was generated: lines are flushed batch by batch."""
    fake_backend.rows = 2
    samples = io.StringIO()
    seen: list[int] = []
    original = fake_backend.generate

    def generate(*args):
        seen.append(len(samples.getvalue().splitlines()))
        return original(*args)

    fake_backend.generate = generate
    run(task.spec, plan(prompts, [GREEDY], [1]), fake_backend, OPTIONS, samples)
    assert seen == [0, 2, 4, 6]


def test_load_records_skips_a_line_cut_short_by_a_crash(task, prompts, fake_backend,
                                                       tmp_path: Path) -> None:
    (record,) = run(task.spec, plan(prompts[:1], [GREEDY], [1]), fake_backend, OPTIONS)
    line = json.dumps(record, ensure_ascii=False)
    path = tmp_path / "samples.jsonl"
    path.write_text(f"{line}\n{line[:40]}", encoding="utf-8")
    assert load_records(path) == [record]


def test_a_backend_returning_too_few_outputs_is_not_silently_accepted(task, prompts,
                                                                      fake_backend) -> None:
    original = fake_backend.generate
    fake_backend.generate = lambda prompts, *rest: original(prompts, *rest)[:-1]
    with pytest.raises(ValueError):
        run(task.spec, plan(prompts, [GREEDY], [1]), fake_backend, OPTIONS)
