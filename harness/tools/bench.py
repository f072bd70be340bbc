"""``harness bench``: the harness runner against the lessons' one-call-per-prompt loop.

Both ways run in one process on the same loaded model. The runner generates the whole
grid; the loop, whose cost per prompt does not depend on how many prompts there are, is
timed on a fixed sample of the same prompts per setting. Greedy outputs of the sample are
compared between the two ways.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from harness.engines import registry
from harness.engines.contract import Options
from harness.engines.hf.backend import HFBackend
from harness.engines.models import LoadedModel
from harness.runs import pipeline, runner
from harness.tasks.decoding import Setting


@dataclass
class Way:
    tokens: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class SettingResult:
    name: str
    loop: Way = field(default_factory=Way)
    runs: dict[str, Way] = field(default_factory=dict)  # per backend: the harness runner
    identical: dict[str, int] = field(default_factory=dict)  # greedy: same as the loop
    compared: int = 0
    between: tuple[int, int] | None = None  # greedy: (same, compared) between the backends
    raw: Way | None = None  # vLLM's own LLM.generate (or beam_search) on the same prompts

    @property
    def harness(self) -> Way:
        """The first backend's run (the figures a one-backend bench reports)."""
        return next(iter(self.runs.values()), Way())

    @property
    def ratio(self) -> float:
        return self.harness.rate / self.loop.rate if self.loop.rate else 0.0

    def ratio_of(self, backend: str) -> float:
        return self.runs[backend].rate / self.loop.rate if self.loop.rate else 0.0


