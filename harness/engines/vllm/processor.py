"""The harness's decoding rules inside vLLM: one logits processor for every request.

vLLM decodes greedily here; what the transformers backend does with its logits
processors, this does to each request's row of logits, from ``SamplingParams.extra_args``
(key ``EXTRA``), in transformers' order:

- ``repetition_penalty`` over the prompt and the tokens generated so far;
- ``no_repeat_ngram_size``: a token that would repeat an n-gram of the sequence is banned;
- banned words, as token-id sequences (the last token of one is banned where the tokens
  before it have just been generated; a one-token word always);
- for a sampled request, transformers' warpers (``sampling.warpers``) and the keyed draw
  (``sampling.draw``, key from the request, step = tokens generated so far), after which
  only the drawn token is left, so that vLLM's greedy choice is the draw.

vLLM applies its own penalties after custom processors and its temperature, top-k and
top-p only when it samples, so none of those is used: the harness's rules come first and
the draw is the harness's own. The module imports vLLM and runs in its engine process.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from harness.engines.sampling import draw, only, warpers

EXTRA = "harness"  # the key of SamplingParams.extra_args this processor reads


class Row:
    """One request's rules and its growing token list (vLLM appends to ``output``)."""

    def __init__(self, rules: dict[str, Any], prompt: list[int], output: list[int]) -> None:
        self.prompt = prompt
        self.output = output
        self.penalty = rules.get("repetition_penalty")
        self.ngram = rules.get("no_repeat_ngram_size") or 0
        self.bad = [list(ids) for ids in rules.get("bad_words_ids", [])]
        self.key = rules.get("key")
        self.warp = rules.get("warp") or {}
        self._seen: dict[tuple[int, ...], set[int]] = {}  # n-gram heads -> next tokens
        self._indexed = 0  # positions of the sequence already in ``_seen``

    def sequence(self) -> list[int]:
        return self.prompt + self.output

    def banned(self) -> set[int]:
        """Tokens this row may not take next (n-gram repeats, banned words)."""
        tokens = self.sequence()
        out: set[int] = set()
        if self.ngram:
            n = self.ngram
            # transformers starts banning once the sequence has n - 1 tokens and more
            for end in range(max(self._indexed, n), len(tokens) + 1):
                self._seen.setdefault(tuple(tokens[end - n : end - 1]), set()).add(tokens[end - 1])
            self._indexed = max(self._indexed, len(tokens) + 1)
            if len(tokens) + 1 >= n:
                out |= self._seen.get(tuple(tokens[len(tokens) - n + 1 :]), set())
        for word in self.bad:
            head = word[:-1]
            if not head or tokens[len(tokens) - len(head) :] == head:
                out.add(word[-1])
        return out

    def restrict(self, logits: Any) -> None:
        """Apply the penalty and the bans to this row's logits (1-D), in place."""
        if self.penalty is not None and self.penalty != 1.0:
            seen = torch.tensor(sorted(set(self.sequence())), dtype=torch.long,
                                device=logits.device)
            values = logits[seen]
            logits[seen] = torch.where(values < 0, values * self.penalty, values / self.penalty)
        banned = self.banned()
        if banned:
            where = torch.tensor(sorted(banned), dtype=torch.long, device=logits.device)
            logits[where] = float("-inf")

    def draw_group(self) -> tuple[Any, int]:
        """What rows that draw together share: the warpers' arguments and the step."""
        return tuple(sorted(self.warp.items())), len(self.output)


def draw_rows(logits: Any, rows: list[int], keys: list[int], warp: dict[str, Any],
              step: int) -> None:
    """Sample ``rows`` of ``logits`` (one warp and step), leaving each its drawn token.

    transformers' warpers and the keyed draw, or the transformers backend's fast sampler
    where it serves (it draws the same tokens, over the top candidates only).
    """
    from harness.engines.sampler import Sampler, fast_sampling_applies

    index = torch.tensor(rows, dtype=torch.long, device=logits.device)
    part = logits.index_select(0, index)
    args = {"do_sample": True, **warp}
    if fast_sampling_applies(args):
        sampler = Sampler(args, keys)
        sampler.step = step
        logits[index] = sampler(None, part)
        return
    scores = part
    for warper in warpers(args):
        scores = warper(None, scores)
    chosen = draw(scores, torch.tensor(keys, dtype=torch.int64, device=logits.device), step)
    logits[index] = only(part, chosen)


class HarnessLogits(LogitsProcessor):
    """vLLM's batch-level logits processor holding a ``Row`` per request that has rules."""

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        self.rows: dict[int, Row] = {}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        extra = (sampling_params.extra_args or {}).get(EXTRA)
        if extra is not None and not isinstance(extra, dict):
            raise ValueError(f"extra_args[{EXTRA!r}] must be a mapping")

    def is_argmax_invariant(self) -> bool:
        return False  # it decides what greedy decoding picks

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, prompt, output in batch_update.added:
            rules = (params.extra_args or {}).get(EXTRA)
            if rules:
                self.rows[index] = Row(rules, list(prompt or []), output)
            else:
                self.rows.pop(index, None)
        for first, second, kind in batch_update.moved:
            a, b = self.rows.pop(first, None), self.rows.pop(second, None)
            if a is not None:
                self.rows[second] = a
            if b is not None and kind == MoveDirectionality.SWAP:
                self.rows[first] = b

    def apply(self, logits: Any) -> Any:
        groups: dict[tuple[Any, int], list[tuple[int, int]]] = {}  # -> (row, its key)
        for index, row in self.rows.items():
            row.restrict(logits[index])
            if row.key is not None:
                groups.setdefault(row.draw_group(), []).append((index, row.key))
        for (warp, step), drawn in groups.items():
            draw_rows(logits, [i for i, _ in drawn], [key for _, key in drawn], dict(warp), step)
        return logits
