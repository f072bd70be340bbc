"""Beam search on the vLLM engine, with transformers' rules.

vLLM's own ``LLM.beam_search`` steps its engine one token at a time: each step sends
every beam's whole sequence as a new request for one token with its best log-probabilities
(the shared beginnings come from the prefix cache), then keeps the best candidates. This
module steps the engine the same way, but decides as transformers' ``generate`` does, so
that both backends return the same beams:

- candidates are the best ``max(2, 1 + eos tokens) × num_beams`` continuations of all
  beams, scored by summed log-probabilities after the setting's rules (repetition penalty
  on the log-probabilities, ``no_repeat_ngram_size``, banned words, ``min_new_tokens``);
- a candidate ends on an eos token, a stop string (transformers' ``StopStringCriteria``)
  or ``max_new_tokens``; only those among the best ``num_beams`` are kept as finished,
  scored by sum / (generated tokens ** ``length_penalty``) (vLLM's own counts the prompt
  too, and leaves eos out);
- ``early_stopping``: True stops once ``num_beams`` beams have finished; False and
  "never" stop when no running beam can still beat the worst finished one, by
  transformers' estimate.

What differs from transformers is only where two candidates' scores tie to within the
engines' float differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.engines.vllm.rules import Rows, bans, padded, penalise, word_table

NEG = -1.0e9  # transformers' stand-in for "never": added to a score, not -inf


@dataclass
class Hyp:
    tokens: list[int]  # generated so far
    score: float  # summed log-probabilities after the rules
    raw: list[float] = field(default_factory=list)  # each token's log-probability


@dataclass
class Rules:
    """A beam setting's arguments and the task's options, as the search uses them."""

    beams: int
    max_new: int
    min_new: int
    length_penalty: float
    early_stopping: bool | str
    penalty: float | None
    ngram: int
    bad_words_ids: list[list[int]]
    eos: set[int]
    stops: Callable[[list[int]], bool]  # whether a sequence ends with a stop string

    @property
    def candidates(self) -> int:
        return max(2, 1 + len(self.eos)) * self.beams


class Search:
    """The beams of one prompt."""

    def __init__(self, prompt: list[int], rules: Rules) -> None:
        self.prompt = prompt
        self.rules = rules
        # transformers starts every beam on the prompt, all but the first out of the race
        self.running = [Hyp([], 0.0 if i == 0 else NEG) for i in range(rules.beams)]
        self.finished: list[tuple[float, Hyp | None]] = [(NEG, None)] * rules.beams
        self.improvable = True
        self.done = False

    def queries(self) -> list[tuple[list[int], int]]:
        """(token ids, log-probabilities wanted) for each distinct running sequence."""
        seen: dict[tuple[int, ...], int] = {}
        for hyp, banned in zip(self.running, self._banned(self.running), strict=True):
            key = tuple(hyp.tokens)
            wanted = self.rules.candidates + len(self._moved(hyp, banned))
            seen[key] = max(seen.get(key, 0), wanted)
        return [(self.prompt + list(key), wanted) for key, wanted in seen.items()]

    def _moved(self, hyp: Hyp, banned: set[int]) -> set[int]:
        """Tokens whose score the rules change for this beam (banned or penalised)."""
        rules = self.rules
        moved = set(banned)
        if rules.penalty is not None and rules.penalty != 1.0:
            moved |= set(self.prompt) | set(hyp.tokens)
        if len(hyp.tokens) < rules.min_new:
            moved |= rules.eos
        return moved

    def _banned(self, hyps: list[Hyp]) -> list[set[int]]:
        """The tokens n-gram blocking and banned words forbid after each beam (``rules``'
        arithmetic, the processors' own)."""
        rules = self.rules
        if not rules.ngram and not rules.bad_words_ids:
            return [set() for _ in hyps]
        import torch

        tokens, lengths = padded([self.prompt + hyp.tokens for hyp in hyps])
        rows = Rows(
            tokens, lengths,
            ngram=torch.full_like(lengths, rules.ngram) if rules.ngram else None,
            ngram_sizes=(rules.ngram,) if rules.ngram else (),
            words=word_table([rules.bad_words_ids] * len(hyps)) if rules.bad_words_ids else None,
        )
        candidates, hit = bans(rows)
        return [set(candidates[i][hit[i]].tolist()) for i in range(len(hyps))]

    def _scored(self, hyp: Hyp, logprobs: dict[int, float],
                banned: set[int]) -> list[tuple[float, int, float]]:
        """(score after the rules, token, raw log-probability) of a beam's next tokens."""
        rules = self.rules
        banned = set(banned)
        if len(hyp.tokens) < rules.min_new:
            banned |= rules.eos
        penalised = (set(self.prompt) | set(hyp.tokens)
                     if rules.penalty is not None and rules.penalty != 1.0 else set())
        out = []
        for token, raw in logprobs.items():
            if token in banned:
                continue
            value = penalise(raw, rules.penalty) if token in penalised else raw
            out.append((value, token, raw))
        return out

    def step(self, answers: dict[tuple[int, ...], dict[int, float]]) -> None:
        """Advance by one token, given each running sequence's best log-probabilities."""
        rules = self.rules
        pool = []
        banned = self._banned(self.running)
        for b, hyp in enumerate(self.running):
            for value, token, raw in self._scored(hyp, answers[tuple(hyp.tokens)], banned[b]):
                pool.append((hyp.score + value, b, token, raw))
        # best first; equal scores in the order of beam, then token (as a flat top-k)
        pool.sort(key=lambda c: (-c[0], c[1], c[2]))
        top = pool[: rules.candidates]
        length = len(self.running[0].tokens) + 1
        made = []
        for score, b, token, raw in top:
            parent = self.running[b]
            hyp = Hyp(parent.tokens + [token], score, parent.raw + [raw])
            ends = (token in rules.eos or length >= rules.max_new
                    or rules.stops(self.prompt + hyp.tokens))
            made.append((hyp, ends))
        # the next running beams: the best that did not end
        live = sorted(range(len(made)),
                      key=lambda i: -(made[i][0].score + (NEG if made[i][1] else 0.0)))
        self.running = [
            Hyp(made[i][0].tokens, made[i][0].score + (NEG if made[i][1] else 0.0), made[i][0].raw)
            for i in live[: rules.beams]
        ]
        self._keep_finished(made, length)
        self._check(length)
        if all(ends for _, ends in made):
            self.done = True

    def _keep_finished(self, made: list[tuple[Hyp, bool]], length: int) -> None:
        rules = self.rules
        full = all(h is not None for _, h in self.finished)
        if (full and rules.early_stopping is True) or not self.improvable:
            return
        new = [(hyp.score / length ** rules.length_penalty, hyp)
               for hyp, ends in made[: rules.beams] if ends]
        if new:
            merged = self.finished + new
            order = sorted(range(len(merged)), key=lambda i: -merged[i][0])
            self.finished = [merged[i] for i in order[: rules.beams]]

    def _check(self, length: int) -> None:
        """transformers' test whether a running beam may still beat a finished one."""
        rules = self.rules
        if rules.early_stopping == "never" and rules.length_penalty > 0.0:
            best_length = rules.max_new
        else:
            best_length = length
        best = self.running[0].score / best_length ** rules.length_penalty
        full = all(h is not None for _, h in self.finished)
        worst = min(score for score, _ in self.finished) if full else NEG
        self.improvable = self.improvable and best > worst
        if not self.improvable or (full and rules.early_stopping is True):
            self.done = True
        if length >= rules.max_new:
            self.done = True

    def results(self, n: int) -> list[Hyp]:
        """The best ``n`` finished beams (a running one where none finished)."""
        kept = [h for _, h in self.finished if h is not None]
        return (kept + self.running)[:n]


def search(ask: Callable[[list[tuple[list[int], int]]], list[dict[int, float]]],
           prompts: list[list[int]], rules: Rules) -> list[Search]:
    """Beam search for every prompt together; ``ask`` sends (token ids, how many best
    log-probabilities) requests to the engine and returns, for each, token -> log-prob."""
    searches = [Search(prompt, rules) for prompt in prompts]
    while True:
        live = [s for s in searches if not s.done]
        if not live:
            return searches
        asked = [(s, ids, wanted) for s in live for ids, wanted in s.queries()]
        answers = ask([(ids, wanted) for _, ids, wanted in asked])
        by_search: dict[int, dict[tuple[int, ...], dict[int, float]]] = {}
        for (s, ids, _), answer in zip(asked, answers, strict=True):
            by_search.setdefault(id(s), {})[tuple(ids[len(s.prompt):])] = answer
        for s in live:
            s.step(by_search[id(s)])
