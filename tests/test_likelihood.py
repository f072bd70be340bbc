"""Tests for harness.engines.hf.likelihood: labels ranked by their log-probability after the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import records
from harness.engines.hf.likelihood import rank_labels
from harness.engines.tokens import encode, split
from harness.errors import HarnessError
from harness.runs.pipeline import execute, new_run_dir, prepare
from harness.tasks.spec import load_task

LABELS = ["기쁨", "슬픔", "분노", "중립"]
PROMPTS = [
    "감정을 고르세요.\n문장: 시험에 합격해서 너무 기뻐요.\n감정:",
    "문장: 키우던 강아지가 떠나서 슬퍼요.\n감정:",
    "감정:",
]
MODEL_INFO = {"name": "fake", "type": "fake", "device": "cpu", "dtype": "float32",
              "fingerprint": "0" * 64}


# ---------------------------------------------------------------- the boundary


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("감정:", ("감정:", " 기쁨")),  # a space before the label, as "감정: {{ label }}"
        ("감정: ", ("감정:", " 기쁨")),  # the prompt's own space, moved onto the label
        ("감정:\n", ("감정:", "\n기쁨")),
    ],
)
def test_the_label_follows_the_prompt_after_one_space(prompt: str, expected) -> None:
    assert split(prompt, "기쁨") == expected


def test_the_label_tokens_are_those_after_the_prompts(hf_loaded) -> None:
    tok = hf_loaded.tokenizer
    (per_label,) = encode(tok, ["문장: 슬퍼요.\n감정:"], LABELS)
    for label, (context, continuation) in zip(LABELS, per_label, strict=True):
        assert context == tok("문장: 슬퍼요.\n감정:")["input_ids"]
        assert continuation  # never empty
        if tok.unk_token_id not in continuation:  # the tiny vocabulary lacks 중립
            assert tok.decode(continuation).strip() == label


# ---------------------------------------------------------------- the scores


def _manual(model, context: list[int], continuation: list[int]) -> float:
    """The label's log-probability, one unpadded sequence, by hand."""
    import torch

    ids = torch.tensor([context + continuation])
    with torch.inference_mode():
        logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
    start = len(context)
    return sum(float(logp[start - 1 + i, t]) for i, t in enumerate(continuation))


def test_a_score_is_the_sum_of_the_label_tokens_log_probabilities(hf_loaded) -> None:
    model, tok = hf_loaded.model, hf_loaded.tokenizer
    scores = rank_labels(model, tok, PROMPTS, LABELS)
    encoded = encode(tok, PROMPTS, LABELS)
    for per_prompt, per_encoded in zip(scores, encoded, strict=True):
        assert [s.label for s in per_prompt] == LABELS
        for score, (context, continuation) in zip(per_prompt, per_encoded, strict=True):
            assert score.n_tokens == len(continuation)
            assert score.logprob == pytest.approx(_manual(model, context, continuation), abs=1e-4)
            assert score.logprob < 0 and score.mean == score.logprob / score.n_tokens


@pytest.mark.parametrize("loaded", ["hf_loaded", "kogpt2_loaded"])
def test_batched_scores_equal_one_at_a_time(request, loaded: str) -> None:
    model = request.getfixturevalue(loaded)
    together = rank_labels(model.model, model.tokenizer, PROMPTS, LABELS, rows=64)
    for prompt, batched in zip(PROMPTS, together, strict=True):
        alone = rank_labels(model.model, model.tokenizer, [prompt], LABELS, rows=1)[0]
        assert [s.logprob for s in batched] == pytest.approx([s.logprob for s in alone], abs=1e-4)
    # and batches that cut the rows differently agree too
    small = rank_labels(model.model, model.tokenizer, PROMPTS, LABELS, rows=3)
    flat = [s.logprob for p in together for s in p]
    assert [s.logprob for p in small for s in p] == pytest.approx(flat, abs=1e-4)


