"""N-gram blocking and banned words that see each row's own tokens, never its padding.

transformers' ``no_repeat_ngram_size`` and ``bad_words_ids`` look at a row as it lies in
the batch. Left padding adds n-grams of the pad token; the fast path's rows
``[shared prefix][padding][rest]`` also split the n-gram that spans the prefix and the
rest, and where the pad token is eos (a tokenizer without one) eos itself is blocked
after the prefix. Here both are applied to each row with its padding taken out, so
they ban what transformers bans for the same prompt read alone, unpadded.

The processors know which prompt columns are padding from the attention mask of the
prompts; a row of ``input_ids`` belongs to prompt ``row // (rows / prompts)`` (beams and
returned sequences are laid out prompt by prompt). Everything after the prompt columns
was generated and counts as the row's own.
"""

from __future__ import annotations

from typing import Any

_NONE = -1  # stands for a padding column: equals no token id


class RealTokens:
    """Each row of a batch with its prompt's padding moved in front and masked.

    ``prompt_mask``: (prompts, columns), 1 for a real prompt token, 0 for padding.
    Calling it on ``input_ids`` (rows, columns + generated) gives ids of the same shape
    where each row's real tokens are at the end, in order, and padding columns hold -1.
    """

    def __init__(self, prompt_mask: Any) -> None:
        import torch

        mask = prompt_mask.bool()
        # a stable sort on the mask puts padding (0) first and keeps the order of the rest
        self.order = torch.sort(mask.int(), dim=1, stable=True).indices
        self.real = mask.gather(1, self.order)
        self.width = mask.shape[1]

    def __call__(self, input_ids: Any) -> Any:
        import torch

        repeat = input_ids.shape[0] // self.order.shape[0]
        order, real = self.order, self.real
        if repeat > 1:
            order = order.repeat_interleave(repeat, dim=0)
            real = real.repeat_interleave(repeat, dim=0)
        prompt = input_ids[:, : self.width].gather(1, order.to(input_ids.device))
        prompt = prompt.masked_fill(~real.to(input_ids.device), _NONE)
        return torch.cat([prompt, input_ids[:, self.width :]], dim=1)


class NoRepeatNGram:
    """No n-gram twice in a row's own tokens: transformers' ``no_repeat_ngram_size``
    (a token is banned when, with the last n - 1 tokens, it would repeat an n-gram the
    row already holds), over each row without its padding."""

    def __init__(self, size: int, rows: RealTokens) -> None:
        self.size = size
        self.rows = rows

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        ids = self.rows(input_ids)
        n = self.size
        if ids.shape[1] < n:
            return scores
        grams = ids.unfold(1, n, 1)  # (rows, windows, n): every n-gram of the row
        whole = (grams != _NONE).all(-1)
        last = ids[:, ids.shape[1] - n + 1 :]  # the n - 1 tokens a new one would follow
        ready = (last != _NONE).all(-1)  # transformers: no bans until the row has n - 1
        hits = whole & ready[:, None] & (grams[..., : n - 1] == last[:, None, :]).all(-1)
        rows, windows = hits.nonzero(as_tuple=True)
        if rows.numel():
            scores = scores.clone()
            scores[rows, grams[rows, windows, n - 1]] = float("-inf")
        return scores


class BannedWords:
    """transformers' banned words (``bad_words_ids``: a one-token word never, a longer one
    not as its last token after the others; eos is never banned), matched against each
    row's own tokens."""

    def __init__(self, words: list[list[int]], eos: int | list[int] | None, rows: RealTokens
                 ) -> None:
        from transformers.generation.logits_process import NoBadWordsLogitsProcessor

        self.ban = NoBadWordsLogitsProcessor(words, eos_token_id=eos)
        self.rows = rows

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.ban(self.rows(input_ids), scores)


def processors(args: dict[str, Any], bad_words: list[list[int]], eos: Any,
               prompt_mask: Any) -> list[Any]:
    """The processors for a setting's ``no_repeat_ngram_size`` and the banned words."""
    rows = RealTokens(prompt_mask)
    made: list[Any] = []
    size = args.get("no_repeat_ngram_size")
    if size:
        made.append(NoRepeatNGram(size, rows))
    if bad_words:
        made.append(BannedWords(bad_words, eos, rows))
    return made


def bad_words_ids(tokenizer: Any, words: tuple[str, ...]) -> list[list[int]]:
    """The token sequences banned for ``words``, the same on every backend: a special
    token by its id; another word as the tokenizer writes it alone and as it writes it
    after a space inside a text (as transformers' docs advise: " 합격" is mostly other
    tokens than "합격", and a word mostly follows a space)."""
    ids: list[list[int]] = []
    for word in words:
        special = tokenizer.convert_tokens_to_ids(word)
        if word in tokenizer.all_special_tokens and special is not None:
            spellings = [[special]]
        else:
            spellings = [tokenizer(word, add_special_tokens=False)["input_ids"],
                         _after_a_space(tokenizer, word)]
        ids += [s for s in spellings if s and s not in ids]
    return ids


def _after_a_space(tokenizer: Any, word: str) -> list[int]:
    """The tokens of `` word`` where it follows a word inside a text: those of "a word"
    past those of "a" (the tokens of " word" on its own where the two do not line up)."""
    before = tokenizer("a", add_special_tokens=False)["input_ids"]
    whole = tokenizer("a " + word, add_special_tokens=False)["input_ids"]
    if whole[: len(before)] == before and len(whole) > len(before):
        return whole[len(before) :]
    return tokenizer(" " + word, add_special_tokens=False)["input_ids"]
