"""The transformers backend: batched generation and label ranking with a causal LM.

It implements ``backend.Backend``. Two paths, one switch (``fast``):

- the plain path is transformers' own: a left-padded batch through ``model.generate``,
  with transformers' warpers for sampling;
- the fast path (the default) reads prompts with ``prefill`` (length groups, a shared
  prefix read once, a cache with room to grow), computes the output projection with
  ``speedups`` (float32 blocks, a bfloat16 screen with exact top tokens) and samples with
  the fast ``sampler.Sampler``. Each speed-up says in its module when it is exact;
  ``conditions`` decides once per model which of them apply (and, for attention
  windows, ``_inputs`` per batch), and the rest runs as on the plain path.

On both paths n-gram blocking and banned words see each row without its padding
(``blocking``), and a prompt is tokenized by ``tokens.prompt_ids``.

On both paths a sampled row draws with keyed noise (``sampling``), so fast and plain give
the same samples for the same logits, and a request's samples depend on its seed alone.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from harness.engines import blocking
from harness.engines.contract import (
    Generation,
    LabelScore,
    ModelInfo,
    Options,
    Parallel,
    finish,
)
from harness.engines.hf import conditions, prefill
from harness.engines.hf.speedups import blocked_projection, fast_head, screen_top
from harness.engines.models import LoadedModel
from harness.engines.sampler import Sampler, fast_sampling_applies, row_logsumexp
from harness.engines.sampling import WARPER_ARGS, KeyedDraw, row_keys, warpers
from harness.engines.text import Text
from harness.engines.tokens import prompt_ids
from harness.errors import HarnessError
from harness.tasks.decoding import Setting

# generate() arguments the harness applies itself when a setting samples (beams aside):
# the draw, then greedy decoding of rows repeated once per returned sequence.
_DRAW_ARGS = {"do_sample", "num_return_sequences", *WARPER_ARGS}
# ... and those it applies itself on every setting, over rows without padding (blocking)
_BLOCKING_ARGS = {"no_repeat_ngram_size"}

_SCORE_ROWS = 4  # sequences per teacher-forced scoring pass


class HFBackend:
    """Generation with a transformers causal LM, batched with left padding."""

    name = "hf"

    @classmethod
    def available(cls) -> str | None:
        return None  # transformers and torch are the harness's own dependencies

    @classmethod
    def prefers(cls, device: str) -> bool:
        return True

    @classmethod
    def refusal(cls, setting: Setting, options: Options) -> str | None:
        return None  # transformers runs every setting decoding.py accepts

    @classmethod
    def open(cls, model: str, *, device: str = "auto", fast: bool = True,
             parallel: Parallel | None = None) -> HFBackend:
        """Load ``model`` with transformers (``fast``: the speed-ups where exact)."""
        from harness.engines.models import load_model

        if parallel is not None and (parallel.tensor > 1 or parallel.data > 1 or parallel.ray):
            raise HarnessError("--tensor-parallel, --data-parallel and --ray need --backend vllm")
        return cls(load_model(model, device), fast=fast)

    def __init__(self, loaded: LoadedModel, rows: int | None = None, fast: bool = True) -> None:
        self.loaded = loaded
        self.fast = fast
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        on_cuda = loaded.device.startswith("cuda")
        # Rows (prompts x beams or returned sequences) generated at once. On this CPU,
        # 64 rows ran greedy decoding 30% faster than 48. Beam search holds more
        # memory a row (transformers' beam scores over the whole vocabulary): at 60 rows
        # the emotion run peaked at 3.04 GB, so settings with several rows per prompt
        # get at most 50.
        self.rows = rows or (256 if on_cuda else 64)
        self.multi_rows = self.rows if on_cuda or rows else 50
        self.head = self.model.get_output_embeddings()
        self.on_cpu = not on_cuda
        self.speedups = conditions.decide(self.model, fast, self.on_cpu)
        if self.speedups.head:
            blocked_projection(self.head)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.text = Text(self.tokenizer)
        # One model, one caller at a time: generation hooks the model (the log-probability
        # recorder, the output projection's speed-ups) and the Rust tokenizer refuses a
        # second borrower, so two threads running tasks on one loaded model (the Python
        # API) take turns a batch at a time; each batch is then what it is alone.
        self._turn = threading.RLock()

    def identity(self) -> dict[str, Any]:
        """What besides the request decides an output: the speed-ups that apply to this
        model and why others do not (the bfloat16 screen moves far-off logits, hence
        log-probabilities, by up to ~1e-3), device, dtype."""
        return {
            "backend": self.name,
            "fast": self.fast,
            "bf16_screen": self.speedups.screen,
            "speedups": self.speedups.record(),
            "device": self.loaded.device,
            "dtype": self.loaded.dtype,
        }

    def describe(self) -> ModelInfo:
        return self.loaded.describe()

    def close(self) -> None:
        pass  # the model is freed with the backend; nothing runs in the background

    def count_tokens(self, texts: list[str]) -> list[int]:
        with self._turn:
            return [len(ids) for ids in prompt_ids(self.tokenizer, texts)]

    def batch_rows(self, setting: Setting) -> int:
        """Prompts per batch: ``rows`` counts every beam and returned sequence (each
        holds a KV cache and a row of logits, whatever prompt it continues)."""
        if _beam_sampling(setting):
            return 1  # transformers draws for beams from one generator: a prompt at a time
        rows = self.rows if setting.rows_per_prompt == 1 else min(self.rows, self.multi_rows)
        return max(1, rows // setting.rows_per_prompt)

    def rank_labels(self, prompts: list[str], labels: list[str]) -> list[list[LabelScore]]:
        """Each label's log-probability after each prompt (``scoring: likelihood``)."""
        from harness.engines.hf.likelihood import rank_labels

        with self._turn:
            return rank_labels(self.model, self.tokenizer, prompts, labels, self.rows,
                               reuse_prompt=self.speedups.repeat_cache)

    def rank_choices(self, prompts: list[str], choices: list[list[str]]
                     ) -> list[list[LabelScore]]:
        """Each prompt's own choices ranked (multiple choice)."""
        from harness.engines.hf.likelihood import rank_choices

        return rank_choices(self.model, self.tokenizer, prompts, choices, self.rows,
                            reuse_prompt=self.speedups.repeat_cache)

    def generate(
        self, prompts: list[str], setting: Setting, seeds: list[int | None], options: Options
    ) -> list[list[Generation]]:
        """Generate for a batch; on running out of GPU memory, halve it and go on smaller."""
        with self._turn:
            return self._generate_halving(prompts, setting, seeds, options)

    def _generate_halving(
        self, prompts: list[str], setting: Setting, seeds: list[int | None], options: Options
    ) -> list[list[Generation]]:
        import torch

        try:
            outputs = self._generate(prompts, setting, seeds, options)
            _give_back_freed_memory()
            return outputs
        except torch.OutOfMemoryError:
            if len(prompts) == 1:
                raise HarnessError(
                    f"out of {self.loaded.device} memory for a single prompt under setting "
                    f"{setting.name!r}; lower max_new_tokens or num_beams"
                ) from None
            torch.cuda.empty_cache()
            self.rows = max(setting.rows_per_prompt, self.rows // 2)
            half = len(prompts) // 2
            print(f"out of memory: batches of {self.rows} rows from now on", file=sys.stderr)
            return self.generate(prompts[:half], setting, seeds[:half], options) + self.generate(
                prompts[half:], setting, seeds[half:], options
            )

    def _inputs(self, prompts: list[str], repeat: int, room: int) -> tuple[dict[str, Any], Any]:
        """The batch ``generate`` continues, and a cache of all but its last column (where
        ``prefill`` serves the model) or None (transformers reads the left-padded prompts
        itself). ``room``: the most tokens to be generated."""
        tok = self.tokenizer
        ids = prompt_ids(tok, prompts)
        if not all(ids):
            raise HarnessError(
                "a prompt gives the model no tokens to continue (it is empty, or the "
                "tokenizer drops all of it); check prompt.query and the items' columns"
            )
        fits = self.speedups
        if fits.prefill and (repeat == 1 or fits.repeat_cache):
            inside = fits.inside_fits(max(len(row) for row in ids), room)
            batch, cache = prefill.read(self.model, ids, tok.pad_token_id, repeat=repeat,
                                        room=room, padding_inside=inside)
            return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}, cache
        padded = tok.pad({"input_ids": ids}, return_tensors="pt")
        device = self.model.device
        return {k: padded[k].to(device) for k in ("input_ids", "attention_mask")}, None

    def _generate(
        self, prompts: list[str], setting: Setting, seeds: list[int | None], options: Options
    ) -> list[list[Generation]]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        tok = self.tokenizer
        # a setting's own max_new_tokens wins over the task's
        args = {"max_new_tokens": options.max_new_tokens, **setting.args}
        inputs, cache = self._inputs(prompts, setting.rows_per_prompt, args["max_new_tokens"])
        # tokens a row the screen keeps exact
        top = screen_top(args) if self.speedups.screen else None
        processors, repeat, args = self._draw(args, setting, seeds)
        eos = self.model.generation_config.eos_token_id
        config = GenerationConfig(
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
            bos_token_id=self.model.generation_config.bos_token_id,
            return_dict_in_generate=True,
            **{k: v for k, v in args.items() if k not in _BLOCKING_ARGS},
        )
        extra: dict[str, Any] = {}
        matchers = self.text.matchers(options.stop)
        if matchers:
            extra["stopping_criteria"] = StoppingCriteriaList(matchers)
        if cache is not None:
            extra[prefill.cache_arg(self.model)] = cache
        if repeat > 1:
            inputs = {k: v.repeat_interleave(repeat, dim=0) for k, v in inputs.items()}
        banned = self._bad_words_ids(options.bad_words) if options.bad_words else []
        # before the draw, as transformers applies its own before its warpers
        processors[:0] = blocking.processors(args, banned, eos, inputs["attention_mask"])
        recorder = None if setting.beams > 1 else _LogprobRecorder(self.model)
        if processors:
            extra["logits_processor"] = processors
        if _beam_sampling(setting):
            torch.manual_seed(_seed(seeds[0]))  # one prompt a batch (batch_rows)
        try:
            with torch.inference_mode(), self._head(top):
                out = self.model.generate(**inputs, generation_config=config, **extra)
        finally:
            if recorder:
                recorder.close()
        prompt_len = inputs["input_ids"].shape[1]
        new = out.sequences[:, prompt_len:]
        if recorder:
            logprobs = recorder.result(new)
        else:
            with self._head(None):
                logprobs = self._score(inputs["attention_mask"], out.sequences, prompt_len)
        rows = [self._one(new[i], logprobs[i], options) for i in range(new.shape[0])]
        n = setting.sequences
        return [rows[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _draw(self, args: dict[str, Any], setting: Setting, seeds: list[int | None],
              ) -> tuple[list[Any], int, dict[str, Any]]:
        """How a setting samples: the processors that draw, how many times each prompt is
        repeated, and the generate() arguments left to transformers.

        For a sampled setting (not beam sampling) the harness draws, keyed by each
        prompt's seed, and transformers then decodes greedily, on prompts repeated once
        per returned sequence; any other setting is transformers' own.
        """
        if not setting.sampled or _beam_sampling(setting):
            return [], 1, args
        keys = row_keys([_seed(s) for s in seeds], setting.sequences)
        if self.speedups.sampler and fast_sampling_applies(args):
            processors: list[Any] = [Sampler(args, keys)]
        else:
            processors = [*warpers(args), KeyedDraw(keys)]
        kept = {k: v for k, v in args.items() if k not in _DRAW_ARGS}
        return processors, setting.sequences, kept

    def _head(self, top: int | None) -> Any:
        """The output projection's speed-ups, on the fast path only."""
        if self.speedups.head:
            return fast_head(self.head, top)
        return contextlib.nullcontext()

    def _one(self, ids: Any, logprobs: Any, options: Options) -> Generation:
        return finish(ids.tolist(), logprobs.tolist(), self.text.decode, self.eos_ids, options.stop)

    def _bad_words_ids(self, words: tuple[str, ...]) -> list[list[int]]:
        return blocking.bad_words_ids(self.tokenizer, words)

    def _score(self, prompt_mask: Any, sequences: Any, prompt_len: int) -> Any:
        """Log-probabilities of the generated tokens, by one teacher-forced forward pass.

        Used for beam search, whose reordering of beams the per-step recorder cannot
        follow; it costs one forward pass per returned sequence.
        """
        import torch

        generated = sequences.shape[1] - prompt_len
        pad = torch.ones(
            (prompt_mask.shape[0], generated), dtype=prompt_mask.dtype, device=prompt_mask.device
        )
        # Sequences are repeated per returned sequence; their masks repeat the same way.
        mask = torch.cat([prompt_mask, pad], dim=1)
        repeat = sequences.shape[0] // prompt_mask.shape[0]
        mask = mask.repeat_interleave(repeat, dim=0)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        parts = []
        # A few sequences at a time: the logits of all of them at once (25 sequences x
        # 33 positions x 262,144) would take most of a gigabyte.
        for start in range(0, sequences.shape[0], _SCORE_ROWS):
            rows = slice(start, start + _SCORE_ROWS)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=sequences[rows], attention_mask=mask[rows],
                    position_ids=positions[rows], logits_to_keep=generated + 1,
                ).logits.float()
                # One contiguous row at a time: logsumexp over a sliced (strided) view
                # of this tensor took 20 times longer here.
                flat = logits.reshape(-1, logits.shape[-1])
                lse = torch.stack([r.logsumexp(-1) for r in flat]).reshape(logits.shape[:2])
                chosen = sequences[rows, prompt_len:].unsqueeze(-1)
                picked = logits[:, :-1].gather(-1, chosen).squeeze(-1)
            parts.append((picked - lse[:, :-1]).cpu())
        return torch.cat(parts)


def _beam_sampling(setting: Setting) -> bool:
    return setting.sampled and setting.beams > 1


def _seed(seed: int | None) -> int:
    if seed is None:
        raise ValueError("a sampled prompt needs its seed")
    return seed


def _give_back_freed_memory() -> None:
    """Hand memory freed by a batch back to the system.

    glibc keeps freed blocks of under 32 MB for reuse, so the next batch's peak would
    come on top of them: on the emotion run, 550 MB more resident after each batch.
    ``malloc_trim`` returns them (where the C library has it) in a few milliseconds.
    """
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim(0)


class _LogprobRecorder:
    """Records the log-probability of each generated token under the model's raw logits.

    A forward hook keeps each step's last-position logits and their log-sum-exp; the
    next forward's pre-hook sees which token was chosen from them (it is that forward's
    input), takes its log-probability and lets the logits go before the model runs
    again. Processors (temperature, top-k, ...) change what is sampled, not the model's
    own probability of it.
    """

    def __init__(self, model: Any) -> None:
        self.last: tuple[Any, Any] | None = None
        self.steps: list[Any] = []
        self._handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after),
        ]

    def _before(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if self.last is not None:
            ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            self._take(ids[:, -1:])

    def _after(self, module: Any, args: Any, output: Any) -> None:
        logits = output.logits[:, -1, :].float()
        self.last = (logits, row_logsumexp(logits))

    def _take(self, chosen: Any) -> None:
        assert self.last is not None
        logits, lse = self.last
        self.steps.append(logits.gather(1, chosen).squeeze(1) - lse)
        self.last = None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def result(self, new_tokens: Any) -> Any:
        import torch

        if new_tokens.shape[1] > len(self.steps) and self.last is not None:
            self._take(new_tokens[:, -1:])
        self.last = None
        if not self.steps:
            return torch.zeros_like(new_tokens, dtype=torch.float32).cpu()
        return torch.stack(self.steps, dim=1).cpu()
