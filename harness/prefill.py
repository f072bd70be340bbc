"""Reading a batch of prompts into the KV cache once, before ``generate`` continues it.

Two kinds of work are shared:

- the prompts' common beginning (the instruction, often a third of a few-shot prompt's
  tokens), read once for the whole batch: rows are laid out as
  ``[common prefix][padding][rest of the prompt]``, and the attention mask and the
  position ids (counted over unmasked tokens) make each row read as its own prompt;
- each prompt, read once however many beams or returned sequences continue it (
  transformers repeats a prompt ``num_beams`` times before reading it).

All but the last prompt token go into the cache; ``generate`` then reads that token
itself and continues as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_SHARED = 16  # a shorter common prefix is not worth a separate pass


@dataclass
class Batch:
    input_ids: Any  # (rows, length): prefix, padding, rest
    attention_mask: Any
    shared: int  # tokens of the common prefix


def lay_out(token_ids: list[list[int]], pad_id: int, device: Any) -> Batch:
    """The batch's tensors, with the common prefix (if worth sharing) kept in front."""
    import os

    import torch

    shortest = min(len(ids) for ids in token_ids)
    shared = len(os.path.commonprefix(token_ids)) if len(token_ids) > 1 else 0
    shared = min(shared, shortest - 1)  # every row keeps a token of its own to read last
    if shared < MIN_SHARED:
        shared = 0
    rest = [ids[shared:] for ids in token_ids]
    width = max(len(r) for r in rest)
    rows, masks = [], []
    for r in rest:
        gap = width - len(r)
        rows.append(token_ids[0][:shared] + [pad_id] * gap + r)
        masks.append([1] * shared + [0] * gap + [1] * len(r))
    return Batch(
        torch.tensor(rows, device=device), torch.tensor(masks, device=device), shared
    )


def positions(mask: Any) -> Any:
    """Position ids counted over the unmasked tokens, as ``generate`` counts them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def prefill(model: Any, batch: Batch, repeat: int) -> Any | None:
    """The KV cache of every prompt token but the last, each row repeated ``repeat`` times.

    None when there is nothing to share (one sequence per prompt and no common prefix):
    ``generate`` then reads the prompts itself.
    """
    import torch

    if repeat == 1 and batch.shared == 0:
        return None
    ids, mask = batch.input_ids, batch.attention_mask
    rows, length = ids.shape
    cache = None
    start = 0
    with torch.inference_mode():
        if batch.shared:
            out = model(input_ids=ids[:1, : batch.shared], use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            cache.batch_repeat_interleave(rows)
            start = batch.shared
        if length - 1 > start:
            out = model(
                input_ids=ids[:, start : length - 1],
                attention_mask=mask[:, : length - 1],
                position_ids=positions(mask[:, : length - 1])[:, start:],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
    if cache is None:  # one-token prompts: nothing to read ahead
        return None
    if repeat > 1:
        cache.batch_repeat_interleave(repeat)
    return cache
