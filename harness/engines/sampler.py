"""The fast sampler every engine shares: temperature, top-k and top-p on a few candidates.

It filters as transformers' warpers do and draws with ``sampling.draw`` (the keyed
Gumbel draw), so the transformers backend and vLLM's processor, which both run it, pick
the tokens transformers' own warpers followed by ``sampling.KeyedDraw`` would pick.
"""

from __future__ import annotations

from typing import Any

from harness.engines.sampling import draw, only

# Candidates of the fast sampler's top-p (the nucleus of most rows fits), and how many
# rows whose nucleus is wider go through transformers' full sort at once.
TOP_P_CANDIDATES = 1024
WIDE_ROWS = 8


def row_logsumexp(logits: Any, rows: int = 8) -> Any:
    """``logits.logsumexp(-1)`` a few rows at a time: torch's makes two temporaries of
    the input's size (2 x 67 MB for 64 rows of Gemma's vocabulary)."""
    import torch

    return torch.cat([part.logsumexp(-1) for part in logits.split(rows)])


def fast_sampling_applies(args: dict[str, Any]) -> bool:
    """Whether the fast ``Sampler`` below does a setting's filtering (temperature, top-k,
    top-p); any other warper (typical_p, min_p) goes through transformers' own."""
    return bool(args.get("do_sample")) and args.get("num_beams", 1) == 1 and not (
        {"typical_p", "min_p"} & args.keys()
    )


class Sampler:
    """Temperature, top-k and top-p sampling as a logits processor, for greedy decoding.

    transformers' top-p sorts the whole vocabulary of every row at every step (630 ms at
    64 rows of 262,144 here) and ``torch.multinomial`` over it took 275 ms. This does
    the same filtering on the top 1,024 candidates (sorting the whole vocabulary only for
    a row whose nucleus is wider) and draws with ``sampling.draw`` (keyed Gumbel noise:
    the same token transformers' warpers followed by ``sampling.KeyedDraw`` would draw),
    then leaves only the drawn token possible, so that greedy decoding picks it. The kept
    tokens and the distribution are transformers' (HF order: temperature, top-k, top-p;
    top_k 50 when unset, as transformers' default is).

    ``keys``: one per row (``sampling.row_keys``); steps count the calls.
    """

    def __init__(self, args: dict[str, Any], keys: list[int] | None = None) -> None:
        self.temperature = args.get("temperature") or 1.0
        top_k = args.get("top_k", 50)
        self.top_k = top_k if top_k else 0
        top_p = args.get("top_p")
        self.top_p = top_p if top_p is not None and top_p < 1.0 else None
        self.keys = keys
        self.step = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        assert self.keys is not None, "a Sampler that draws needs its rows' keys"
        keys = torch.tensor(self.keys, dtype=torch.int64, device=scores.device)
        chosen = self.choose(scores, keys, self.step)
        self.step += 1
        return only(scores, chosen)

    def choose(self, scores: Any, keys: Any, steps: Any) -> Any:
        """The token each row draws: ``keys`` (rows,) int64; ``steps`` an int or (rows,)
        int64, the tokens each row generated before this one."""
        import torch

        warm = self._warm(scores)
        values, indices, wide = self.candidates(warm)
        chosen = draw(values, keys, steps, indices)
        if indices is not None:
            chosen = indices.gather(1, chosen[:, None]).squeeze(1)
        for rows in wide:
            step = steps[rows] if isinstance(steps, torch.Tensor) and steps.dim() else steps
            chosen[rows] = draw(self._full(warm[rows]), keys[rows], step)
        return chosen

    def kept(self, scores: Any) -> Any:
        """Which tokens may be drawn, as a (rows, vocabulary) mask (for tests)."""
        import torch

        warm = self._warm(scores)
        values, indices, wide = self.candidates(warm)
        if indices is None:
            mask = torch.isfinite(values)
        else:
            mask = torch.zeros_like(scores, dtype=torch.bool)
            mask.scatter_(1, indices, torch.isfinite(values))
        for rows in wide:
            mask[rows] = torch.isfinite(self._full(warm[rows]))
        return mask

    def _warm(self, scores: Any) -> Any:
        scores = scores.float()
        return scores / self.temperature if self.temperature != 1.0 else scores

    def candidates(self, scores: Any) -> tuple[Any, Any, list[Any]]:
        """The warped logits of the tokens that may be drawn, with their token ids.

        Tokens filtered out hold -inf; ``indices`` is None when ``values`` spans the
        whole vocabulary. Rows whose nucleus is wider than the candidates come back
        apart, as row numbers in groups of a few (to filter with transformers' own code
        over the whole vocabulary, ``_full``), and their entries in ``values`` are not
        to be used.
        """
        import torch

        if self.top_p is None:
            if not self.top_k:
                return scores, None, []
            values, indices = torch.topk(scores, min(self.top_k, scores.shape[-1]), dim=-1)
            return values, indices, []
        if self.top_k and self.top_k <= TOP_P_CANDIDATES:
            values, indices = torch.topk(scores, self.top_k, dim=-1)
            probs = torch.softmax(values, dim=-1)  # top-k renormalised, as top-p sees it
            covered = None
        elif self.top_k:
            return self._full(scores), None, []
        else:
            values, indices = torch.topk(scores, min(TOP_P_CANDIDATES, scores.shape[-1]), dim=-1)
            probs = (values - row_logsumexp(scores)[:, None]).exp()
            covered = probs.sum(-1) >= self.top_p
        before = probs.cumsum(-1) - probs  # the mass ranked above each candidate
        keep = before < self.top_p  # transformers removes a token once that reaches top_p
        keep[:, 0] = True
        values = values.masked_fill(~keep, float("-inf"))
        wide = []
        if covered is not None and not bool(covered.all()):
            # a few rows at a time: transformers sorts the whole vocabulary of each
            wide = list((~covered).nonzero().squeeze(1).split(WIDE_ROWS))
        return values, indices, wide

    def _full(self, scores: Any) -> Any:
        """transformers' own filtering, for a nucleus wider than the candidates."""
        from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

        assert self.top_p is not None  # only a nucleus is ever wider than the candidates
        if self.top_k:
            scores = TopKLogitsWarper(self.top_k)(None, scores)
        return TopPLogitsWarper(self.top_p)(None, scores)
