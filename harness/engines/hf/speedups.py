"""CPU speed-ups that leave a model's outputs as they are.

Measured on the project's 2-core CPU with Gemma 3 270M (vocabulary 262,144, width 640),
whose output projection dominates each decoding step:

- ``F.linear(x, W)`` at 64 rows took 176 ms; the same product computed as ``W_block @ x.T``
  over 2,048-row blocks of W, each small result transposed into place, took 127 ms (and
  232 ms against 332 ms at 128 rows). The sums are the same up to float rounding.
- On a CPU with bfloat16 dot-product instructions (AVX512-BF16 or AMX) the same product in
  bfloat16 took 40 ms against 195 ms. It is only a screen: every token whose bfloat16
  logit could be among a row's best 1,024 is computed again in float32, so the tokens
  decoding can pick carry their float32 logits and only far-off ones keep the screen's
  value. Screen and recomputation together: 61 ms at 64 rows of real prompts.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Iterator
from typing import Any

from harness.engines.sampler import TOP_P_CANDIDATES, fast_sampling_applies

_BLOCK = 2048
_MIN_ROWS = 8  # below this the plain product is as fast
# Tokens a row that keep float32 logits under the bfloat16 screen: all that greedy,
# beams (2 x beams candidates), top-k and the sampler's top-p candidates look at.
_EXACT_TOP = TOP_P_CANDIDATES
_GREEDY_TOP = 64  # greedy looks at one token; 64 keeps log-probabilities close


def blocked_projection(linear: Any) -> None:
    """Prepare an ``nn.Linear`` to compute large CPU products faster (in place).

    Nothing changes until ``fast_head(linear)`` is entered: inside it, large products go
    block by block in float32, screened in bfloat16 (see ``ScreenedProjection``) where the
    CPU multiplies bfloat16 natively and the setting allows. Outside, the layer is
    transformers' own (the plain path, training).
    """
    import torch

    if getattr(linear, "_harness_blocked", False):
        return
    plain = linear.forward
    linear._harness_screen = None
    linear._harness_active = False

    def forward(self: Any, x: Any) -> Any:
        weight = self.weight
        rows = x.numel() // x.shape[-1]
        if (
            not self._harness_active
            or x.device.type != "cpu" or weight.dtype != torch.float32 or x.dtype != torch.float32
            or rows < _MIN_ROWS or torch.is_grad_enabled() or self.bias is not None
        ):
            return plain(x)
        flat = x.reshape(rows, x.shape[-1])
        if self._harness_screen is not None:
            out = self._harness_screen(flat)
        else:
            out = _blocked(flat, weight)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    linear.forward = types.MethodType(forward, linear)
    linear._harness_blocked = True


def _blocked(flat: Any, weight: Any) -> Any:
    import torch

    rows = flat.shape[0]
    flat = flat.t().contiguous()
    out = torch.empty((rows, weight.shape[0]), dtype=flat.dtype)
    scratch = torch.empty((_BLOCK, rows), dtype=flat.dtype)
    for start in range(0, weight.shape[0], _BLOCK):
        block = weight[start : start + _BLOCK]
        part = scratch[: block.shape[0]]
        torch.mm(block, flat, out=part)
        out[:, start : start + block.shape[0]].copy_(part.t())
    return out


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (else bfloat16 is slow)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = info.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class ScreenedProjection:
    """``x @ W.T`` screened in bfloat16, with float32 logits wherever decoding looks.

    Error bound: rounding x and W to bfloat16 changes each product x_i w_i by at most
    2^-8 |x_i w_i| (two roundings of 2^-9), so a row's logit moves by at most
    2^-8 ||x|| ||w|| (Cauchy-Schwarz), and rounding the result to bfloat16 adds 2^-9 of
    its size. Call that e per row.
    A token whose float32 logit is among the row's ``top`` best has a screened
    logit within 2e of the screen's ``top``-th value; every such token is
    computed again in float32. So the top tokens (hence greedy choices, top-k and beam
    candidates) hold their float32 logits and outrank every screened one, as they would
    in a float32 product; far-off tokens keep logits off by at most e, which only nudges
    the log-sum-exp: by at most 4.5e-5 on 64 rows of emotion prompts (8e-4 when only
    64 tokens a row were kept exact).
    """

    def __init__(self, weight: Any, top: int = _EXACT_TOP) -> None:
        import torch

        self.top = top
        self.weight = weight
        self.version = weight._version  # a changed weight (training) needs a new screen
        self.low = weight.detach().to(torch.bfloat16)
        self.norm = float(weight.detach().norm(dim=1).max())

    def __call__(self, flat: Any) -> Any:
        import torch

        out = torch.mm(flat.to(torch.bfloat16), self.low.t()).float()
        top = out.topk(min(self.top, out.shape[1]), dim=1).values
        best, last = top[:, 0], top[:, -1]
        products = 2.0**-8 * flat.norm(dim=1) * self.norm
        # the tokens that matter lie between last - 2e and best, so |logit| is below
        # |best| + |last| + 2e there; 4 x products covers 2e (and 1e-6, a zero row)
        err = products + 2.0**-9 * (best.abs() + last.abs() + 4 * products) + 1e-6
        near = (out >= (last - 2 * err)[:, None]).any(0).nonzero().squeeze(1)
        for some in near.split(_BLOCK):  # a block of W rows at a time, as memory goes
            out[:, some] = torch.mm(flat, self.weight[some].t())
        return out


def screen_top(args: dict[str, Any]) -> int | None:
    """How many of each row's best tokens a setting needs in float32 under the screen,
    or None where the screen may not serve it.

    Greedy: the best 64 (its choice is the best one; the rest keep the log-sum-exp, and
    with it the recorded log-probabilities, within ~1e-3). Beams, whose candidates are
    ranked across rows by log-probability, and our sampler's top-k or top-p candidates:
    the best 1,024 (log-sum-exp within ~5e-5). Not transformers' own sampling, nor
    sampling from the whole vocabulary. (A row whose top-p nucleus is wider than the
    1,024 candidates draws its rarer tokens from screened logits.)
    """
    beams = args.get("num_beams", 1)
    if beams > 1:
        return _EXACT_TOP if not args.get("do_sample") and 2 * beams <= _EXACT_TOP else None
    if not args.get("do_sample"):
        return _GREEDY_TOP
    if not fast_sampling_applies(args):
        return None
    top_k = args.get("top_k", 50)
    if top_k:
        return _EXACT_TOP if top_k <= _EXACT_TOP else None
    return _EXACT_TOP if args.get("top_p") is not None and args["top_p"] < 1.0 else None


@contextlib.contextmanager
def fast_head(linear: Any, top: int | None = _EXACT_TOP) -> Iterator[None]:
    """Within this block, large products of a ``blocked_projection`` layer are computed
    in float32 blocks, and screened in bfloat16 with each row's ``top`` best tokens kept
    in float32 where the CPU has native bfloat16 (with ``top`` None: blocks only)."""
    if not getattr(linear, "_harness_blocked", False):
        yield
        return
    screener = None
    if top and native_bfloat16():
        screener = getattr(linear, "_harness_screener", None)
        if screener is None or screener.weight is not linear.weight or (
            screener.version != linear.weight._version
        ):
            screener = linear._harness_screener = ScreenedProjection(linear.weight)
        screener.top = top
    linear._harness_screen = screener
    linear._harness_active = True
    try:
        yield
    finally:
        linear._harness_screen = None
        linear._harness_active = False
