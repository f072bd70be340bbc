"""The harness's decoding rules on a batch of logits rows: tensor arithmetic only.

Both of the harness's logits processors (``processor.HarnessLogits`` for vLLM's V1 model
runner, ``processor_v2.HarnessLogitsV2`` for Model Runner V2) gather their rows into a
``Rows`` and call ``restrict`` and ``draw_keyed``; beam search (``beam``) asks ``bans``
and ``penalise`` for the same answers. Everything works on whole batches (no loop over
rows), on whatever device the logits are, in transformers' order and arithmetic:

- repetition penalty over the prompt and the tokens generated so far (gathered, changed
  with ``penalise``, scattered back, as transformers' processor does);
- ``no_repeat_ngram_size``: a token that would repeat an n-gram of the row is banned
  (none before the row holds n - 1 tokens);
- banned words (token-id sequences): a word's last token is banned where its other
  tokens end the row (a one-token word always);
- for a sampled row, transformers' warpers and the keyed draw (``sampling``), leaving
  the drawn token alone possible;
- for a row that scores a given continuation (label ranking), that continuation's next
  token alone possible, so that the engine reads it as it would generate it, on the
  prompt's cached keys and values.

Bans are written with ``scatter_reduce(amin)`` of -inf (a ban) or +inf (no ban), so that
one tensor of candidates, repeats included, serves every row without a host sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

NO_TOKEN = -1  # an empty place in a word table
_NOWHERE = -2  # before a row's first token: equals no token and no NO_TOKEN


def penalise(values: Any, penalty: Any) -> Any:
    """transformers' repetition penalty on log-probabilities or logits: a negative value
    multiplied by the penalty, another divided by it (tensors or floats)."""
    if isinstance(values, torch.Tensor):
        return torch.where(values < 0, values * penalty, values / penalty)
    return values * penalty if values < 0 else values / penalty


@dataclass
class Rows:
    """Some rows of a batch, with what the rules need to know of each.

    ``tokens``: (rows, columns) int64, each row's sequence (prompt, then what it has
    generated) from column 0; columns past a row's length hold anything.
    ``lengths``: (rows,) int64, tokens in each row's sequence.
    ``penalty``: (rows,) float32, 1 where a row has none; None: no row has one.
    ``ngram``: (rows,) int64, 0 where a row blocks none; None: no row does;
    ``ngram_sizes``: the distinct sizes above 0 (known on the host, to loop over sizes).
    ``words``: (rows, words, width) int64 banned words, each right-aligned with
    ``NO_TOKEN`` before it (a row with fewer words has rows of ``NO_TOKEN``); None: none.
    """

    tokens: Any
    lengths: Any
    penalty: Any = None
    ngram: Any = None
    ngram_sizes: tuple[int, ...] = ()
    words: Any = None

    def real(self) -> Any:
        """``tokens`` with each column past a row's length holding the row's first token
        (a token the row holds anyway, so it changes nothing it is used for)."""
        columns = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        inside = columns[None, :] < self.lengths[:, None]
        return torch.where(inside, self.tokens, self.tokens[:, :1])

    def tail(self, width: int) -> Any:
        """The last ``width`` tokens of each row, ``_NOWHERE`` before its first."""
        at = self.lengths[:, None] - width + torch.arange(width, device=self.tokens.device)
        if self.tokens.shape[1] == 0:
            return torch.full(at.shape, _NOWHERE, dtype=torch.int64, device=at.device)
        got = self.tokens.gather(1, at.clamp(0, self.tokens.shape[1] - 1))
        return torch.where(at >= 0, got, _NOWHERE)


def padded(sequences: list[list[int]]) -> tuple[Any, Any]:
    """Token lists as one (rows, longest) tensor from column 0, and their lengths (one
    tensor built on the host for the whole batch)."""
    width = max(len(s) for s in sequences)
    rows = [s + [0] * (width - len(s)) for s in sequences]
    return (torch.tensor(rows, dtype=torch.int64),
            torch.tensor([len(s) for s in sequences], dtype=torch.int64))


def word_table(words: list[list[list[int]]], device: Any = None) -> Any:
    """Each row's banned words (lists of token ids) as ``Rows.words`` lays them out."""
    count = max((len(w) for w in words), default=0)
    width = max((len(word) for row in words for word in row), default=0)
    table = torch.full((len(words), max(count, 1), max(width, 1)), NO_TOKEN, dtype=torch.int64)
    for r, row in enumerate(words):
        for w, word in enumerate(row):
            table[r, w, table.shape[2] - len(word):] = torch.tensor(word, dtype=torch.int64)
    return table.to(device) if device is not None else table


