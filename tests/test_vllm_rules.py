"""The harness's decoding rules as tensor arithmetic (``engines.vllm.rules``), against
transformers' own processors row by row, and the two vLLM processors that run them: the
V1 one and the Model Runner V2 one, which vLLM's own V2 loader and parameter validator
must accept (they are import-light and run on a CPU, where MRV2 itself cannot)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
)

from harness.engines.sampling import KeyedDraw, row_keys, warpers
from harness.engines.vllm import rules

VOCAB = 40
SEQUENCES = [[5, 6, 7, 5, 6], [1, 2, 3, 1, 2, 3, 1], [9], [4, 4, 4, 8, 4, 4]]
WORDS = [[7], [6, 8], [2, 3, 9], [4, 4]]


def logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def one_by_one(processor, scores):
    """transformers' processor on each row alone (its own tokens, no padding)."""
    return torch.cat([processor(torch.tensor([seq]), scores[i : i + 1].clone())
                      for i, seq in enumerate(SEQUENCES)])


def batch(**rule) -> rules.Rows:
    tokens, lengths = rules.padded(SEQUENCES)
    return rules.Rows(tokens, lengths, **rule)


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_is_transformers(penalty):
    scores = logits(len(SEQUENCES))
    ours = scores.clone()
    rules.repetition(ours, batch(penalty=torch.full((len(SEQUENCES),), penalty)))
    assert torch.equal(ours, one_by_one(RepetitionPenaltyLogitsProcessor(penalty), scores))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_ngram_blocking_is_transformers(n):
    scores = logits(len(SEQUENCES), n)
    ours = scores.clone()
    rows = batch(ngram=torch.full((len(SEQUENCES),), n), ngram_sizes=(n,))
    rules.restrict(ours, rows)
    theirs = one_by_one(NoRepeatNGramLogitsProcessor(n), scores)
    assert torch.equal(ours, theirs)
    assert (ours == float("-inf")).any()  # something was banned


def test_rows_with_different_ngram_sizes_or_none_each_get_their_own():
    sizes = [2, 0, 3, 1]
    scores = logits(len(SEQUENCES), 5)
    ours = scores.clone()
    rules.restrict(ours, batch(ngram=torch.tensor(sizes), ngram_sizes=(1, 2, 3)))
    for i, n in enumerate(sizes):
        row = scores[i : i + 1].clone()
        if n:
            row = NoRepeatNGramLogitsProcessor(n)(torch.tensor([SEQUENCES[i]]), row)
        assert torch.equal(ours[i : i + 1], row)


def test_banned_words_are_transformers():
    scores = logits(len(SEQUENCES), 1)
    ours = scores.clone()
    rules.restrict(ours, batch(words=rules.word_table([WORDS] * len(SEQUENCES))))
    theirs = one_by_one(NoBadWordsLogitsProcessor(WORDS, eos_token_id=None), scores)
    assert torch.equal(ours, theirs)
    assert torch.isinf(ours[0, 7]) and torch.isinf(ours[3, 4])  # a word alone; after 4


def test_every_rule_at_once_and_rows_without_rules_untouched():
    scores = logits(len(SEQUENCES), 2)
    ours = scores.clone()
    words = [WORDS, [], WORDS[:1], []]
    rows = batch(penalty=torch.tensor([1.2, 1.0, 1.5, 1.0]), ngram=torch.tensor([2, 0, 0, 0]),
                 ngram_sizes=(2,), words=rules.word_table(words))
    rules.restrict(ours, rows)
    first = RepetitionPenaltyLogitsProcessor(1.2)(torch.tensor([SEQUENCES[0]]), scores[:1].clone())
    first = NoRepeatNGramLogitsProcessor(2)(torch.tensor([SEQUENCES[0]]), first)
    first = NoBadWordsLogitsProcessor(WORDS, eos_token_id=None)(torch.tensor([SEQUENCES[0]]), first)
    assert torch.equal(ours[0], first[0])
    assert torch.equal(ours[1], scores[1]) and torch.equal(ours[3], scores[3])


def test_penalise_is_one_formula_for_floats_and_tensors():
    values = torch.tensor([-2.0, 0.0, 3.0])
    assert rules.penalise(values, 2.0).tolist() == [rules.penalise(v, 2.0) for v in values.tolist()]
    assert rules.penalise(-2.0, 2.0) == -4.0 and rules.penalise(3.0, 2.0) == 1.5


@pytest.mark.parametrize("warp", [{"top_k": 0}, {"top_k": 5, "top_p": 0.8, "temperature": 0.7},
                                  {"typical_p": 0.9}])
def test_the_keyed_draw_at_each_rows_own_step_is_the_transformers_backends(warp):
    scores = logits(4, 3)
    keys = torch.tensor(row_keys([11, 12, 13, 14]))
    steps = torch.tensor([0, 3, 1, 7])
    ours = rules.draw_keyed(scores.clone(), keys, steps, warp)
    for i in range(4):
        draw = KeyedDraw([int(keys[i])])
        draw.step = int(steps[i])
        row = scores[i : i + 1].clone()
        for warper in warpers({"do_sample": True, **warp}):
            row = warper(None, row)
        assert torch.equal(ours[i : i + 1], draw(None, row))


