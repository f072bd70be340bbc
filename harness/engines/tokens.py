"""Tokenization every engine shares: a prompt's ids, and a prompt + label split into the
context and the continuation whose log-probability ranks the label.

The tokenization boundary, decided once here:
- the continuation is ``" " + label`` (lm-evaluation-harness's target delimiter), as the
  shipped tasks write ``감정: {{ label }}``; when the prompt already ends in whitespace,
  that whitespace is moved from the prompt onto the label instead of adding a space;
- the prompt is tokenized as generation tokenizes it (``prompt_ids``); the label's
  tokens are those of prompt + continuation, tokenized whole, past the prompt's own
  tokens. Should the tokenizer merge across the boundary (so the whole no longer starts
  with the prompt's tokens), the continuation is tokenized on its own instead.
"""

from __future__ import annotations

from typing import Any


def prompt_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """A prompt's token ids, as every part of the harness counts and reads them.

    The tokenizer's own way, special tokens included, except that a prompt whose text
    already begins with the bos token (a chat template writes it) does not get a second
    one: as transformers tokenizes a chat-templated text.
    """
    ids = tokenizer(texts)["input_ids"]
    bos, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    if bos is None or not bos_text:
        return ids
    return [
        row[1:] if len(row) > 1 and row[0] == row[1] == bos and text.startswith(bos_text)
        else row
        for row, text in zip(ids, texts, strict=True)
    ]


DELIMITER = " "


def split(prompt: str, label: str) -> tuple[str, str]:
    """(context, continuation) for one prompt and label, as the module docstring says."""
    context = prompt.rstrip()
    trailing = prompt[len(context):]
    return context, (trailing or DELIMITER) + label


Pair = tuple[list[int], list[int]]  # (context token ids, continuation token ids)


def encode(tokenizer: Any, prompts: list[str], labels: list[str]) -> list[list[Pair]]:
    """For each prompt, for each label: (context token ids, continuation token ids)."""
    return encode_each(tokenizer, prompts, [labels] * len(prompts))


def encode_each(tokenizer: Any, prompts: list[str], choices: list[list[str]]) -> list[list[Pair]]:
    """``encode`` with each prompt's own list of continuations (multiple choice)."""
    pairs = [split(p, label) for p, own in zip(prompts, choices, strict=True) for label in own]
    contexts = prompt_ids(tokenizer, [c for c, _ in pairs])
    wholes = prompt_ids(tokenizer, [c + k for c, k in pairs])
    flat: list[Pair] = []
    for (_, continuation), context, whole in zip(pairs, contexts, wholes, strict=True):
        if whole[: len(context)] == context and len(whole) > len(context):
            tail = whole[len(context):]
        else:
            tail = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not context:  # nothing to condition the first label token on
            context = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None
                       else tokenizer.eos_token_id]
        flat.append((list(context), list(tail)))
    out: list[list[Pair]] = []
    start = 0
    for own in choices:
        out.append(flat[start : start + len(own)])
        start += len(own)
    return out