@pytest.fixture
def favouring(hf_loaded):
    """favouring(label): the tiny model with that label's own tokens made far likelier."""
    import torch

    tok = hf_loaded.tokenizer
    handles = []

    def favour(label: str):
        (per_label,) = encode(tok, ["감정:"], LABELS)
        own = set(per_label[LABELS.index(label)][1])
        others = {t for j, (_, cont) in enumerate(per_label) if j != LABELS.index(label)
                  for t in cont}
        boost = torch.zeros(hf_loaded.model.config.vocab_size)
        boost[sorted(own - others)] = 20.0
        head = hf_loaded.model.get_output_embeddings()
        handles.append(head.register_forward_hook(lambda m, args, out: out + boost))
        return hf_loaded

    yield favour
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize("label", ["슬픔", "중립"])
def test_the_clearly_likelier_label_is_chosen(favouring, label: str) -> None:
    from harness.engines.hf.backend import HFBackend

    loaded = favouring(label)
    rankings = HFBackend(loaded).rank_labels(PROMPTS, LABELS)
    for scores in rankings:
        best = max(scores, key=lambda s: s.logprob)
        assert best.label == label


# ---------------------------------------------------------------- in a run


def test_a_likelihood_run_has_one_setting_and_records_like_the_runners(
    write_task, tmp_path: Path, fake_backend
) -> None:
    plan = prepare(write_task(scoring="likelihood", decoding={"presets": ["greedy", "beam"]}))
    assert plan.settings == [] and plan.requests == []
    assert plan.n_outputs == 8
    assert "scoring: likelihood (decoding settings not used)" in plan.describe()
    fake_backend.label_logprob = lambda prompt, label: 0.0 if label == "슬픔" else -3.0
    run_dir = new_run_dir(tmp_path / "reports", "tiny")

    fake_backend.info = MODEL_INFO

    records = execute(plan, fake_backend, run_dir)

    assert fake_backend.calls == []  # nothing generated
    assert len(records) == 8 and {r["setting"] for r in records} == {"likelihood"}
    first = records[0]
    assert first["output"] == first["raw_output"] == first["predicted"] == "슬픔"
    assert first["stop_reason"] == "eos" and first["n_tokens"] == 1 and first["seed"] is None
    assert first["mean_logprob"] == 0.0 and first["label_logprobs"]["기쁨"] == -3.0
    assert [r["correct"] for r in records if r["shots"] == 0] == [0.0, 1.0, 0.0, 0.0]
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in run["settings"]] == ["likelihood"]
    assert "likelihood" in (run_dir / "index.html").read_text(encoding="utf-8")


def test_both_scorings_put_the_ranking_beside_the_decoding_settings(
    write_task, tmp_path: Path, fake_backend
) -> None:
    plan = prepare(write_task(scoring="both", shots=[0], decoding={"presets": ["greedy"]}))
    assert plan.n_outputs == 4 + 4 and plan.describe().endswith(
        "+ labels ranked by likelihood (4 prompts)")
    fake_backend.respond = lambda prompt, setting, seed, index: "기쁨"
    fake_backend.info = MODEL_INFO

    records = execute(plan, fake_backend, new_run_dir(tmp_path, "tiny"))
    assert [r["setting"] for r in records] == ["greedy"] * 4 + ["likelihood"] * 4
    assert fake_backend.ranked[0][1] == ["기쁨", "슬픔", "분노", "중립"]


def test_scoring_by_likelihood_is_for_classification_only(write_task) -> None:
    path = write_task(kind="qa", labels=None, scoring="likelihood")
    with pytest.raises(HarnessError, match=r"scoring: likelihood ranks the labels"):
        load_task(path)


def test_a_setting_named_likelihood_is_refused_beside_the_ranking(write_task) -> None:
    path = write_task(scoring="both", decoding={"configs": {"likelihood": {"num_beams": 2}}})
    with pytest.raises(HarnessError, match="give your setting another name"):
        prepare(path)


def test_a_tiny_model_run_ranks_labels_end_to_end(write_task, tmp_path, hf_model_dir) -> None:
    from harness import cli

    path = write_task(scoring="both", shots=[0, 1], decoding={"presets": ["greedy"],
                                                              "max_new_tokens": 3})
    assert cli.main(["run", str(path), "--model", str(hf_model_dir), "--out",
                     str(tmp_path / "r"), "--device", "cpu", "--no-cache"]) == 0
    (run_dir,) = (tmp_path / "r").iterdir()
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    ranked = [json.loads(line) for line in lines if '"likelihood"' in line]
    assert len(ranked) == 8
    assert all(r["output"] in LABELS and r["invalid"] == 0.0 for r in ranked)
    assert all(r["mean_logprob"] < 0 for r in ranked)
    assert records.LIKELIHOOD == "likelihood"
