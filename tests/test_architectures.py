"""The architecture matrix: the harness, batched, against plain transformers one prompt at
a time, on tiny random models of every architecture in ``tests.tiny_models``.

For each architecture and each deterministic preset, the harness's outputs must be the
token-for-token outputs of ``model.generate`` on each prompt alone (no padding anywhere),
and its log-probabilities those of a teacher-forced pass over that prompt and output;
likewise each label's log-probability under ``rank_labels``. Two batches each: prompts
short enough to fit the attention windows (the fast path reads them with a shared
prefix and padding inside rows) and a long passage beside a short prompt, which makes a
window slide within the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.engines.contract import Options, request_seed
from harness.engines.hf.backend import HFBackend
from harness.engines.models import load_model
from harness.engines.tokens import encode
from harness.tasks.decoding import PRESETS, Setting
from tests.conftest import KOREAN_SENTENCES
from tests.tiny_models import ARCHITECTURES, NO_PAD, WINDOW, build

DETERMINISTIC = ["greedy", "beam", "beam_no_repeat", "beam_5_sequences"]
NEW_TOKENS = 8
INSTRUCTION = "다음 문장에 담긴 감정을 기쁨, 슬픔, 분노 중 하나로 고르세요.\n"
# All within the window with their new tokens; they share the instruction (read once).
FITS = [INSTRUCTION + text for text in
        ("오늘은 하늘이", "한국의 수도는", "내일 면접인데 실수할까 봐 잠이 안 와요.\n감정:")]
# A passage longer than the window beside a short prompt.
SLIDES = [INSTRUCTION + " ".join(KOREAN_SENTENCES[6:10]), INSTRUCTION + "한국의 수도는"]
LABELS = ["기쁨", "슬픔", "분노 중립"]
WINDOWED = {"mistral-window", "gemma2", "gemma3-window", "exaone4", "gpt-oss"}
RUNNING_STATE = {"lfm2-hybrid", "qwen3.5-hybrid"}


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch(request, tmp_path_factory):
    name = request.param
    folder = build(tmp_path_factory.mktemp(name.replace(".", "-")), name)
    return name, load_model(str(folder), "cpu")


@dataclass
class Alone:
    text: str
    n_tokens: int
    mean_logprob: float


def one_at_a_time(loaded, prompt: str, setting: Setting) -> list[Alone]:
    """What plain transformers makes of one prompt, unpadded, with the setting's args."""
    import torch
    from transformers import GenerationConfig

    model, tok = loaded.model, loaded.tokenizer
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, pad_token_id=tok.pad_token_id,
                              eos_token_id=eos, **setting.args)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, generation_config=config)
    made = []
    for row in out[:, ids.shape[1]:].tolist():
        n = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
        whole = torch.tensor([ids[0].tolist() + row[:n]])
        with torch.inference_mode():
            logp = model(input_ids=whole).logits[0].float().log_softmax(-1)
        start = ids.shape[1] - 1
        mean = sum(float(logp[start + i, t]) for i, t in enumerate(row[:n])) / n
        made.append(Alone(tok.decode(row[:n], skip_special_tokens=True), n, mean))
    return made


@pytest.mark.parametrize("preset", DETERMINISTIC)
def test_batched_outputs_are_those_of_one_prompt_at_a_time(arch, preset: str) -> None:
    name, loaded = arch
    backend = HFBackend(loaded)
    setting = Setting(preset, PRESETS[preset])
    for batch in (FITS, SLIDES):
        got = backend.generate(batch, setting, [None] * len(batch), Options(NEW_TOKENS))
        for prompt, rows in zip(batch, got, strict=True):
            alone = one_at_a_time(loaded, prompt, setting)
            assert [g.raw for g in rows] == [a.text for a in alone], (name, prompt)
            assert [g.n_tokens for g in rows] == [a.n_tokens for a in alone], (name, prompt)
            for g, a in zip(rows, alone, strict=True):
                assert g.mean_logprob == pytest.approx(a.mean_logprob, abs=1e-3), (name, prompt)


def test_sampled_outputs_are_those_of_the_plain_path(arch) -> None:
    # No reference one prompt at a time here (transformers draws from one generator for
    # the batch); the harness's keyed draws make the fast and plain paths comparable.
    name, loaded = arch
    setting = Setting("top_k_top_p_3", PRESETS["top_k_top_p_3"])
    for batch in (FITS, SLIDES):
        seeds = [request_seed(7, prompt) for prompt in batch]
        fast = HFBackend(loaded).generate(batch, setting, seeds, Options(NEW_TOKENS))
        plain = HFBackend(loaded, fast=False).generate(batch, setting, seeds, Options(NEW_TOKENS))
        assert [[g.raw for g in rows] for rows in fast] == [[g.raw for g in rows] for rows in plain]
        for rows, others in zip(fast, plain, strict=True):
            for g, h in zip(rows, others, strict=True):
                assert g.mean_logprob == pytest.approx(h.mean_logprob, abs=1e-3), name


