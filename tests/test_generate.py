"""Tests for harness.engines.hf.backend: batched generation with the tiny real models, on CPU.

The models are random, so no test knows what they will say; each one compares two
behaviours that must agree (a batch and one prompt at a time, with and without a stop
string, the same seed twice, ...).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from harness.engines.contract import Options, cut_at_stop
from harness.engines.hf.backend import HFBackend
from harness.tasks.decoding import PRESETS, Setting
from tests.conftest import seeded

PROMPTS = [
    "오늘은 하늘이",
    "내일 면접인데 실수할까 봐 잠이 안 와요.\n감정:",
    "한국의 수도는",
    "고양이가 창가에서 햇볕을 쬐며 잠을 잔다. 강아지가 공원에서",
]
GREEDY = Setting("greedy", {})


@pytest.fixture(params=["hf", "kogpt2"])
def loaded(request, hf_loaded, kogpt2_loaded):
    return hf_loaded if request.param == "hf" else kogpt2_loaded


def greedy_ids(loaded, prompt: str, max_new_tokens: int) -> list[int]:
    """The generated token ids, straight from transformers (no harness in between)."""
    import torch

    inputs = loaded.tokenizer([prompt], return_tensors="pt")
    with torch.inference_mode():
        out = loaded.model.generate(
            **inputs, do_sample=False, max_new_tokens=max_new_tokens,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return out[0, inputs["input_ids"].shape[1]:].tolist()


# ---------------------------------------------------------------- cut_at_stop


def test_cut_at_stop_cuts_at_the_earliest_of_several_stop_strings() -> None:
    assert cut_at_stop("기쁨\n슬픔. 분노", ("。", ".", "\n")) == ("기쁨", True)
    assert cut_at_stop("기쁨 슬픔", ("\n",)) == ("기쁨 슬픔", False)
    assert cut_at_stop("기쁨", ()) == ("기쁨", False)


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("preset", ["greedy", "beam_5_sequences"])
def test_a_left_padded_batch_gives_the_same_outputs_as_one_prompt_at_a_time(
    loaded, preset: str
) -> None:
    backend = HFBackend(loaded)
    setting = Setting(preset, PRESETS[preset])
    lengths = backend.count_tokens(PROMPTS)
    assert len(set(lengths)) == len(PROMPTS)  # every row of the batch is padded differently
    options = Options(max_new_tokens=10)

    batched = backend.generate(PROMPTS, setting, seeded(PROMPTS), options)
    alone = [backend.generate([p], setting, seeded([p]), options)[0] for p in PROMPTS]

    assert [[g.raw for g in rows] for rows in batched] == [[g.raw for g in rows] for rows in alone]
    assert all(len(rows) == setting.sequences and rows[0].raw for rows in batched)
    for rows, single in zip(batched, alone):
        for g, h in zip(rows, single):
            assert g.mean_logprob == pytest.approx(h.mean_logprob, abs=1e-4)


INSTRUCTION = "다음 문장에 담긴 감정을 기쁨, 슬픔, 분노, 불안, 중립 중 하나로 고르세요.\n\n"


@pytest.mark.parametrize("preset", ["greedy", "beam_5_sequences", "top_k"])
@pytest.mark.parametrize("instruction", ["", INSTRUCTION])
def test_prompts_read_in_groups_of_similar_length_give_the_outputs_of_one_group(
    loaded, preset: str, instruction: str, monkeypatch
) -> None:
    from harness.engines.hf import prefill

    backend = HFBackend(loaded)
    setting = Setting(preset, PRESETS[preset])
    options = Options(max_new_tokens=10)
    prompts = PROMPTS + [PROMPTS[1] + " 오늘", PROMPTS[2] + "?"]
    prompts = [instruction + p for p in prompts]
    ids = loaded.tokenizer(prompts)["input_ids"]
    # with the instruction, the rows share a prefix that is read once
    assert bool(prefill.common_prefix(ids)) == bool(instruction)
    monkeypatch.setattr(prefill, "PASS_COST", 10**6)  # one group, padded
    assert len(prefill.groups(backend.count_tokens(prompts))) == 1
    together = backend.generate(prompts, setting, seeded(prompts, 7), options)
    monkeypatch.setattr(prefill, "PASS_COST", 0)  # now every length is read apart
    assert len(prefill.groups(backend.count_tokens(prompts))) == len(prompts)
    apart = backend.generate(prompts, setting, seeded(prompts, 7), options)

    assert [[g.raw for g in rows] for rows in apart] == [[g.raw for g in rows] for rows in together]
    for rows, others in zip(apart, together):
        for g, h in zip(rows, others):
            assert g.mean_logprob == pytest.approx(h.mean_logprob, abs=1e-4)


def test_groups_cut_sorted_lengths_where_padding_costs_more_than_a_pass() -> None:
    from harness.engines.hf.prefill import PASS_COST, groups

    assert groups([5]) == [[0]]
    # two clusters far apart: reading them together would pad 10 short rows by 100
    lengths = [110, 10, 12, 108, 11] * 2
    found = groups(lengths)
    assert sorted(i for g in found for i in g) == list(range(10))
    assert [sorted(lengths[i] for i in g) for g in found] == [
        [10, 10, 11, 11, 12, 12], [108, 108, 110, 110]
    ]
    # rows of nearly one length stay together: a pass costs more than the padding
    assert len(groups([40, 41, 42, 43])) == 1
    assert PASS_COST > 0


def test_greedy_output_is_what_transformers_generates(loaded) -> None:
    backend = HFBackend(loaded)
    generation = backend.generate([PROMPTS[0]], GREEDY, seeded([PROMPTS[0]]), Options(max_new_tokens=8))[0][0]
    ids = greedy_ids(loaded, PROMPTS[0], 8)
    assert generation.raw == loaded.tokenizer.decode(ids, skip_special_tokens=True)
    assert generation.n_tokens == 8
    assert generation.stop_reason == "length"
    assert generation.text == generation.raw


# ---------------------------------------------------------------- stop strings


def _two_token_stop(loaded, prompt: str, n: int) -> tuple[str, int]:
    """A 2-character string that the greedy answer first shows across a token boundary.

    Returns the string and the number of tokens after which it is complete.
    """
    ids = greedy_ids(loaded, prompt, n)
    decode = lambda k: loaded.tokenizer.decode(ids[:k], skip_special_tokens=True)
    for k in range(2, n):
        before, after = decode(k - 1), decode(k)
        if not after.startswith(before) or len(after) == len(before):
            continue
        stop = before[-1:] + after[len(before)]
        if stop.strip() == stop and len(stop) == 2 and stop not in before:
            return stop, k
    raise AssertionError("no answer with a stop string across two tokens")  # pick other prompts


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_a_stop_string_spanning_two_tokens_cuts_the_answer_at_its_first_occurrence(
    hf_loaded, prompt: str
) -> None:
    backend = HFBackend(hf_loaded)
    stop, k = _two_token_stop(hf_loaded, prompt, 12)
    # The tokenizer splits it: no single token holds the stop string.
    assert len(hf_loaded.tokenizer(stop, add_special_tokens=False)["input_ids"]) >= 2
    free = backend.generate([prompt], GREEDY, seeded([prompt]), Options(max_new_tokens=12))[0][0]
    cut = backend.generate([prompt], GREEDY, seeded([prompt]), Options(12, stop=(stop,)))[0][0]

    assert free.raw.find(stop) >= 0
    assert cut.text == free.raw[: free.raw.find(stop)]
    assert stop not in cut.text
    assert cut.stop_reason == "stop"
    assert cut.n_tokens == k  # up to and including the token that completed the stop string
    # Generation itself ended there, rather than running on to max_new_tokens.
    prefix = backend.generate([prompt], GREEDY, seeded([prompt]), Options(max_new_tokens=k))[0][0]
    assert cut.raw == prefix.raw


def test_stop_strings_cut_each_row_of_a_batch_on_its_own(hf_loaded) -> None:
    backend = HFBackend(hf_loaded)
    stop, _ = _two_token_stop(hf_loaded, PROMPTS[0], 12)
    free = backend.generate(PROMPTS, GREEDY, seeded(PROMPTS), Options(max_new_tokens=12))
    cut = backend.generate(PROMPTS, GREEDY, seeded(PROMPTS), Options(12, stop=(stop,)))
    for free_rows, cut_rows in zip(free, cut):
        expected, stopped = cut_at_stop(free_rows[0].raw, (stop,))
        assert cut_rows[0].text == expected
        assert cut_rows[0].stop_reason == ("stop" if stopped else "length")
    assert cut[0][0].stop_reason == "stop"


def test_a_stop_string_the_vocabulary_cannot_spell_changes_nothing(hf_loaded) -> None:
    backend = HFBackend(hf_loaded)
    unk = hf_loaded.tokenizer.unk_token_id
    assert unk in hf_loaded.tokenizer("\n§", add_special_tokens=False)["input_ids"]
    free = backend.generate(PROMPTS, GREEDY, seeded(PROMPTS), Options(max_new_tokens=6))
    stopped = backend.generate(PROMPTS, GREEDY, seeded(PROMPTS), Options(6, stop=("\n", "§")))
    assert [r[0] for r in stopped] == [r[0] for r in free]
    beam = Setting("beam", PRESETS["beam"])
    assert backend.generate(PROMPTS[:1], beam, seeded(PROMPTS[:1]), Options(6, stop=("\n",)))[0][0].raw


def test_eos_ends_the_answer_and_is_counted_but_not_shown(hf_loaded) -> None:
    import torch

    prompt = PROMPTS[2]
    ids = greedy_ids(hf_loaded, prompt, 10)
    assert ids[2] not in ids[:2]
    # A copy of the model whose eos embedding is a little longer than that of the 3rd
    # greedy token: only the eos logit changes, and at the 3rd step eos outbids that token.
    model = copy.deepcopy(hf_loaded.model)
    eos = hf_loaded.tokenizer.eos_token_id
    with torch.no_grad():
        model.transformer.wte.weight[eos] = 1.05 * model.transformer.wte.weight[ids[2]]
    backend = HFBackend(dataclasses.replace(hf_loaded, model=model))

    generation = backend.generate([prompt], GREEDY, seeded([prompt]), Options(max_new_tokens=10))[0][0]

    assert generation.stop_reason == "eos"
    assert generation.n_tokens == 3  # two tokens, then eos
    assert generation.raw == hf_loaded.tokenizer.decode(ids[:2], skip_special_tokens=True)
    assert generation.raw and generation.text == generation.raw
    assert "</s>" not in generation.raw


def test_a_setting_may_set_its_own_max_new_tokens(hf_loaded) -> None:
    backend = HFBackend(hf_loaded)
    short = Setting("short", {"max_new_tokens": 3})
    generation = backend.generate([PROMPTS[0]], short, seeded([PROMPTS[0]]), Options(max_new_tokens=12))[0][0]
    assert generation.n_tokens == 3
    assert generation.stop_reason == "length"


# ---------------------------------------------------------------- bad words


def test_a_banned_word_that_greedy_produces_is_not_produced_with_the_ban(loaded) -> None:
    tokenizer = loaded.tokenizer
    backend = HFBackend(loaded)
    prompt, word = None, None
    for candidate in PROMPTS:
        for token_id in greedy_ids(loaded, candidate, 10):
            piece = tokenizer.convert_ids_to_tokens(token_id)
            # a whole word, which the tokenizer writes the same way on its own
            if piece.startswith("▁") and len(piece) >= 2:
                if tokenizer(piece[1:], add_special_tokens=False)["input_ids"] == [token_id]:
                    prompt, word = candidate, piece[1:]
                    break
        if word:
            break
    assert word, "no whole-word token in the greedy answers; change PROMPTS"

    free = backend.generate([prompt], GREEDY, seeded([prompt]), Options(max_new_tokens=10))[0][0]
    banned = backend.generate([prompt], GREEDY, seeded([prompt]), Options(10, bad_words=(word,)))[0][0]

    assert word in free.raw
    assert word not in banned.raw
    assert banned.n_tokens == 10


def test_a_banned_special_token_is_banned_by_its_id(hf_loaded) -> None:
    backend = HFBackend(hf_loaded)
    tokenizer = hf_loaded.tokenizer
    assert backend._bad_words_ids(("<unk>", "</s>")) == [
        [tokenizer.unk_token_id], [tokenizer.eos_token_id]
    ]


def test_batch_rows_count_beams_and_returned_sequences(hf_loaded) -> None:
    backend = HFBackend(hf_loaded, rows=12)
    assert backend.batch_rows(GREEDY) == 12
    # every beam and returned sequence is a row: 12 // 5 beams
    assert backend.batch_rows(Setting("beam", PRESETS["beam"])) == 2
    assert backend.batch_rows(Setting("top_k_top_p_3", PRESETS["top_k_top_p_3"])) == 4
    assert HFBackend(hf_loaded, rows=2).batch_rows(Setting("beam", PRESETS["beam"])) == 1


# ---------------------------------------------------------------- sampling


def test_sampling_with_num_return_sequences_returns_that_many_per_prompt(loaded) -> None:
    backend = HFBackend(loaded)
    setting = Setting("top_k_top_p_3", PRESETS["top_k_top_p_3"])
    out = backend.generate(PROMPTS[:2], setting, seeded(PROMPTS[:2], 42), Options(max_new_tokens=6))
    assert [len(rows) for rows in out] == [3, 3]
    assert all(g.n_tokens >= 1 and g.mean_logprob <= 0 for rows in out for g in rows)


def test_the_same_seed_gives_the_same_samples_and_another_seed_others(loaded) -> None:
    backend = HFBackend(loaded)
    setting = Setting("sample", PRESETS["sample"])
    options = Options(max_new_tokens=8)

    def texts(seed: int) -> list[str]:
        return [g.raw for rows in backend.generate(PROMPTS, setting, seeded(PROMPTS, seed), options) for g in rows]

    first = texts(1)
    assert texts(1) == first
    other = texts(2)
    assert other != first
    assert sum(a != b for a, b in zip(first, other)) >= 2  # not one unlucky prompt


def test_sampling_differs_from_greedy(hf_loaded) -> None:
    backend = HFBackend(hf_loaded)
    options = Options(max_new_tokens=8)
    greedy = [r[0].raw for r in backend.generate(PROMPTS, GREEDY, seeded(PROMPTS), options)]
    sampled = [r[0].raw for r in backend.generate(PROMPTS, Setting("s", PRESETS["sample"]), seeded(PROMPTS, 3),
                                                   options)]
    assert greedy != sampled


# ---------------------------------------------------------------- log-probabilities


def test_greedy_mean_logprob_matches_a_teacher_forced_pass(loaded) -> None:
    import torch

    backend = HFBackend(loaded)
    tokenizer = loaded.tokenizer
    out = backend.generate(PROMPTS, GREEDY, seeded(PROMPTS), Options(max_new_tokens=6))

    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        sequences = loaded.model.generate(
            **inputs, do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id
        )
    prompt_len = inputs["input_ids"].shape[1]
    scored = backend._score(inputs["attention_mask"], sequences, prompt_len)

    for row, rows in enumerate(out):
        generation = rows[0]
        assert generation.mean_logprob <= 0
        expected = float(scored[row, : generation.n_tokens].mean())
        assert generation.mean_logprob == pytest.approx(expected, abs=1e-4)


def test_beam_search_returns_its_sequences_with_log_probabilities(loaded) -> None:
    backend = HFBackend(loaded)
    setting = Setting("beam_5_sequences", PRESETS["beam_5_sequences"])
    out = backend.generate(PROMPTS[:2], setting, seeded(PROMPTS[:2]), Options(max_new_tokens=6))
    assert [len(rows) for rows in out] == [5, 5]
    for rows in out:
        assert all(g.mean_logprob is not None and g.mean_logprob <= 0 for g in rows)
        assert len({g.raw for g in rows}) > 1  # five beams, not one answer five times


def test_running_out_of_memory_halves_the_batch_and_goes_on(hf_loaded, monkeypatch) -> None:
    import torch

    backend = HFBackend(hf_loaded, rows=8)
    prompts = ["오늘 날씨가", "나는 학교에", "우리 집 고양이는", "주말에는 친구와"]
    setting = Setting("greedy", {})
    expected = backend.generate(prompts, setting, seeded(prompts), Options(4))
    real = HFBackend._generate

    def tight(self, batch, *args):
        if len(batch) > 1:
            raise torch.OutOfMemoryError("no room")
        return real(self, batch, *args)

    monkeypatch.setattr(HFBackend, "_generate", tight)
    got = backend.generate(prompts, setting, seeded(prompts), Options(4))
    assert [[g.text for g in row] for row in got] == [[g.text for g in row] for row in expected]
    assert backend.rows == 1


# ---------------------------------------------------------------- fast and plain paths


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_fast_path_gives_what_plain_transformers_gives_for_every_preset(
    loaded, preset: str
) -> None:
    # The plain path is transformers' own generate on a left-padded batch (with the
    # harness's keyed draw for sampling); the fast one reads prompts in groups, screens
    # the output projection and samples over candidates. They must agree.
    setting = Setting(preset, PRESETS[preset])
    prompts = [INSTRUCTION + p for p in PROMPTS] + PROMPTS
    options = Options(max_new_tokens=8, stop=("\n",))
    seeds = seeded(prompts, 42 if setting.sampled else None)
    fast = HFBackend(loaded).generate(prompts, setting, seeds, options)
    plain = HFBackend(loaded, fast=False).generate(prompts, setting, seeds, options)
    assert [[g.raw for g in rows] for rows in fast] == [[g.raw for g in rows] for rows in plain]
    assert [[g.stop_reason for g in rows] for rows in fast] == [
        [g.stop_reason for g in rows] for rows in plain
    ]
    for rows, others in zip(fast, plain):
        for g, h in zip(rows, others):
            assert g.mean_logprob == pytest.approx(h.mean_logprob, abs=1e-4)


def test_the_plain_path_leaves_the_output_projection_as_transformers_made_it(hf_loaded) -> None:
    import torch

    HFBackend(hf_loaded)  # a fast backend prepares the head ...
    head = hf_loaded.model.get_output_embeddings()
    x = torch.randn(16, head.weight.shape[1])
    with torch.inference_mode():
        assert torch.equal(head(x), torch.nn.functional.linear(x, head.weight))  # ... inertly
