"""The backend contract: all that the runner, the cache and the bench know of an engine.

A backend turns the prompts of one decoding setting into generations, ranks labels by
log-probability, counts tokens and says how many prompts fit in a batch. Two implement
it: transformers (``engines.hf.backend.HFBackend``) and vLLM (``engines.vllm.backend``); tests
put a fake in their place. The registry has mypy check both against ``Backend`` and
``Engine`` (tests/test_types.py runs it), so a missing or mistyped method fails the tests.
Nothing here imports torch.

What a backend promises:

- ``generate(prompts, setting, seeds, options)`` returns, for each prompt, the setting's
  returned sequences in order. A sampled prompt comes with its own seed (see
  ``request_seed``), and its outputs depend on that seed and the prompt alone, never on
  the other prompts of the batch, so that a cache or a resumed run gives what a fresh run
  gives.
- ``identity()`` names everything besides the request that can change an output (the
  engine, its speed-ups, device and precision); it is part of every cache key and of
  run.json.
- ``describe()["fingerprint"]`` (see ``ModelInfo``) identifies the weights (a digest of
  the model's files, or a hub id at its resolved commit); it is None when they cannot be
  identified, and then the result cache is not used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

if TYPE_CHECKING:
    from harness.tasks.decoding import Setting


class ModelInfo(TypedDict):
    """The model as run.json records it (``describe()``), in the same keys whatever the
    engine; what an engine cannot tell is left out, and an engine may add its own keys
    (``VLLMBackend``'s ``vllm``: its version) by extending this type."""

    name: str  # what --model named
    fingerprint: str | None  # the weights' identity (see the module's notes)
    type: str  # the config's model_type ("gpt2", "gemma3_text", ...)
    device: str
    dtype: str
    load_s: float  # seconds from asking for the model to its first request
    parameters: NotRequired[int | None]
    vocab_size: NotRequired[int]
    # Prompt and answer tokens the model has positions for; prompts that do not fit are
    # refused or cut before generating (None: the config names no bound).
    context_length: NotRequired[int | None]
    # A digest of the tokenizer's chat template (None without one); a run on plain text
    # then says the model has one.
    chat_template: NotRequired[str | None]


@dataclass(frozen=True)
class Options:
    """What every setting of a task shares."""

    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()
    bad_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str  # the answer: the generated text cut at the first stop string
    raw: str  # everything generated, special tokens left out
    n_tokens: int  # generated tokens, up to and including eos or the stop string
    mean_logprob: float | None  # mean log-probability of those tokens under the model
    stop_reason: str  # "eos", "stop" (a stop string) or "length"


@dataclass(frozen=True)
class LabelScore:
    label: str
    logprob: float  # the sum over the label's tokens
    n_tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / self.n_tokens


class Engine(Protocol):
    """An engine as the registry knows it before a model loads: its backend class."""

    name: str

    @classmethod
    def available(cls) -> str | None:
        """None where the engine can run here, else one line saying what to install."""
        ...

    @classmethod
    def prefers(cls, device: str) -> bool:
        """Whether ``--backend auto`` should take this engine for ``device``."""
        ...

    @classmethod
    def refusal(cls, setting: Setting, options: Options) -> str | None:
        """Why the engine cannot run ``setting`` (None: it can); asked before loading."""
        ...

    @classmethod
    def open(cls, model: str, *, device: str = "auto", fast: bool = True,
             parallel: Parallel | None = None) -> Backend:
        """Load ``model`` and return the backend that runs it."""
        ...


class Backend(Engine, Protocol):
    """A loaded model on an engine; its class is the engine (``type(backend)`` answers
    ``available()``, ``refusal()`` and the rest before any model loads)."""

    name: str  # "hf", "vllm", ...

    def identity(self) -> dict[str, Any]:
        """What besides the request decides an output (engine, speed-ups, precision)."""
        ...

    def describe(self) -> ModelInfo:
        """The model as run.json records it (see ``ModelInfo``)."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def batch_rows(self, setting: Setting) -> int:
        """How many prompts of ``setting`` go into one ``generate`` call."""
        ...

    def generate(
        self, prompts: list[str], setting: Setting, seeds: list[int | None], options: Options
    ) -> list[list[Generation]]: ...

    def rank_labels(self, prompts: list[str], labels: list[str]) -> list[list[LabelScore]]:
        """Each label's log-probability after each prompt, in the labels' order."""
        ...

    def rank_choices(self, prompts: list[str], choices: list[list[str]]
                     ) -> list[list[LabelScore]]:
        """As ``rank_labels``, each prompt with its own choices (multiple choice)."""
        ...

    def close(self) -> None:
        """Let go of the engine (processes, memory); the backend is not used after."""
        ...


def request_seed(seed: int | None, prompt: str) -> int | None:
    """The seed of one sampled request: the task's seed mixed with the prompt's text.

    Two settings sampling the same prompt with the same seed share it, so their draws
    use the same random numbers (differences between them come from the settings).
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def finish(ids: list[int], logprobs: list[float], decode: Callable[[list[int]], str],
           eos_ids: set[int], stop: tuple[str, ...]) -> Generation:
    """One returned sequence as the harness reports it, whatever engine generated it.

    ``ids``: the generated token ids (anything after an eos is ignored); ``logprobs``:
    each one's log-probability under the model; ``decode``: token ids to text, special
    tokens left out. The answer ends at the first eos (counted) or at the first stop
    string (cut out of the text; tokens counted up to the one that completed it).
    """
    length, reason = len(ids), "length"
    for position, token in enumerate(ids):
        if token in eos_ids:
            length, reason = position + 1, "eos"
            break
    raw = decode(ids[:length])
    text, stopped = cut_at_stop(raw, stop)
    if stopped:
        # A row may run on past a stop string (beam search pads with eos; an engine may
        # stop a token later), so the tokens are counted up to the one that completed it.
        length = next(k for k in range(1, length + 1) if cut_at_stop(decode(ids[:k]), stop)[1])
        reason = "stop"
    mean = sum(logprobs[:length]) / length if length else None
    return Generation(text, raw, length, mean, reason)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class Parallel:
    """How the engine spreads over devices and machines (vLLM's own options; the
    transformers backend runs on one device)."""

    tensor: int = 1  # GPUs each copy of the model is split over
    data: int = 1  # copies of the model, each serving part of the requests
    ray: bool = False  # workers on a running Ray cluster (more than one machine)