def test_label_log_probabilities_are_those_of_each_prompt_read_alone(arch) -> None:
    import torch

    name, loaded = arch
    prompts = FITS + SLIDES
    ranked = HFBackend(loaded).rank_labels(prompts, LABELS)
    for per_prompt, pairs in zip(ranked, encode(loaded.tokenizer, prompts, LABELS), strict=True):
        for score, (context, continuation) in zip(per_prompt, pairs, strict=True):
            with torch.inference_mode():
                logits = loaded.model(input_ids=torch.tensor([context + continuation])).logits
            logp = logits[0].float().log_softmax(-1)
            alone = sum(float(logp[len(context) - 1 + i, t]) for i, t in enumerate(continuation))
            assert score.logprob == pytest.approx(alone, abs=1e-3), (name, score.label)


def test_which_speed_ups_apply_is_decided_from_the_models_cache(arch) -> None:
    name, loaded = arch
    backend = HFBackend(loaded)
    fits = backend.speedups
    record = backend.identity()["speedups"]
    assert fits.prefill and fits.repeat_cache  # every layer of a kind the harness knows
    assert fits.padding_inside == (name not in RUNNING_STATE)
    if name in RUNNING_STATE:
        assert "running state" in record["plain_because"]["padding_inside"]
    assert fits.window == (WINDOW if name in WINDOWED else None)
    assert record["window"] == fits.window
    fitting = max(len(ids) for ids in loaded.tokenizer(FITS)["input_ids"])
    sliding = max(len(ids) for ids in loaded.tokenizer(SLIDES)["input_ids"])
    if name in WINDOWED:  # the matrix's batches do what they are there for
        assert fitting + NEW_TOKENS <= WINDOW < sliding
    assert fits.inside_fits(fitting, NEW_TOKENS) == (name not in RUNNING_STATE)
    assert fits.inside_fits(sliding, NEW_TOKENS) == (name not in RUNNING_STATE | WINDOWED)
    assert (loaded.tokenizer.pad_token_id == loaded.tokenizer.eos_token_id) == (name in NO_PAD)
    # the plain path is told apart in the result cache's keys
    assert HFBackend(loaded, fast=False).identity() != backend.identity()


def _about(tokenizer, tokens: int, opening: str) -> str:
    """A text of sentences after ``opening``, at least ``tokens`` tokens long."""
    text, n = opening, 0
    while len(tokenizer(text)["input_ids"]) < tokens:
        text += " " + KOREAN_SENTENCES[n % len(KOREAN_SENTENCES)]
        n += 1
    return text


@pytest.mark.parametrize("preset", ["greedy", "beam"])
def test_the_default_models_512_token_window_with_prompts_of_340_and_540_tokens(
    tmp_path_factory, preset: str
) -> None:
    # The default model (Gemma 3 270M) attends within 512 tokens on most layers. Prompts
    # of 340 and 540 tokens that share an instruction, in one batch: the window slides
    # for the long ones.
    folder = tmp_path_factory.mktemp("gemma3-512")
    if not (folder / "config.json").exists():
        build(folder, "gemma3-window", sliding_window=512, max_position_embeddings=1024)
    loaded = load_model(str(folder), "cpu")
    tok = loaded.tokenizer
    prompts = [_about(tok, length, INSTRUCTION + opening) for length in (340, 540)
               for opening in ("지문:", "다음 글:")]
    setting = Setting(preset, PRESETS[preset])
    backend = HFBackend(loaded)
    got = backend.generate(prompts, setting, [None] * len(prompts), Options(NEW_TOKENS))
    for prompt, rows in zip(prompts, got, strict=True):
        alone = one_at_a_time(loaded, prompt, setting)
        assert [g.raw for g in rows] == [a.text for a in alone]
        for g, a in zip(rows, alone, strict=True):
            assert g.mean_logprob == pytest.approx(a.mean_logprob, abs=1e-3)
    # ordinary prompts still take the fast path: they fit the window with room to spare
    assert backend.speedups.window == 512
    assert backend.speedups.inside_fits(200, 32) and not backend.speedups.inside_fits(500, 32)


def test_a_cache_of_a_kind_the_harness_does_not_know_runs_as_plain_transformers(
    tmp_path, monkeypatch
) -> None:
    # As if the model's windowed layers were a new kind of cache layer: the harness must
    # neither lay out nor repeat such a cache, and say why.
    from harness.engines.hf import prefill

    loaded = load_model(str(build(tmp_path / "m", "gemma3-window")), "cpu")
    known = prefill.layer_kind
    monkeypatch.setattr(prefill, "layer_kind",
                        lambda layer: None if known(layer) == "sliding" else known(layer))
    backend = HFBackend(loaded)
    fits = backend.speedups
    assert not (fits.prefill or fits.padding_inside or fits.repeat_cache)
    assert "DynamicSlidingWindowLayer" in fits.plain_because["prefill"]
    setting = Setting("beam_5_sequences", PRESETS["beam_5_sequences"])
    got = backend.generate(FITS, setting, [None] * len(FITS), Options(NEW_TOKENS))
    for prompt, rows in zip(FITS, got, strict=True):
        assert [g.raw for g in rows] == [a.text for a in one_at_a_time(loaded, prompt, setting)]
    read_whole = backend.rank_labels(FITS, LABELS)
    monkeypatch.setattr(prefill, "layer_kind", known)
    reused = HFBackend(loaded).rank_labels(FITS, LABELS)
    for whole, again in zip(read_whole, reused, strict=True):
        assert [s.logprob for s in whole] == pytest.approx([s.logprob for s in again], abs=1e-4)
