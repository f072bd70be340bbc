"""Reading a batch of prompts into the KV cache, before ``generate`` continues it.

What it saves, against ``generate`` reading a left-padded batch itself:

- padding: the prompts are read in groups of similar length (a 0-shot prompt of 40
  tokens is not padded to a 3-shot one of 150) and their caches merged into one
  left-padded cache for decoding. On the emotion task's 120 prompts, batches of 64 rows
  read 10,560 token positions where the prompts hold 7,435;
- the common beginning of a group's prompts (the instruction), read once and shared:
  a group's rows are laid out as ``[common prefix][padding][rest of the prompt]``, and
  the attention mask and the position ids (counted over unmasked tokens) make each row
  read as its own prompt;
- each prompt, read once however many beams or returned sequences continue it
  (transformers repeats a prompt ``num_beams`` times before reading it);
- copying: the merged cache has room for the tokens to come, so a decoding step writes
  its keys and values in place instead of concatenating the whole cache again (41 ms of
  a 64-row step of 290 ms, at 120 cached tokens).

All but the last prompt token go into the cache; ``generate`` then reads that token
itself and continues as usual.

When each of these is exact (``conditions`` decides it once per model, and per batch for
attention windows):

- a shared prefix with padding in the middle of rows, and groups read apart and merged:
  every cache layer holds keys and values of attention (``layer_kind``: "attention" or
  "sliding"), whose padded positions the mask hides; a layer with a running state
  (linear attention, convolution) would carry the padding into that state. And the
  batch's longest prompt plus its new tokens fit in the shortest attention window: a
  window counts cache columns, padding included, so padding in the middle of a row
  would push its real tokens out of the window early (left padding does not: it lies
  before all of them);
- a prompt read once for all its beams or returned sequences (``repeat_rows``): every
  layer is of a kind listed in ``layer_kind``, running states included;
- room to grow: given to layers of keys and values only; others are left as they are.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from typing import Any

MIN_SHARED = 16  # a shorter common prefix is not worth a separate pass
# The fixed cost of one more forward pass, counted in prompt tokens read (a pass over 18
# layers costs ~40 ms over its ~1.2 ms a token position on this CPU).
PASS_COST = 32


@dataclass
class Batch:
    input_ids: Any  # (rows, length): prefix, padding, rest
    attention_mask: Any
    shared: int  # tokens of the common prefix


def common_prefix(token_ids: list[list[int]]) -> int:
    """Tokens at the start of every row worth reading once for all (0 if too few)."""
    shortest = min(len(ids) for ids in token_ids)
    shared = len(os.path.commonprefix(token_ids)) if len(token_ids) > 1 else 0
    shared = min(shared, shortest - 1)  # every row keeps a token of its own to read last
    return shared if shared >= MIN_SHARED else 0


def lay_out(
    token_ids: list[list[int]], pad_id: int, device: Any, shared: int | None = None
) -> Batch:
    """The batch's tensors, with the common prefix (if worth sharing) kept in front.

    ``shared``: the length of a prefix common to the rows, if already known.
    """
    import torch

    if shared is None:
        shared = common_prefix(token_ids)
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


def groups(lengths: list[int], shared: int = 0) -> list[list[int]]:
    """Row numbers split into groups of similar length, to read with little padding.

    Rows sorted by length are cut where the padding saved outweighs the cost of one more
    pass (``PASS_COST``); each group costs ``rows x (longest - shared) + PASS_COST``.
    Found exactly, by dynamic programming over the cut points.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [lengths[i] - shared for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j rows
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sizes[end - 1] + PASS_COST
            if cost < best[end]:
                best[end], cut[end] = cost, start
    found, end = [], len(order)
    while end:
        found.append(order[cut[end] : end])
        end = cut[end]
    return found[::-1]


def read(
    model: Any, token_ids: list[list[int]], pad_id: int, repeat: int = 1, room: int = 0,
    padding_inside: bool = True,
) -> tuple[Batch, Any | None]:
    """The batch ``generate`` is to continue, and the KV cache of all but its last column.

    Rows come back in the order of ``token_ids``, each repeated ``repeat`` times in the
    cache (not in the batch: ``generate`` repeats the inputs itself). ``room``: tokens
    the cache should hold without growing. ``padding_inside``: whether a shared prefix
    and groups read apart may put padding inside rows (see the module's conditions);
    without it the batch is read left-padded in one pass. Groups are merged only where
    the cache is one this module knows how to merge; the cache is None when every prompt
    is a single token.
    """
    device = model.device
    if not padding_inside:
        whole = lay_out(token_ids, pad_id, device, shared=0)
        return whole, _with_room(_read(model, whole, None), repeat, room)
    whole = lay_out(token_ids, pad_id, device)
    prefix = _read_prefix(model, whole)
    parts = groups([len(ids) for ids in token_ids], whole.shared)
    if len(parts) == 1:
        cache = _read(model, whole, prefix)
        return whole, _with_room(cache, repeat, room)
    read_parts = []
    for part in parts:
        batch = lay_out([token_ids[i] for i in part], pad_id, device, whole.shared)
        read_parts.append((part, batch, _read(model, batch, copy.deepcopy(prefix))))
    if not all(_mergeable(cache) for _, _, cache in read_parts):
        cache = _read(model, whole, prefix)
        return whole, _with_room(cache, repeat, room)
    return _merge(read_parts, len(token_ids), pad_id, repeat, room)


def _read_prefix(model: Any, batch: Batch) -> Any | None:
    """The cache of the batch's common prefix, for one row (None if nothing is shared)."""
    import torch

    if not batch.shared:
        return None
    with torch.inference_mode():
        prefix = batch.input_ids[:1, : batch.shared]
        return cache_of(model.base_model(input_ids=prefix, use_cache=True))
def _read(model: Any, batch: Batch, prefix: Any | None) -> Any | None:
    """The cache of every token of the batch but the last column (None if no token).

    ``prefix``: the cache of the batch's shared prefix for one row, used up here. The
    model's body alone does the reading: its output projection would compute logits
    nobody reads (on Gemma 3, 262,144 of them a row, 50 ms a pass however few rows).
    """
    import torch

    ids, mask = batch.input_ids, batch.attention_mask
    rows, length = ids.shape
    cache = prefix
    if cache is not None:
        repeat_rows(cache, rows)
    if length - 1 > batch.shared:
        with torch.inference_mode():
            cache = cache_of(model.base_model(
                input_ids=ids[:, batch.shared : length - 1],
                attention_mask=mask[:, : length - 1],
                position_ids=positions(mask[:, : length - 1])[:, batch.shared :],
                use_cache=True,
                **{cache_arg(model): cache},
            ))
    return cache


def cache_arg(model: Any) -> str:
    """The keyword that hands a KV cache to ``model`` and its ``generate``: ``cache`` in
    recent transformers, ``past_key_values`` before (5.19, which vLLM's CPU build pins)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    """The KV cache a forward pass returned, under either name (see ``cache_arg``)."""
    return output.cache if hasattr(output, "cache") else output.past_key_values


def layer_kind(layer: Any) -> str | None:
    """What a cache layer holds, for the kinds this module knows how to handle:
    "attention" (keys and values), "sliding" (the same within a window), "state" (a
    running state of linear attention or convolution, one per row), "state+attention",
    "state+sliding"; None for any other kind (this module leaves those alone)."""
    return _kinds().get(type(layer))


@functools.cache
def _kinds() -> dict[type, str]:
    from transformers import cache_utils as cu

    plain, sliding = _room_classes()
    kinds: dict[type, str] = {
        cu.DynamicLayer: "attention", plain: "attention",
        cu.DynamicSlidingWindowLayer: "sliding", sliding: "sliding",
    }
    # classes of recent transformers (5.x); older ones have other caches for such models
    for name, kind in (("LinearAttentionLayer", "state"),
                       ("LinearAttentionAndFullAttentionLayer", "state+attention"),
                       ("LinearAttentionAndSlidingWindowAttentionLayer", "state+sliding")):
        if hasattr(cu, name):
            kinds[getattr(cu, name)] = kind
    return kinds


def cache_kinds(cache: Any) -> list[str | None] | None:
    """The kind of each layer of a cache, or None for a cache that is not transformers'
    dynamic cache (a model's own cache class)."""
    from transformers.cache_utils import DynamicCache

    if type(cache) is not DynamicCache:
        return None
    return [layer_kind(layer) for layer in cache.layers]


def repeat_rows(cache: Any, times: int) -> None:
    """Repeat each row of a cache ``times`` times in place (row i becomes rows
    i * times ... i * times + times - 1), for the layer kinds of ``layer_kind``."""
    if times == 1:
        return
    from transformers.cache_utils import DynamicLayer

    for layer in cache.layers:
        kind = layer_kind(layer)
        if kind is None:
            raise ValueError(f"cannot repeat the rows of a {type(layer).__name__}")
        if kind.startswith("state"):
            for states in (layer.conv_states, layer.recurrent_states):
                for index, tensor in states.items():
                    if tensor is not None:
                        states[index] = tensor.repeat_interleave(times, dim=0)
        if kind != "state":
            DynamicLayer.batch_repeat_interleave(layer, times)


def _mergeable(cache: Any | None) -> bool:
    if cache is None:
        return True
    kinds = cache_kinds(cache)
    if kinds is None or any(kind not in ("attention", "sliding") for kind in kinds):
        return False
    for layer in cache.layers:
        if layer_kind(layer) == "sliding" and layer.get_seq_length() >= layer.sliding_window - 1:
            return False  # the window has started sliding: positions no longer line up
    return True


def _merge(
    read_parts: list[tuple[list[int], Batch, Any | None]], rows: int, pad_id: int,
    repeat: int, room: int,
) -> tuple[Batch, Any | None]:
    """One left-padded batch and cache out of groups read apart, rows back in order.

    Each layer's states are written once, straight into buffers with room for the
    tokens to come, and each group's states are let go as soon as they are copied:
    the merge holds little more than the merged cache.
    """
    import torch

    width = max(batch.input_ids.shape[1] for _, batch, _ in read_parts)
    device = read_parts[0][1].input_ids.device
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((rows, width), dtype=torch.long, device=device)
    for part, batch, _ in read_parts:
        at = torch.tensor(part, device=device)
        ids[at, width - batch.input_ids.shape[1] :] = batch.input_ids
        mask[at, width - batch.input_ids.shape[1] :] = batch.attention_mask
    merged = Batch(ids, mask, 0)
    caches = [cache for _, _, cache in read_parts]
    template = next((c for c in caches if c is not None), None)
    if template is None:
        return merged, None
    cached = width - 1
    for index, layer in enumerate(template.layers):
        # keys and values each with their own width (DeepSeek's attention: keys wider)
        # zeros, not empty: padding is masked out, but a NaN there would still spread
        buffers = tuple(
            torch.zeros((rows * repeat, like.shape[1], cached + room, like.shape[3]),
                        dtype=like.dtype, device=device)
            for like in (layer.keys, layer.values)
        )
        for (part, _, _), cache in zip(read_parts, caches, strict=True):
            if cache is None:
                continue  # one-token prompts: nothing cached, their columns stay padding
            group = cache.layers[index]
            # prompt i's rows are i * repeat ... i * repeat + repeat - 1
            targets = (torch.tensor(part, device=device)[:, None] * repeat
                       + torch.arange(repeat, device=device)).flatten()
            for buffer, states in zip(buffers, (group.keys, group.values), strict=True):
                buffer[targets, :, cached - states.shape[2] : cached] = (
                    states.repeat_interleave(repeat, dim=0)
                )
            if cache is not template:
                group.keys = group.values = None  # let go of the copied states
        template.layers[index] = _roomy(layer, (buffers[0], buffers[1]), cached)
    return merged, template


def _with_room(cache: Any | None, repeat: int, room: int) -> Any | None:
    """The cache, rows repeated, its layers given room for ``room`` more tokens."""
    import torch

    if cache is None:
        return None
    repeat_rows(cache, repeat)
    if room:
        for index, layer in enumerate(cache.layers):
            kind = layer_kind(layer)
            if kind not in ("attention", "sliding") or not layer.is_initialized:
                continue  # room for keys and values only
            if layer.keys.numel() == 0:
                continue
            if kind == "sliding" and layer.get_seq_length() >= layer.sliding_window - 1:
                continue  # the window slides already: the layer keeps its last columns
            used = layer.keys.shape[2]
            buffers = []
            for states in (layer.keys, layer.values):
                shape = (*states.shape[:2], used + room, states.shape[3])
                buffer = torch.empty(shape, dtype=states.dtype, device=states.device)
                buffer[:, :, :used] = states
                buffers.append(buffer)
            cache.layers[index] = _roomy(layer, (buffers[0], buffers[1]), used)
    return cache


def _roomy(layer: Any, buffers: tuple[Any, Any], used: int) -> Any:
    """A layer like ``layer`` whose states are the first ``used`` columns of buffers."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    plain, sliding = _room_classes()
    kind = sliding if isinstance(layer, DynamicSlidingWindowLayer) else plain
    roomy = object.__new__(kind)  # no __init__: the layer's state is copied just below
    roomy.__dict__.update(layer.__dict__)
    roomy._buffers = buffers
    roomy.keys, roomy.values = buffers[0][:, :, :used], buffers[1][:, :, :used]
    if hasattr(roomy, "cumulative_length"):
        roomy.cumulative_length = used
    return roomy


@functools.cache
def _room_classes() -> tuple[type[Any], type[Any]]:
    """The layer classes below, built on first use (transformers loads lazily)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    class RoomyLayer(DynamicLayer):
        """A cache layer whose keys and values are views of buffers with room to grow.

        ``update`` writes new states into the room; once it is used up, or after a
        beam search reordered the rows (which leaves compact tensors), it concatenates
        as a ``DynamicLayer`` does.
        """

        _buffers: tuple[Any, Any] | None = None

        def _fits(self, new: int) -> bool:
            buffers, keys = self._buffers, self.keys
            return (
                buffers is not None and keys is not None and self.is_initialized
                and keys.data_ptr() == buffers[0].data_ptr()
                and keys.shape[0] == buffers[0].shape[0]
                and keys.shape[2] + new <= buffers[0].shape[2]
            )

        def _write(self, key_states: Any, value_states: Any) -> tuple[Any, Any]:
            assert self._buffers is not None and self.keys is not None  # see _fits
            used, new = self.keys.shape[2], key_states.shape[2]
            keys, values = self._buffers
            keys[:, :, used : used + new] = key_states
            values[:, :, used : used + new] = value_states
            self.keys, self.values = keys[:, :, : used + new], values[:, :, : used + new]
            return self.keys, self.values

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            if not self._fits(key_states.shape[2]):
                self._buffers = None
                return super().update(key_states, value_states, *args, **kwargs)
            return self._write(key_states, value_states)

    class RoomySlidingLayer(RoomyLayer, DynamicSlidingWindowLayer):
        """The same, for a sliding-window layer, while the window has not filled."""

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            new = key_states.shape[2]
            if not self._fits(new) or self.cumulative_length + new >= self.sliding_window - 1:
                self._buffers = None
                return DynamicSlidingWindowLayer.update(
                    self, key_states, value_states, *args, **kwargs
                )
            self.cumulative_length += new
            return self._write(key_states, value_states)

    return RoomyLayer, RoomySlidingLayer