def lessons_loop(loaded: LoadedModel, prompts: list[str], setting: Setting,
                 max_new_tokens: int, seed: int) -> tuple[list[str], Way]:
    """One ``generate`` call per prompt, as the lessons' notebook cells do."""
    import torch
    from transformers import GenerationConfig

    model, tok = loaded.model, loaded.tokenizer
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=eos,
        bos_token_id=model.generation_config.bos_token_id, **setting.args,
    )
    texts, way = [], Way()
    torch.manual_seed(seed)
    started = time.perf_counter()
    for prompt in prompts:
        inputs = tok(prompt, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        for row in out[:, inputs["input_ids"].shape[1]:].tolist():
            length = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
            way.tokens += length
            texts.append(tok.decode(row[:length], skip_special_tokens=True))
    way.seconds = time.perf_counter() - started
    return texts, way


def run_bench(
    task_path: str, model: str = "default", presets: list[str] | None = None,
    shots: list[int] | None = None, sample: int = 16, max_new_tokens: int = 32,
    limit: int | None = None, device: str | None = None, seed: int = 42,
    backends: tuple[str, ...] = ("hf",), raw_vllm: bool = False, parallel: Any = None,
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time the runner on each of ``backends`` ("hf", "vllm") and the lessons' loop on
    the same prompts; with ``raw_vllm``, vLLM's own ``LLM.generate`` on them too.
    ``given``: backends already open (warm), used as they are and left open."""
    from harness.engines.models import load_model

    presets = presets or ["greedy", "beam", "top_p"]
    overrides = pipeline.Overrides(
        shots=shots or [0, 1, 3], presets=presets, seeds=[seed], limit=limit
    )
    plan = pipeline.prepare(task_path, overrides)
    options = Options(max_new_tokens=max_new_tokens)  # no stop strings: equal work both ways
    started = time.perf_counter()
    loaded = load_model(model, device)
    opened: dict[str, Any] = {}
    ready: dict[str, float] = {}
    try:
        for name in backends:
            if given and name in given:
                opened[name], ready[name] = given[name], given[name].describe()["load_s"]
                continue
            opened[name], ready[name] = _open(name, loaded, model, device, parallel, plan, seed,
                                              started)
        picked = random.Random(0).sample(plan.prompts, min(sample, len(plan.prompts)))
        results = [_time_setting(setting, plan, opened, options, loaded, picked, max_new_tokens,
                                 seed) for setting in plan.settings]
    finally:
        for name, backend in opened.items():
            if not (given and name in given):
                backend.close()
    if raw_vllm:
        raw = _raw_vllm(model, device, parallel, plan, max_new_tokens)
        for result in results:
            result.raw = raw.get(result.name)
    return _figures(results, loaded, ready, len(plan.requests), len(picked))


def _open(name: str, loaded: LoadedModel, model: str, device: str | None, parallel: Any,
          plan: pipeline.Plan, seed: int, started: float) -> tuple[Any, float]:
    """A backend, warmed up, and the seconds from start until it was ready. The
    transformers engine runs the model the lessons' loop runs; another opens its own."""
    if name != HFBackend.name:
        opened = registry.open_backend(name, model, device or "auto", parallel=parallel)
        return opened, opened.describe()["load_s"]
    backend = HFBackend(loaded)
    warm = runner.Request(plan.prompts[0], plan.settings[0], seed)
    backend.generate([warm.prompt.text], warm.setting, [warm.own_seed], Options(max_new_tokens=1))
    return backend, time.perf_counter() - started


def _time_setting(setting: Setting, plan: pipeline.Plan, opened: dict[str, Any],
                  options: Options, loaded: LoadedModel, picked: list[Any],
                  max_new_tokens: int, seed: int) -> SettingResult:
    result = SettingResult(setting.name)
    requests = [r for r in plan.requests if r.setting.name == setting.name]
    answers: dict[str, dict[tuple[int, int], str]] = {}
    for name, backend in opened.items():
        began = time.perf_counter()
        records = runner.run(plan.task.spec, requests, backend, options)
        result.runs[name] = Way(sum(r["n_tokens"] for r in records), time.perf_counter() - began)
        answers[name] = {(r["item"], r["shots"]): r["raw_output"] for r in records}
        _say(f"{setting.name}: {name} {len(requests)} prompts in {result.runs[name].seconds:.1f} s")
    texts, result.loop = lessons_loop(loaded, [p.text for p in picked], setting,
                                      max_new_tokens, seed)
    _say(f"{setting.name}: loop {len(picked)} prompts in {result.loop.seconds:.1f} s")
    if not setting.sampled and setting.beams == 1:
        result.compared = len(picked)
        for name, by_prompt in answers.items():
            result.identical[name] = sum(
                by_prompt[(p.item, p.shots)] == text for p, text in zip(picked, texts, strict=True)
            )
        if len(answers) == 2:
            first, second = answers.values()
            result.between = (sum(first[k] == second[k] for k in first), len(first))
    return result


def _raw_vllm(model: str, device: str | None, parallel: Any, plan: pipeline.Plan,
              max_new_tokens: int) -> dict[str, Way]:
    """vLLM's own ``LLM.generate`` (``LLM.beam_search`` for beams) on the same prompts,
    token ids and lengths, with its own sampling and none of the harness's work (no
    log-probabilities, rules or keyed draws): the target the harness's vLLM backend is
    measured against. Sampled settings draw unseeded (a seed crashes the CPU build)."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import BeamSearchParams

    from harness.engines.contract import Parallel
    from harness.engines.models import load_tokenizer
    from harness.engines.tokens import prompt_ids
    from harness.engines.vllm.backend import engine_args, engine_model

    tokenizer = load_tokenizer(model)
    args = engine_args(engine_model(model), device or "auto", parallel or Parallel())
    llm = LLM(**args)
    timed: dict[str, Way] = {}
    try:
        ids = prompt_ids(tokenizer, [p.text for p in plan.prompts])
        prompts = [TokensPrompt(prompt_token_ids=i) for i in ids]
        llm.generate(prompts[:1], SamplingParams(max_tokens=2), use_tqdm=False)
        for setting in plan.settings:
            args_ = setting.args
            began = time.perf_counter()
            if setting.beams > 1:
                params = BeamSearchParams(beam_width=setting.beams, max_tokens=max_new_tokens,
                                          length_penalty=args_.get("length_penalty", 1.0))
                outs = llm.beam_search(prompts, params)
                tokens = sum(len(seq.tokens) - len(i) for out, i in zip(outs, ids, strict=True)
                             for seq in out.sequences[: setting.sequences])
            else:
                params = SamplingParams(
                    n=setting.sequences, max_tokens=max_new_tokens,
                    temperature=args_.get("temperature", 1.0) if setting.sampled else 0.0,
                    top_k=args_.get("top_k", 50) or 0 if setting.sampled else 0,
                    top_p=args_.get("top_p", 1.0), detokenize=False,
                )
                outs = llm.generate(prompts, params, use_tqdm=False)
                tokens = sum(len(c.token_ids) for out in outs for c in out.outputs)
            timed[setting.name] = Way(tokens, time.perf_counter() - began)
            _say(f"{setting.name}: vLLM's LLM.generate {len(prompts)} prompts in "
                 f"{timed[setting.name].seconds:.1f} s")
    finally:
        import contextlib

        with contextlib.suppress(Exception):
            llm.llm_engine.engine_core.shutdown()
    return timed


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _figures(results: list[SettingResult], loaded: LoadedModel, ready: dict[str, float],
             n_prompts: int, n_sample: int) -> dict[str, Any]:
    backends = list(results[0].runs) if results else []
    loop = Way(sum(r.loop.tokens for r in results), sum(r.loop.seconds for r in results))
    ours = Way(sum(r.harness.tokens for r in results), sum(r.harness.seconds for r in results))
    # Both ways give each setting the same number of prompts (all of them, or the sample),
    # so their overall rates weigh the settings alike. The loop's time for the whole grid
    # is its sample's time scaled up.
    scale = n_prompts / len(results) / n_sample
    greedy = [r for r in results if r.name == "greedy"]
    settings = []
    for r in results:
        entry = {
            "name": r.name,
            "loop_tokens_per_s": round(r.loop.rate, 2),
            "harness_tokens_per_s": round(r.harness.rate, 2),
            "ratio": round(r.ratio, 2),
            "harness_tokens": r.harness.tokens,
            "harness_s": round(r.harness.seconds, 2),
            "loop_s": round(r.loop.seconds, 2),
            "loop_s_for_grid": round(r.loop.seconds * scale, 1),
            "greedy_identical": next(iter(r.identical.values())) if r.compared else None,
        }
        for name in backends:
            entry[name] = {
                "tokens_per_s": round(r.runs[name].rate, 2), "ratio": round(r.ratio_of(name), 2),
                "tokens": r.runs[name].tokens, "seconds": round(r.runs[name].seconds, 2),
                "greedy_identical": r.identical.get(name) if r.compared else None,
            }
        if r.between is not None:
            entry["backends_identical"] = list(r.between)
        if r.raw is not None:
            entry["raw_vllm_tokens_per_s"] = round(r.raw.rate, 2)
            if "vllm" in r.runs and r.raw.rate:
                entry["vllm_to_raw"] = round(r.runs["vllm"].rate / r.raw.rate, 3)
        settings.append(entry)
    return {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "backends": backends,
        "prompts_per_setting": n_prompts // max(1, len(results)),
        "loop_sample": n_sample,
        "settings": settings,
        "ratio_overall": round(ours.rate / loop.rate, 2) if loop.rate else 0.0,
        "ratio_greedy": round(greedy[0].ratio, 2) if greedy else None,
        "ratio_by_setting": {r.name: round(r.ratio, 2) for r in results},
        "greedy_identical": sum(next(iter(r.identical.values()), 0) for r in results),
        "greedy_total": sum(r.compared for r in results),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_s": round(next(iter(ready.values()), 0.0), 2),
        "ready_s": {name: round(seconds, 2) for name, seconds in ready.items()},
    }


def format_table(figures: dict[str, Any]) -> str:
    backends = figures.get("backends") or ["hf"]
    ready = ", ".join(f"{b} {s} s" for b, s in figures.get("ready_s", {}).items())
    lines = [
        f"model {figures['model']} on {figures['device']} ({figures['dtype']}); "
        f"{figures['prompts_per_setting']} prompts per setting, loop timed on "
        f"{figures['loop_sample']}; ready in {ready or figures['load_s']}",
    ]
    header = f"{'setting':<16}{'loop tok/s':>12}"
    for b in backends:
        header += f"{b + ' tok/s':>14}{'ratio':>8}"
    raw = any("raw_vllm_tokens_per_s" in s for s in figures["settings"])
    if raw:
        header += f"{'LLM.generate':>14}{'vllm/raw':>10}"
    header += f"{'greedy same':>13}"
    lines.append(header)
    for s in figures["settings"]:
        line = f"{s['name']:<16}{s['loop_tokens_per_s']:>12.1f}"
        for b in backends:
            mine = s.get(b, {"tokens_per_s": s["harness_tokens_per_s"], "ratio": s["ratio"]})
            line += f"{mine['tokens_per_s']:>14.1f}{mine['ratio']:>7.1f}×"
        if raw:
            line += (f"{s.get('raw_vllm_tokens_per_s', 0.0):>14.1f}"
                     f"{s.get('vllm_to_raw', 0.0):>10.2f}")
        same = ""
        if s["greedy_identical"] is not None:
            same = "/".join(str(s[b]["greedy_identical"]) if b in s else str(s["greedy_identical"])
                            for b in backends) + f" of {figures['loop_sample']}"
            if "backends_identical" in s:
                same += " ({}/{} {})".format(*s["backends_identical"], "between")
        line += f"  {same:>11}"
        lines.append(line)
    lines.append(
        f"overall ratio ({backends[0]}) {figures['ratio_overall']}×; greedy identical to the "
        f"loop {figures['greedy_identical']}/{figures['greedy_total']}; peak RSS "
        f"{figures['peak_rss_mb']} MB"
    )
    return "\n".join(lines)