def test_the_table_follows_requests_as_they_move():
    table = rules.Table(2, "cpu")  # grows past its first size
    table.add(0, {rules.EXTRA: {"repetition_penalty": 1.5}})
    table.add(3, {rules.EXTRA: {"bad_words_ids": [[1, 2, 3]], "key": 9, "warp": {"top_k": 3}}})
    table.add(1, None)
    assert table.active.tolist()[:4] == [True, False, False, True]
    table.move(3, 1, swap=False)
    assert not table.active[3] and table.active[1] and table.key[1] == 9
    assert table.words[1] == [[1, 2, 3]] and table._table[1, 0].tolist() == [1, 2, 3]
    table.move(0, 1, swap=True)
    assert table.penalty[1] == 1.5 and table.key[0] == 9
    assert list(table.draws(np.array([1, 0]))) == [(("top_k", 3),)]
    with pytest.raises(ValueError, match="unknown rules"):
        rules.validate({rules.EXTRA: {"temperature": 1.0}})


def test_a_forced_continuation_leaves_its_next_token_alone_at_each_rows_step():
    table = rules.Table(4, "cpu")
    table.add(1, {rules.EXTRA: {"force": [7, 8, 9]}})
    table.add(2, {rules.EXTRA: {"force": [3]}})
    table.add(0, {rules.EXTRA: {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}})
    scores = logits(3, 4)
    out = rules.apply(scores.clone(), table, np.array([1, 0, 2]), None, None,
                      torch.tensor([2, 0, 0]))
    assert out[0].argmax() == 9 and int(torch.isfinite(out[0]).sum()) == 1
    assert torch.equal(out[1], scores[1])
    assert out[2].argmax() == 3 and int(torch.isfinite(out[2]).sum()) == 1


# ---------------------------------------------------------------- the processors

vllm = pytest.importorskip("vllm", reason="vLLM is not installed")
V2 = "harness.engines.vllm.processor_v2:HarnessLogitsV2"


def test_vllms_own_v2_loader_and_validator_accept_the_harness_processor():
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.worker.gpu.sample.logits_processor import (
        build_custom_logits_processors_params_validator,
    )
    from vllm.v1.worker.gpu.sample.logits_processor.loader import _load_v2_logitsprocs_by_fqcns

    from harness.engines.vllm.backend import PROCESSORS
    from harness.engines.vllm.processor_v2 import HarnessLogitsV2

    assert PROCESSORS["v2"] == V2
    assert _load_v2_logitsprocs_by_fqcns([V2]) == [HarnessLogitsV2]
    with pytest.raises(ValueError, match="not a subclass"):  # what MRV2 says of a V1 one
        _load_v2_logitsprocs_by_fqcns([PROCESSORS["v1"]])
    validate = build_custom_logits_processors_params_validator([V2])
    validate(SamplingParams(extra_args={rules.EXTRA: {"key": 3, "warp": {"top_k": 5}}}))
    validate(SamplingParams())
    with pytest.raises(VLLMValidationError, match="must be a mapping"):
        validate(SamplingParams(extra_args={rules.EXTRA: 3}))


def _gpu(tensor):
    return SimpleNamespace(gpu=tensor, np=tensor.numpy())


def test_the_v2_processor_applies_the_rules_by_slot_as_the_v1_processor_by_index():
    """The same requests in both processors: the V2 one reads MRV2's token buffers by
    slot in a shuffled batch order, the V1 one its token lists by batch index."""
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from harness.engines.vllm.processor import HarnessLogits
    from harness.engines.vllm.processor_v2 import HarnessLogitsV2

    prompts = [s[:2] for s in SEQUENCES]
    outputs = [s[2:] for s in SEQUENCES]
    extras = [
        {rules.EXTRA: {"repetition_penalty": 1.4, "no_repeat_ngram_size": 2}},
        {rules.EXTRA: {"key": row_keys([5])[0], "warp": {"top_k": 4}, "bad_words_ids": WORDS}},
        None,
        {rules.EXTRA: {"key": row_keys([6])[0], "warp": {"top_k": 0}, "no_repeat_ngram_size": 1}},
    ]
    params = [SamplingParams(temperature=0.0, extra_args=e) for e in extras]
    scores = logits(4, 9)

    v1 = HarnessLogits(SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=8)),
                       torch.device("cpu"), False)
    v1.update_state(BatchUpdate(batch_size=4, removed=[], moved=[], added=[
        (i, params[i], prompts[i], outputs[i]) for i in range(4)]))
    expected = v1.apply(scores.clone())

    slots = [6, 2, 0, 4]  # request i sits in slot slots[i]
    width = 16
    all_tokens = torch.zeros(8, width, dtype=torch.int32)
    prompt_len = torch.zeros(8, dtype=torch.int32)
    for i, s in enumerate(slots):
        all_tokens[s, : len(SEQUENCES[i])] = torch.tensor(SEQUENCES[i])
        prompt_len[s] = len(prompts[i])
    states = SimpleNamespace(device=torch.device("cpu"), max_num_reqs=8, vocab_size=VOCAB,
                             all_token_ids=_gpu(all_tokens), prompt_len=_gpu(prompt_len))
    v2 = HarnessLogitsV2(None, states)
    declined = [v2.add_request(s, params[i]) for i, s in enumerate(slots)]
    assert declined == [True, True, False, True]  # no rules: MRV2 leaves the row alone
    order = [2, 0, 3, 1]  # this step's batch order
    ctx = SimpleNamespace(
        idx_mapping_np=np.array([slots[i] for i in order]),
        pos=torch.tensor([len(SEQUENCES[i]) - 1 for i in order]),
        seq_lens_upper_bound_np=np.array([len(SEQUENCES[i]) for i in order]),
    )
    ours = v2.apply(scores[order].clone(), ctx)
    assert torch.equal(ours, expected[order])
    assert torch.equal(ours[0], scores[2])  # the request without rules
    assert [int(torch.isfinite(row).sum()) for row in ours[2:]] == [1, 1]  # drawn
