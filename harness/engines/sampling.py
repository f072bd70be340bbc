"""Sampling whose draws depend on the request alone, whatever else shares its batch.

A seed set once per batch (``torch.manual_seed``) makes a prompt's sample depend on
which other prompts were drawn before it, so a cached or resumed run would sample
differently from a fresh one. Here every random number is a hash of (row key, step,
token id): the row key comes from the request's own seed and the returned sequence's
index, the step counts the tokens generated so far. A draw is the Gumbel-max trick,
``argmax(logits + g)`` with ``g = -log(-log(u))``, an exact draw from ``softmax(logits)``.

Because a token's noise does not depend on which other tokens are looked at, a draw
over the top 1,024 candidates (the fast sampler in ``speedups``) and a draw over the
whole vocabulary after transformers' own warpers pick the same token whenever they keep
the same tokens; so the fast and the plain transformers paths, and any engine that
applies ``KeyedDraw`` (vLLM), give the same samples for the same logits.

The hash is splitmix64's finaliser on int64 tensors (multiplication wraps, shifts are
made logical by masking), so it runs on any device torch does.
"""

from __future__ import annotations

from typing import Any

# The generate() arguments that shape a draw; transformers applies them (as warpers)
# only when sampling. A sampled setting's other arguments (repetition penalty, n-gram
# blocking, banned words, ...) are processors that apply before them either way.
WARPER_ARGS = ("temperature", "top_k", "top_p", "min_p", "typical_p")

_MASK64 = 2**64 - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_TOKEN = 0xD6E8FEB86659FD93  # an odd constant that spreads token ids apart


def _signed(value: int) -> int:
    """A 64-bit unsigned value as the int64 that has its bits."""
    value &= _MASK64
    return value - 2**64 if value >= 2**63 else value


def _mix_int(x: int) -> int:
    """splitmix64's finaliser on a Python int (the reference for ``_mix``)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _M1) & _MASK64
    x = ((x ^ (x >> 27)) * _M2) & _MASK64
    return x ^ (x >> 31)


def _shr(x: Any, bits: int) -> Any:
    """Logical right shift of an int64 tensor (torch shifts arithmetically)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: Any) -> Any:
    """splitmix64's finaliser on an int64 tensor, element by element."""
    x = (x ^ _shr(x, 30)) * _signed(_M1)
    x = (x ^ _shr(x, 27)) * _signed(_M2)
    return x ^ _shr(x, 31)


def row_keys(seeds: list[int], sequences: int = 1) -> list[int]:
    """One key per row: each seed's rows for its returned sequences 0 .. sequences - 1."""
    return [
        _signed(_mix_int(_mix_int(seed) + index * _GOLDEN))
        for seed in seeds
        for index in range(sequences)
    ]


def gumbel(keys: Any, steps: Any, tokens: Any) -> Any:
    """Gumbel noise (float64) for each row's tokens at each row's step.

    keys: (rows,) int64; steps: an int or (rows,) int64, tokens generated before this
    one; tokens: (rows, n) or (n,) int64 token ids. Returns (rows, n).
    """
    import torch

    keys = keys.to(torch.int64)
    steps = torch.as_tensor(steps, dtype=torch.int64, device=keys.device)
    base = _mix(keys + (steps + 1) * _signed(_GOLDEN))
    tokens = tokens.to(device=keys.device, dtype=torch.int64)
    if tokens.dim() == 1:
        tokens = tokens[None, :]
    bits = _mix(base[:, None] ^ _mix(tokens * _signed(_TOKEN)))
    uniform = (_shr(bits, 11).to(torch.float64) + 0.5) * 2.0**-53  # in (0, 1)
    return -torch.log(-torch.log(uniform))


def draw(logits: Any, keys: Any, steps: Any, tokens: Any | None = None) -> Any:
    """The index each row draws from softmax(logits) (-inf: never drawn).

    ``tokens``: the token id of each column (None: column j is token j).
    """
    import torch

    if tokens is None:
        tokens = torch.arange(logits.shape[-1], device=logits.device)
    return torch.argmax(logits.to(torch.float64) + gumbel(keys, steps, tokens), dim=-1)


def warpers(args: dict[str, Any]) -> list[Any]:
    """transformers' own warpers for a sampled setting, in the order generate() uses."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    made: list[Any] = []
    temperature = args.get("temperature")
    if temperature is not None and temperature != 1.0:
        made.append(TemperatureLogitsWarper(temperature))
    top_k = args.get("top_k", 50)  # transformers' default when a sampled setting has none
    if top_k:
        made.append(TopKLogitsWarper(top_k=top_k))
    if args.get("top_p") is not None and args["top_p"] < 1.0:
        made.append(TopPLogitsWarper(top_p=args["top_p"]))
    if args.get("min_p") is not None:
        made.append(MinPLogitsWarper(min_p=args["min_p"]))
    if args.get("typical_p") is not None and args["typical_p"] < 1.0:
        made.append(TypicalLogitsWarper(mass=args["typical_p"]))
    return made


class KeyedDraw:
    """A logits processor that samples: after the warpers, it leaves each row only the
    token drawn with the row's key, so that greedy decoding picks it.

    Rows are the batch's rows in order (a prompt's returned sequences side by side, as
    ``row_keys`` lays them out); steps count the calls, one a generated token.
    """

    ROWS = 8  # rows drawn at once: a row of noise over the vocabulary is float64

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys
        self.step = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        keys = torch.tensor(self.keys, dtype=torch.int64, device=scores.device)
        chosen = torch.cat([
            draw(part, keys[start : start + self.ROWS], self.step)
            for start, part in zip(range(0, len(keys), self.ROWS), scores.split(self.ROWS),
                                   strict=True)
        ])
        self.step += 1
        return only(scores, chosen)


def only(scores: Any, chosen: Any) -> Any:
    """Scores under which greedy decoding picks ``chosen`` in every row (in place:
    transformers hands processors a copy of the logits made for them)."""
    scores.fill_(float("-inf"))
    return scores.scatter_(1, chosen[:, None], 0.0)
