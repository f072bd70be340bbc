"""N-gram blocking and banned words see each row as plain transformers sees the prompt
read alone: no padding, not between a shared prefix and the rest, not as eos.

The end-to-end tests use a bigram model (``tests.tiny_models.bigram_model``) whose
greedy choice after each token is set by hand, so that what must be blocked is known.
"""

from __future__ import annotations

import pytest

from harness.engines.contract import Options
from harness.engines.hf import prefill
from harness.engines.hf.backend import HFBackend
from harness.engines.models import load_model
from harness.tasks.decoding import Setting
from tests.tiny_models import bigram_model, byte_level_tokenizer, sentencepiece_tokenizer

INSTRUCTION = "다음 문장에 담긴 감정을 기쁨, 슬픔, 분노 중 하나로 고르세요.\n"
# a long and a short rest after the shared instruction: the short row's padding falls
# between the instruction and its rest
PROMPTS = [INSTRUCTION + "내일 면접인데 실수할까 봐 잠이 안 와요.\n감정:", INSTRUCTION + "감정:"]
BLOCK_2 = Setting("block2", {"no_repeat_ngram_size": 2})


def alone(loaded, prompt: str, args: dict, new: int = 4, bad: list[list[int]] | None = None
          ) -> list[int]:
    """Plain transformers' greedy tokens for one unpadded prompt."""
    import torch

    tok = loaded.tokenizer
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = loaded.model.generate(input_ids=ids, max_new_tokens=new, do_sample=False,
                                    pad_token_id=tok.pad_token_id, bad_words_ids=bad, **args)
    return out[0, ids.shape[1]:].tolist()


def boundary(tokenizer) -> tuple[int, int, int]:
    """(last token of the shared prefix, first token of the short prompt's rest, the
    short prompt's last token), checking that the fast path shares that prefix."""
    ids = tokenizer(PROMPTS)["input_ids"]
    shared = prefill.common_prefix(ids)
    assert shared >= prefill.MIN_SHARED and len(ids[1]) < len(ids[0])
    short = ids[1]
    assert len({short[shared - 1], short[shared], short[-1]}) == 3
    return short[shared - 1], short[shared], short[-1]


def test_the_ngram_spanning_the_shared_prefix_and_the_rest_is_blocked(tmp_path) -> None:
    tokenizer = sentencepiece_tokenizer()
    last_shared, first_rest, end = boundary(tokenizer)
    # after the prompt: the prefix's last token, then (unless blocked) the rest's first
    folder = bigram_model(tmp_path / "m", tokenizer, {end: last_shared, last_shared: first_rest})
    loaded = load_model(str(folder), "cpu")
    free = alone(loaded, PROMPTS[1], {})
    blocked = alone(loaded, PROMPTS[1], BLOCK_2.args)
    assert free[:2] == [last_shared, first_rest]
    assert blocked[0] == last_shared and blocked[1] != first_rest  # the prompt holds the pair

    for fast in (True, False):
        got = HFBackend(loaded, fast=fast).generate(PROMPTS, BLOCK_2, [None, None], Options(4))
        assert got[1][0].raw == loaded.tokenizer.decode(blocked, skip_special_tokens=True)
        assert got[0][0].raw == loaded.tokenizer.decode(alone(loaded, PROMPTS[0], BLOCK_2.args),
                                                        skip_special_tokens=True)


def test_eos_is_not_blocked_where_the_pad_token_is_eos(tmp_path) -> None:
    tokenizer = sentencepiece_tokenizer()
    tokenizer.pad_token = None  # a tokenizer without pad: the harness pads with eos
    last_shared, _, end = boundary(tokenizer)
    eos = tokenizer.eos_token_id
    folder = bigram_model(tmp_path / "m", tokenizer, {end: last_shared, last_shared: eos})
    loaded = load_model(str(folder), "cpu")
    assert loaded.tokenizer.pad_token_id == eos
    assert alone(loaded, PROMPTS[1], BLOCK_2.args)[:2] == [last_shared, eos]

    got = HFBackend(loaded).generate(PROMPTS, BLOCK_2, [None, None], Options(4))[1][0]
    assert got.stop_reason == "eos" and got.n_tokens == 2
    assert got.raw == loaded.tokenizer.decode([last_shared], skip_special_tokens=True)


def test_a_banned_word_is_banned_where_it_follows_a_space(tmp_path) -> None:
    tokenizer = byte_level_tokenizer()
    word = "합격"
    at_start = tokenizer(word, add_special_tokens=False)["input_ids"]
    after_a = tokenizer("a " + word, add_special_tokens=False)["input_ids"]
    spaced = after_a[len(tokenizer("a", add_special_tokens=False)["input_ids"]):]
    assert spaced != at_start  # " 합격" is other tokens than "합격"
    prompt = "문장: 시험에"
    end = tokenizer(prompt)["input_ids"][-1]
    chain = dict(zip([end, *spaced[:-1]], spaced))  # the model writes " 합격" next
    loaded = load_model(str(bigram_model(tmp_path / "m", tokenizer, chain)), "cpu")
    backend = HFBackend(loaded)

    free = backend.generate([prompt], Setting("greedy", {}), [None], Options(6))[0][0]
    banned = backend.generate([prompt], Setting("greedy", {}), [None],
                              Options(6, bad_words=(word,)))[0][0]

    assert free.raw.startswith(" " + word)
    assert word not in banned.raw
    assert backend._bad_words_ids((word,)) == [at_start, spaced]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_ngram_blocking_bans_what_transformers_bans_on_the_unpadded_rows(size: int) -> None:
    import torch
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    from harness.engines.blocking import NoRepeatNGram, RealTokens

    torch.manual_seed(0)
    vocab, pad = 12, 11
    rows = [torch.randint(0, 4, (n,)).tolist() for n in (9, 5, 2, 1)]  # few ids: repeats
    generated = torch.randint(0, 4, (len(rows), 3))
    width = max(len(r) for r in rows)
    # lay each row out as the fast path does: two shared tokens, padding, the rest
    shared = [7, 8]
    padded, mask = [], []
    for r in rows:
        gap = width - len(r)
        padded.append(shared + [pad] * gap + r)
        mask.append([1, 1] + [0] * gap + [1] * len(r))
    input_ids = torch.cat([torch.tensor(padded), generated], dim=1)
    scores = torch.zeros(len(rows), vocab)

    ours = NoRepeatNGram(size, RealTokens(torch.tensor(mask)))(input_ids, scores)

    for i, r in enumerate(rows):
        unpadded = torch.tensor([shared + r + generated[i].tolist()])
        theirs = NoRepeatNGramLogitsProcessor(size)(unpadded, torch.zeros(1, vocab))
        assert torch.equal(ours[i], theirs[0]), (size, i)
    assert torch.isinf(ours).any()  # something was banned at all
