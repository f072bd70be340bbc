"""The CPU speed-ups must not change what is computed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from harness.engines.hf.speedups import (
    ScreenedProjection,
    blocked_projection,
    fast_head,
    screen_top,
)
from harness.engines.sampler import Sampler, fast_sampling_applies
from harness.engines.sampling import KeyedDraw, row_keys, warpers


def test_the_blocked_projection_equals_the_plain_one():
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 5000, bias=False)
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        expected = F.linear(x, linear.weight)
        blocked_projection(linear)
        got = linear(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
    # training is left to the plain path, so gradients flow as usual
    loss = linear(x).sum()
    loss.backward()
    assert linear.weight.grad is not None


def _logit_like(rows: int, vocab: int = 6000, width: int = 64) -> tuple[torch.Tensor, ...]:
    """Hidden states and an output matrix whose products look like a model's logits:
    a few dozen tokens well above a long tail, some of them nearly tied."""
    torch.manual_seed(1)
    weight = torch.randn(vocab, width) / width**0.5
    x = torch.randn(rows, width) * 4
    # near ties: copies of the best row of each x, nudged by less than bfloat16 resolves
    best = F.linear(x, weight).argmax(1)
    weight[:rows] = weight[best] + 1e-4 * torch.randn(rows, width)
    return x, weight


def test_the_screened_projection_keeps_float32_logits_for_every_token_decoding_picks():
    x, weight = _logit_like(rows=16)
    exact = F.linear(x, weight)
    with torch.no_grad():
        got = ScreenedProjection(weight, top=64)(x)
    assert got.shape == exact.shape
    # the top 64 of each row: the same tokens, in the same order, with float32 values
    top_exact, top_got = exact.topk(64, dim=1), got.topk(64, dim=1)
    assert torch.equal(top_got.indices, top_exact.indices)
    assert torch.allclose(top_got.values, top_exact.values, atol=1e-5)
    assert torch.equal(got.argmax(1), exact.argmax(1))  # greedy picks the float32 argmax
    # the tail was screened in bfloat16: close, not equal
    tail = exact < exact.topk(64, dim=1).values[:, -1:] - 1.0
    assert (got[tail] - exact[tail]).abs().max() < 0.1
    assert not torch.equal(got[tail], exact[tail])
    assert torch.allclose(got.logsumexp(1), exact.logsumexp(1), atol=1e-3)


def test_the_plain_bfloat16_product_would_pick_other_tokens_on_near_ties():
    # what the float32 recomputation is for: without it, near-tied rows flip
    x, weight = _logit_like(rows=64)
    exact = F.linear(x, weight)
    screened = torch.mm(x.bfloat16(), weight.bfloat16().t()).float()
    assert not torch.equal(screened.argmax(1), exact.argmax(1))


def test_screening_applies_only_inside_its_block(monkeypatch):
    from harness.engines.hf import speedups

    monkeypatch.setattr(speedups, "native_bfloat16", lambda: True)
    x, weight = _logit_like(rows=16, vocab=20000)
    linear = torch.nn.Linear(64, weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    blocked_projection(linear)
    with torch.inference_mode():
        exact = linear(x)
        with fast_head(linear):
            screened = linear(x)
        after = linear(x)
    assert torch.equal(exact, after)
    assert not torch.equal(screened, exact)
    assert torch.equal(screened.argmax(1), exact.argmax(1))


@pytest.mark.parametrize(
    ("preset", "top"),
    [
        ("greedy", 64), ("beam", 1024), ("beam_no_repeat", 1024), ("top_k", 1024),
        ("top_p", 1024), ("top_k_top_p_3", 1024),
        ("sample", None),  # draws from the whole vocabulary
        ("temperature_0.7", None),
    ],
)
def test_the_screen_serves_only_settings_whose_choices_it_keeps_exact(preset, top):
    from harness.tasks.decoding import PRESETS

    assert screen_top(PRESETS[preset]) == top


def test_the_screen_leaves_transformers_own_sampling_alone():
    assert screen_top({"do_sample": True, "typical_p": 0.9}) is None
    assert screen_top({"do_sample": True, "top_k": 5000}) is None
    assert screen_top({"num_beams": 4, "do_sample": True}) is None


def _hf_kept(args: dict, scores: torch.Tensor) -> torch.Tensor:
    warpers = LogitsProcessorList()
    if args.get("temperature", 1.0) != 1.0:
        warpers.append(TemperatureLogitsWarper(args["temperature"]))
    top_k = args.get("top_k", 50)
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if args.get("top_p") is not None:
        warpers.append(TopPLogitsWarper(args["top_p"]))
    return torch.isfinite(warpers(None, scores.clone()))


def _our_kept(args: dict, scores: torch.Tensor) -> torch.Tensor:
    return Sampler(args).kept(scores.clone())


SETTINGS = [
    {"do_sample": True, "top_k": 0},
    {"do_sample": True},  # transformers' default top-k of 50
    {"do_sample": True, "top_k": 50},
    {"do_sample": True, "top_k": 0, "top_p": 0.92},
    {"do_sample": True, "top_k": 0, "top_p": 0.92, "temperature": 0.7},
    {"do_sample": True, "top_k": 50, "top_p": 0.95},
    {"do_sample": True, "top_k": 2000, "top_p": 0.5},
]


@pytest.mark.parametrize("args", SETTINGS)
@pytest.mark.parametrize("spread", [0.5, 3.0, 8.0])  # flat to peaked distributions
def test_the_sampler_keeps_exactly_the_tokens_transformers_keeps(args, spread):
    torch.manual_seed(1)
    scores = torch.randn(6, 20000) * spread
    assert torch.equal(_our_kept(args, scores), _hf_kept(args, scores))


def test_a_flat_nucleus_wider_than_the_candidates_falls_back_for_that_row_only():
    torch.manual_seed(3)
    scores = torch.randn(3, 5000) * 8
    scores[1] = 0.0  # every token equally likely: top-p 0.9 keeps 4,500 of this row
    args = {"do_sample": True, "top_k": 0, "top_p": 0.9}
    kept = _our_kept(args, scores)
    assert torch.equal(kept, _hf_kept(args, scores))
    assert kept[1].sum() == 4500 and kept[0].sum() < 1024
    drawn = Sampler(args, row_keys([1, 2, 3]))(None, scores).argmax(-1)
    assert kept[torch.arange(3), drawn].all()


def test_draws_follow_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, 1)
    out = Sampler({"do_sample": True, "top_k": 0}, row_keys(list(range(20000))))(None, logits)
    chosen = out.argmax(-1)
    assert torch.isinf(out).sum(-1).eq(3).all()  # only the drawn token stays possible
    freq = torch.bincount(chosen, minlength=4).float() / len(chosen)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015)


@pytest.mark.parametrize("args", SETTINGS)
def test_the_fast_sampler_draws_what_transformers_warpers_and_the_keyed_draw_draw(args):
    # the fast path and the plain path pick the same token from the same logits
    torch.manual_seed(4)
    scores = torch.randn(16, 20000) * 4
    keys = row_keys(list(range(8)), sequences=2)
    for step in range(3):
        fast, plain = Sampler(args, keys), KeyedDraw(keys)
        fast.step = plain.step = step
        warped = scores.clone()
        for warper in warpers(args):
            warped = warper(None, warped)
        assert torch.equal(fast(None, scores.clone()).argmax(-1),
                           plain(None, warped).argmax(-1))


def test_a_rows_draw_depends_on_its_key_alone_not_on_its_batch():
    torch.manual_seed(5)
    scores = torch.randn(6, 3000)
    args = {"do_sample": True, "top_k": 0, "top_p": 0.9}
    keys = row_keys([11, 12, 13, 14, 15, 16])
    together = Sampler(args, keys)(None, scores.clone()).argmax(-1)
    alone = [Sampler(args, [k])(None, scores[i : i + 1].clone()).argmax(-1) for i, k in
             enumerate(keys)]
    assert together.tolist() == torch.cat(alone).tolist()
    again = Sampler(args, keys)(None, scores.clone()).argmax(-1)
    assert torch.equal(again, together)
    other = Sampler(args, row_keys([21, 22, 23, 24, 25, 26]))(None, scores.clone()).argmax(-1)
    assert not torch.equal(other, together)


@pytest.mark.parametrize(
    ("args", "applies"),
    [
        ({"do_sample": True, "top_p": 0.9}, True),
        ({"do_sample": True, "num_return_sequences": 3}, True),
        ({}, False),
        ({"num_beams": 5}, False),
        ({"do_sample": True, "num_beams": 3}, False),
        ({"do_sample": True, "typical_p": 0.9}, False),
    ],
)
def test_which_settings_the_fast_sampler_takes(args, applies):
    assert fast_sampling_applies(args) is applies