def repetition(logits: Any, rows: Rows) -> None:
    """transformers' repetition penalty on ``logits`` (rows, vocabulary), in place."""
    if rows.penalty is None:
        return
    seen = rows.real()
    values = logits.gather(1, seen)
    logits.scatter_(1, seen, penalise(values, rows.penalty[:, None].to(values.dtype)))


def bans(rows: Rows) -> tuple[Any, Any]:
    """(candidates, hit): token ids (rows, m) and whether each is banned for its row,
    from n-gram blocking and banned words together."""
    tokens, hits = [], []
    if rows.ngram is not None:
        real = rows.real()
        for n in rows.ngram_sizes:
            token, hit = _ngram_bans(rows, real, n)
            tokens.append(token)
            hits.append(hit)
    if rows.words is not None:
        last = rows.words[:, :, -1]
        head = rows.words[:, :, :-1]
        tail = rows.tail(head.shape[2])
        same = (head == tail[:, None, :]) | (head == NO_TOKEN)
        tokens.append(last.clamp(min=0))
        hits.append(same.all(-1) & (last != NO_TOKEN))
    if not tokens:
        empty = torch.zeros((rows.lengths.shape[0], 0), dtype=torch.int64,
                            device=rows.lengths.device)
        return empty, empty.bool()
    return torch.cat(tokens, dim=1), torch.cat(hits, dim=1)


def _ngram_bans(rows: Rows, real: Any, n: int) -> tuple[Any, Any]:
    """The n-gram blocking of the rows whose size is ``n``: each window's last token,
    banned where the window's other tokens are the row's last n - 1."""
    width = real.shape[1]
    if width < n:
        empty = torch.zeros((real.shape[0], 0), dtype=torch.int64, device=real.device)
        return empty, empty.bool()
    windows = real.unfold(1, n, 1)  # (rows, windows, n): every n-gram of every row
    starts = torch.arange(windows.shape[1], device=real.device)
    whole = starts[None, :] + n <= rows.lengths[:, None]
    ready = (rows.lengths >= n - 1) & (rows.ngram == n)
    follows = (windows[..., : n - 1] == rows.tail(n - 1)[:, None, :]).all(-1)
    return windows[..., n - 1], follows & whole & ready[:, None]


def ban(logits: Any, tokens: Any, hit: Any) -> None:
    """-inf where ``hit`` at ``tokens`` of each row of ``logits``, in place."""
    if tokens.shape[1] == 0:
        return
    inf = torch.tensor(float("inf"), dtype=logits.dtype, device=logits.device)
    logits.scatter_reduce_(1, tokens, torch.where(hit, -inf, inf), reduce="amin")


def restrict(logits: Any, rows: Rows) -> None:
    """The penalty and the bans of every row, in place (transformers' order)."""
    repetition(logits, rows)
    ban(logits, *bans(rows))


def draw_keyed(logits: Any, keys: Any, steps: Any, warp: dict[str, Any]) -> Any:
    """Each row of ``logits`` (one warp) sampled with its key at its step: transformers'
    warpers and the keyed draw, or the fast sampler where it serves (it draws the same
    tokens over the top candidates only). Returns logits where only the drawn token is
    possible, so that greedy decoding picks it."""
    from harness.engines.sampler import Sampler, fast_sampling_applies
    from harness.engines.sampling import draw, only, warpers

    args = {"do_sample": True, **warp}
    if fast_sampling_applies(args):
        return only(logits, Sampler(args).choose(logits, keys, steps))
    scores = logits
    for warper in warpers(args):
        scores = warper(None, scores)
    return only(logits, draw(scores, keys, steps))


# ---------------------------------------------------------------- per-request rules

EXTRA = "harness"  # the key of SamplingParams.extra_args the processors read


def validate(extra_args: dict[str, Any] | None) -> None:
    """A request's rules as both processors accept them (``ValueError`` otherwise)."""
    rules = (extra_args or {}).get(EXTRA)
    if rules is None:
        return
    if not isinstance(rules, dict):
        raise ValueError(f"extra_args[{EXTRA!r}] must be a mapping")
    unknown = set(rules) - {"repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
                            "key", "warp", "force"}
    if unknown:
        raise ValueError(f"extra_args[{EXTRA!r}]: unknown rules {sorted(unknown)}")


