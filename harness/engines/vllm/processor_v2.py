"""The harness's decoding rules inside vLLM's Model Runner V2 (its GPU default).

MRV2 loads only subclasses of its own ``LogitsProcessor`` (V1-interface processors are
refused at engine start). This one runs the same ``rules`` as the V1 processor
(``processor``), reading what MRV2 keeps on the device: each slot's committed tokens
(``req_states.all_token_ids``) and prompt length; a row's sequence is its first
``pos + 1`` tokens. A request without rules is declined in ``add_request``, so a batch
with none skips the processor altogether (MRV2 then does not even copy the logits).

MRV2 calls ``apply`` after its own penalties and bad words and before temperature,
min-p, top-k and top-p: a request whose rules include the keyed draw goes at
temperature 0, and the draw leaves it one possible token; a request sampled by vLLM
keeps its own sampling parameters and only has tokens banned here. The module's
imports are torch and vLLM's import-light interface, as MRV2's loader asks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

from harness.engines.vllm import rules


class HarnessLogitsV2(LogitsProcessor):
    """MRV2's logits processor running the harness's rules for the slots that have some."""

    def __init__(self, vllm_config: Any, req_states: Any) -> None:
        self.states = req_states
        self.table = rules.Table(req_states.max_num_reqs, req_states.device)

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        rules.validate(sampling_params.extra_args)

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        return self.table.add(req_idx, sampling_params.extra_args)

    def apply(self, logits: Any, ctx: Any) -> Any:
        batch = np.asarray(ctx.idx_mapping_np)
        mine = np.nonzero(self.table.active[batch])[0]  # batch positions with rules
        if len(mine) == 0:
            return logits
        slots = batch[mine]
        # one logits row per request (the harness runs no speculative decoding)
        at = torch.from_numpy(mine).to(logits.device)
        index = torch.from_numpy(slots).to(logits.device)
        lengths = ctx.pos.index_select(0, at).to(torch.int64) + 1
        steps = (lengths - self.states.prompt_len.gpu.index_select(0, index)).clamp(min=0)
        tokens = None
        if self.table.needs_tokens(slots):
            width = int(np.asarray(ctx.seq_lens_upper_bound_np)[mine].max())
            held = self.states.all_token_ids.gpu[:, :width]
            tokens = held.index_select(0, index).to(torch.int64)
        part = logits.index_select(0, at)
        rules.apply(part, self.table, slots, tokens, lengths, steps)
        logits[at] = part
        return logits
