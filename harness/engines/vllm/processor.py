"""The harness's decoding rules inside vLLM's V1 model runner (the CPU build's runner).

What the transformers backend does with its logits processors, this does to each row of
logits whose request carries rules in ``SamplingParams.extra_args`` (key ``rules.EXTRA``):
repetition penalty, n-gram blocking, banned words and, for a sampled request of the keyed
sampler, transformers' warpers and the keyed draw, after which only the drawn token is
left, so that vLLM's greedy choice is the draw. The arithmetic is ``rules``' (shared with
the Model Runner V2 processor, ``processor_v2``); this class only keeps the V1
interface's bookkeeping: which batch index holds which request, and its token lists
(vLLM appends each generated token to the list it handed over), gathered into one
tensor a step.

vLLM applies its own penalties after V1 custom processors and its temperature, top-k and
top-p only when it samples, so a request with rules goes to vLLM at temperature 0 here.
The module imports vLLM and runs in its engine process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from harness.engines.vllm import rules
from harness.engines.vllm.rules import EXTRA

__all__ = ["EXTRA", "HarnessLogits"]


class HarnessLogits(LogitsProcessor):
    """vLLM's V1 batch-level logits processor running the harness's rules."""

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        slots = getattr(getattr(vllm_config, "scheduler_config", None), "max_num_seqs", 256)
        self.table = rules.Table(slots or 256, device)
        self.sequences: dict[int, tuple[list[int], list[int]]] = {}  # index -> prompt, output

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        rules.validate(sampling_params.extra_args)

    def is_argmax_invariant(self) -> bool:
        return False  # it decides what greedy decoding picks

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        # in the order vLLM's own processors take them: added, removed, moved
        for index, params, prompt, output in batch_update.added:
            if self.table.add(index, params.extra_args):
                self.sequences[index] = (list(prompt or []), output)
            else:
                self.sequences.pop(index, None)
        for index in batch_update.removed:
            self.table.remove(index)
            self.sequences.pop(index, None)
        for first, second, kind in batch_update.moved:
            swap = kind == MoveDirectionality.SWAP
            self.table.move(first, second, swap)
            a, b = self.sequences.pop(first, None), self.sequences.pop(second, None)
            if a is not None:
                self.sequences[second] = a
            if b is not None and swap:
                self.sequences[first] = b

    def apply(self, logits: Any) -> Any:
        if not self.sequences:
            return logits
        indices = sorted(self.sequences)
        slots = np.array(indices, dtype=np.int64)
        held = [self.sequences[i] for i in indices]
        steps = torch.tensor([len(output) for _, output in held], dtype=torch.int64)
        tokens = lengths = None
        if self.table.needs_tokens(slots):
            tokens, lengths = rules.padded([prompt + output for prompt, output in held])
            tokens, lengths = tokens.to(logits.device), lengths.to(logits.device)
        index = torch.from_numpy(slots).to(logits.device)
        part = logits.index_select(0, index)
        rules.apply(part, self.table, slots, tokens, lengths, steps.to(logits.device))
        logits[index] = part
        return logits

