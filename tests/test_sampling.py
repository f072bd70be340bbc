"""Keyed sampling: each draw a function of (row key, step, logits), on any batch."""

from __future__ import annotations

import pytest
import torch

from harness.engines.sampling import _mix, _mix_int, _signed, draw, gumbel, row_keys


def test_the_tensor_hash_is_splitmix64s_finaliser() -> None:
    # reference values computed with Python integers (no wrap-around tricks)
    values = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, 123456789]
    got = _mix(torch.tensor([_signed(v) for v in values], dtype=torch.int64)).tolist()
    assert got == [_signed(_mix_int(v)) for v in values]
    assert _mix_int(0) == 0 and _mix_int(1) == 0x5692161D100B05E5  # splitmix64's constants


def test_row_keys_differ_per_seed_and_returned_sequence() -> None:
    keys = row_keys([1, 2], sequences=3)
    assert len(keys) == 6 and len(set(keys)) == 6
    assert row_keys([2], sequences=3) == keys[3:]  # a seed's keys do not depend on others


def test_the_noise_is_gumbel_and_does_not_repeat_across_steps_or_tokens() -> None:
    keys = torch.tensor(row_keys([7]))
    noise = gumbel(keys, 0, torch.arange(200_000))[0]
    # Gumbel(0, 1): mean = Euler's constant, variance = pi^2 / 6
    assert noise.mean().item() == pytest.approx(0.5772, abs=0.01)
    assert noise.var().item() == pytest.approx(torch.pi**2 / 6, abs=0.03)
    assert not torch.equal(gumbel(keys, 1, torch.arange(100)), gumbel(keys, 0, torch.arange(100)))
    # a token's noise is the same whichever other tokens are looked at
    some = torch.tensor([5, 70_000, 123])
    assert torch.equal(gumbel(keys, 3, some)[0], gumbel(keys, 3, torch.arange(200_000))[0][some])


def test_draws_follow_the_distribution_over_rows_and_over_steps() -> None:
    logits = torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05]))
    rows = torch.tensor(row_keys(list(range(5000))))
    by_row = draw(logits.repeat(5000, 1), rows, 0)
    by_step = torch.stack([draw(logits[None], rows[:1], step) for step in range(5000)])
    for chosen in (by_row, by_step.flatten()):
        freq = torch.bincount(chosen, minlength=4).float() / len(chosen)
        assert torch.allclose(freq, torch.exp(logits), atol=0.025)


def test_filtered_tokens_are_never_drawn() -> None:
    logits = torch.zeros(64, 10)
    logits[:, 3:] = float("-inf")
    chosen = draw(logits, torch.tensor(row_keys(list(range(64)))), 0)
    assert chosen.max() < 3
