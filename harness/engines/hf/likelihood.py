"""Classification without generation: each label ranked by its log-probability.

As lm-evaluation-harness scores its multiple-choice tasks: for every prompt and every
label, one teacher-forced forward pass gives the log-probability of the label's tokens
following the prompt; the label with the highest sum is the answer. A run with
``scoring: likelihood`` (or ``both``) adds these answers as the setting "likelihood"
(``records.ranked``), so the summary, report and CSV take them as they are. This module
is the transformers backend's ranking; ``runner.rank`` runs it for a task.

The tokenization boundary is decided once for every engine, in ``tokens.encode``.

A prompt is read once and its cache repeated for each label where ``prefill.repeat_rows``
knows every layer of the model's cache (``conditions``); otherwise each prompt + label is
read whole, left-padded, as plain transformers would score it.
"""

from __future__ import annotations

from typing import Any

from harness.engines.contract import LabelScore
from harness.engines.hf.prefill import cache_arg, cache_of, repeat_rows
from harness.engines.tokens import encode, encode_each

_WHOLE_ROWS = 8  # rows a pass when each prompt + label is read whole


def rank_labels(model: Any, tokenizer: Any, prompts: list[str], labels: list[str],
                rows: int = 64, reuse_prompt: bool = True) -> list[list[LabelScore]]:
    """Every label's log-probability after every prompt, in the labels' order.

    Prompts go through the model ``rows // len(labels)`` at a time, longest first, left
    padded, with positions counted from each row's first real token. With
    ``reuse_prompt`` a prompt is read once: its cache is repeated for each of its labels,
    whose tokens then take one more pass together (a prompt of a hundred tokens and five
    short labels costs about one fifth of scoring each pair from the start); without,
    each prompt + label is read whole.
    """
    encoded = encode(tokenizer, prompts, labels)
    order = sorted(range(len(prompts)), key=lambda p: -len(encoded[p][0][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    size = max(1, rows // len(labels))
    sums: dict[int, list[float]] = {}
    for start in range(0, len(order), size):
        batch = order[start : start + size]
        score = _score if reuse_prompt else _score_whole
        scored = score(model, pad, [encoded[p][0][0] for p in batch],
                       [[cont for _, cont in encoded[p]] for p in batch])
        sums.update(zip(batch, scored, strict=True))
    return [
        [LabelScore(label, sums[p][j], len(encoded[p][j][1])) for j, label in enumerate(labels)]
        for p in range(len(prompts))
    ]


def rank_choices(model: Any, tokenizer: Any, prompts: list[str], choices: list[list[str]],
                 rows: int = 64, reuse_prompt: bool = True) -> list[list[LabelScore]]:
    """``rank_labels`` with each prompt's own choices (multiple choice): the prompts that
    have as many choices go through ``rank_labels``' batching together."""
    encoded = encode_each(tokenizer, prompts, choices)
    by_count: dict[int, list[int]] = {}
    for p, own in enumerate(choices):
        by_count.setdefault(len(own), []).append(p)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    score = _score if reuse_prompt else _score_whole
    sums: dict[int, list[float]] = {}
    for count, members in by_count.items():
        order = sorted(members, key=lambda p: -len(encoded[p][0][0]))
        size = max(1, rows // count)
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            scored = score(model, pad, [encoded[p][0][0] for p in batch],
                           [[cont for _, cont in encoded[p]] for p in batch])
            sums.update(zip(batch, scored, strict=True))
    return [
        [LabelScore(choice, sums[p][j], len(encoded[p][j][1])) for j, choice in enumerate(own)]
        for p, own in enumerate(choices)
    ]


def _score(model: Any, pad: int, contexts: list[list[int]],
           continuations: list[list[list[int]]]) -> list[list[float]]:
    """Summed log-probabilities of each context's continuations (teacher-forced)."""
    import torch

    device = model.device
    n_labels = len(continuations[0])
    width = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for i, context in enumerate(contexts):
        ids[i, width - len(context):] = torch.tensor(context)
        mask[i, width - len(context):] = 1
    ids, mask = ids.to(device), mask.to(device)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
                    logits_to_keep=1)
        first = out.logits[:, -1].float().log_softmax(-1).cpu()  # the first label token
        flat = [cont for per in continuations for cont in per]
        longest = max(len(cont) for cont in flat)
        later = None
        if longest > 1:  # the other label tokens, on the prompts' repeated cache
            cache = cache_of(out)
            repeat_rows(cache, n_labels)
            tail = torch.full((len(flat), longest - 1), pad, dtype=torch.long)
            tail_mask = torch.zeros_like(tail)
            for r, cont in enumerate(flat):
                tail[r, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
                tail_mask[r, : len(cont) - 1] = 1
            tail, tail_mask = tail.to(device), tail_mask.to(device)
            lengths = mask.sum(-1).repeat_interleave(n_labels)
            positions = lengths[:, None] + torch.arange(longest - 1, device=device)[None]
            logits = model(
                input_ids=tail, attention_mask=torch.cat(
                    [mask.repeat_interleave(n_labels, dim=0), tail_mask], dim=1),
                position_ids=positions, use_cache=True, **{cache_arg(model): cache},
            ).logits.float()
            targets = torch.full((len(flat), longest - 1), 0, dtype=torch.long)
            for r, cont in enumerate(flat):
                targets[r, : len(cont) - 1] = torch.tensor(cont[1:], dtype=torch.long)
            targets = targets.to(device)
            later = (logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                     - logits.logsumexp(-1)).cpu()
    result = []
    for b, per in enumerate(continuations):
        sums = []
        for j, cont in enumerate(per):
            total = float(first[b, cont[0]])
            if later is not None and len(cont) > 1:
                total += float(later[b * n_labels + j, : len(cont) - 1].sum())
            sums.append(total)
        result.append(sums)
    return result


def _score_whole(model: Any, pad: int, contexts: list[list[int]],
                 continuations: list[list[list[int]]]) -> list[list[float]]:
    """The same sums, each context + continuation read whole, left-padded, a few rows a
    pass (their logits over a large vocabulary take memory)."""
    import torch

    rows = [(context, cont) for context, per in zip(contexts, continuations, strict=True)
            for cont in per]
    width = max(len(c) + len(k) for c, k in rows)
    keep = max(len(k) for _, k in rows) + 1  # the continuations fill the last columns
    device = model.device
    sums: list[float] = []
    for start in range(0, len(rows), _WHOLE_ROWS):
        part = rows[start : start + _WHOLE_ROWS]
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for i, (context, cont) in enumerate(part):
            ids[i, width - len(context) - len(cont):] = torch.tensor(context + cont)
            mask[i, width - len(context) - len(cont):] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep,
                           position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits.float()
        for i, (_, cont) in enumerate(part):
            # each continuation token is predicted by the column before it
            span = logits[i, keep - len(cont) - 1 : keep - 1].log_softmax(-1)
            chosen = torch.tensor(cont, device=span.device)[:, None]
            sums.append(float(span.gather(-1, chosen).sum()))
    n = len(continuations[0])
    return [sums[b * n : (b + 1) * n] for b in range(len(contexts))]