class Table:
    """The rules of every request slot of a batch, as arrays indexed by slot.

    Kept on the host (numpy) and copied to the device whole, once per step at most and
    only after a change; a step then gathers its rows' rules with one index.
    """

    def __init__(self, slots: int, device: Any) -> None:
        import numpy as np

        self.device = device
        self.active = np.zeros(slots, dtype=bool)  # the slot has rules
        self.penalty = np.ones(slots, dtype=np.float32)
        self.ngram = np.zeros(slots, dtype=np.int64)
        self.keyed = np.zeros(slots, dtype=bool)
        self.key = np.zeros(slots, dtype=np.int64)
        self.warp = np.zeros(slots, dtype=np.int64)  # an id of ``warps``
        self.warps: dict[tuple[Any, ...], int] = {(): 0}  # warpers' arguments -> id
        self.nwords = np.zeros(slots, dtype=np.int64)
        self.words: list[list[list[int]]] = [[] for _ in range(slots)]
        self._table = np.full((slots, 1, 1), NO_TOKEN, dtype=np.int64)
        self.nforced = np.zeros(slots, dtype=np.int64)  # tokens of a forced continuation
        self._forced = np.zeros((slots, 1), dtype=np.int64)
        self._on_device: dict[str, Any] | None = None

    def _grow(self, slot: int) -> None:
        import numpy as np

        size = len(self.active)
        if slot < size:
            return
        more = max(slot + 1, 2 * size) - size
        self.active = np.concatenate([self.active, np.zeros(more, dtype=bool)])
        self.penalty = np.concatenate([self.penalty, np.ones(more, dtype=np.float32)])
        self.ngram = np.concatenate([self.ngram, np.zeros(more, dtype=np.int64)])
        self.keyed = np.concatenate([self.keyed, np.zeros(more, dtype=bool)])
        self.key = np.concatenate([self.key, np.zeros(more, dtype=np.int64)])
        self.warp = np.concatenate([self.warp, np.zeros(more, dtype=np.int64)])
        self.nwords = np.concatenate([self.nwords, np.zeros(more, dtype=np.int64)])
        self.words += [[] for _ in range(more)]
        pad = np.full((more, *self._table.shape[1:]), NO_TOKEN, dtype=np.int64)
        self._table = np.concatenate([self._table, pad])
        self.nforced = np.concatenate([self.nforced, np.zeros(more, dtype=np.int64)])
        self._forced = np.concatenate([self._forced, np.zeros((more, self._forced.shape[1]),
                                                              dtype=np.int64)])

    def add(self, slot: int, extra_args: dict[str, Any] | None) -> bool:
        """Take a request's rules into ``slot`` (whatever was there before goes);
        whether it has any."""
        self._grow(slot)
        rules = (extra_args or {}).get(EXTRA) or {}
        self.active[slot] = bool(rules)
        self.penalty[slot] = rules.get("repetition_penalty") or 1.0
        self.ngram[slot] = rules.get("no_repeat_ngram_size") or 0
        key = rules.get("key")
        self.keyed[slot] = key is not None
        self.key[slot] = key or 0
        warp = tuple(sorted((rules.get("warp") or {}).items()))
        self.warp[slot] = self.warps.setdefault(warp, len(self.warps))
        self.words[slot] = [list(w) for w in rules.get("bad_words_ids") or []]
        self.nwords[slot] = len(self.words[slot])
        self._write_words(slot)
        self._write_forced(slot, list(rules.get("force") or []))
        self._on_device = None
        return bool(rules)

    def remove(self, slot: int) -> None:
        if slot < len(self.active):
            self.add(slot, None)

    def move(self, source: int, target: int, swap: bool) -> None:
        """A request moved from ``source`` to ``target`` (the two swapped if ``swap``)."""
        self._grow(max(source, target))
        for name in ("active", "penalty", "ngram", "keyed", "key", "warp", "nwords", "_table",
                     "nforced", "_forced"):
            array = getattr(self, name)
            if swap:
                array[[source, target]] = array[[target, source]]
            else:
                array[target] = array[source]
        words = self.words
        if swap:
            words[source], words[target] = words[target], words[source]
        else:
            words[target] = words[source]
        if not swap:
            self.remove(source)
        self._on_device = None

    def _write_words(self, slot: int) -> None:
        import numpy as np

        words = self.words[slot]
        count = max(len(words), self._table.shape[1])
        width = max([len(w) for w in words] + [self._table.shape[2]])
        if (count, width) != self._table.shape[1:]:
            wider = np.full((len(self.active), count, width), NO_TOKEN, dtype=np.int64)
            wider[:, : self._table.shape[1], width - self._table.shape[2]:] = self._table
            self._table = wider
        self._table[slot] = NO_TOKEN
        for w, word in enumerate(words):
            self._table[slot, w, width - len(word):] = word

    def _write_forced(self, slot: int, tokens: list[int]) -> None:
        import numpy as np

        if len(tokens) > self._forced.shape[1]:
            wider = np.zeros((len(self.active), len(tokens)), dtype=np.int64)
            wider[:, : self._forced.shape[1]] = self._forced
            self._forced = wider
        self._forced[slot] = 0
        self._forced[slot, : len(tokens)] = tokens
        self.nforced[slot] = len(tokens)

    def _device(self) -> dict[str, Any]:
        if self._on_device is None:
            self._on_device = {
                name: torch.from_numpy(getattr(self, name)).to(self.device, non_blocking=False)
                for name in ("penalty", "ngram", "key", "_table", "_forced")
            }
        return self._on_device

    def rows(self, slots: Any, index: Any, tokens: Any, lengths: Any) -> Rows:
        """The ``Rows`` of the requests in ``slots`` (a numpy array, on the host) whose
        slots are ``index`` (the same, on the device), with their token sequences."""
        on = self._device()
        sizes = tuple(sorted({int(n) for n in self.ngram[slots] if n}))
        any_penalty = bool((self.penalty[slots] != 1.0).any())
        any_words = bool(self.nwords[slots].any())
        return Rows(
            tokens=tokens,
            lengths=lengths,
            penalty=on["penalty"][index] if any_penalty else None,
            ngram=on["ngram"][index] if sizes else None,
            ngram_sizes=sizes,
            words=on["_table"][index] if any_words else None,
        )

    def needs_tokens(self, slots: Any) -> bool:
        """Whether any of these slots' rules read the row's tokens."""
        return bool((self.penalty[slots] != 1.0).any() or self.ngram[slots].any()
                    or self.nwords[slots].any())

    def draws(self, slots: Any) -> dict[tuple[Any, ...], Any]:
        """Rows (positions in ``slots``) that draw, by their warpers' arguments."""
        import numpy as np

        ids = np.where(self.keyed[slots], self.warp[slots], -1)
        names = {i: warp for warp, i in self.warps.items()}
        return {names[int(i)]: np.nonzero(ids == i)[0] for i in np.unique(ids) if i >= 0}


def apply(logits: Any, table: Table, slots: Any, tokens: Any, lengths: Any,
          steps: Any) -> Any:
    """The rules of the rows ``slots`` of ``table`` on ``logits`` (one row per slot, in
    the same order), in place: the penalty and the bans, then forced continuations and
    the keyed draw of rows that sample. ``tokens``, ``lengths``, ``steps``: each row's sequence, its length
    and the tokens it generated so far (None where no rule reads the tokens)."""
    import numpy as np

    from harness.engines.sampling import only

    index = torch.from_numpy(np.ascontiguousarray(slots)).to(logits.device)
    if tokens is not None:
        restrict(logits, table.rows(slots, index, tokens, lengths))
    forced = np.nonzero(table.nforced[slots])[0]
    if len(forced):
        at = torch.from_numpy(forced).to(logits.device)
        continuation = table._device()["_forced"]
        step = steps[at].clamp(max=continuation.shape[1] - 1)
        logits[at] = only(logits.index_select(0, at), continuation[index[at], step])
    keys = table._device()["key"][index]
    for warp, positions in table.draws(slots).items():
        if len(positions) == len(slots):
            draw_keyed(logits, keys, steps, dict(warp))
            continue
        at = torch.from_numpy(positions).to(logits.device)
        part = logits.index_select(0, at)
        logits[at] = draw_keyed(part, keys[at], steps[at], dict(warp))
    return logits
