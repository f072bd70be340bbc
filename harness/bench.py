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

from . import pipeline, runner
from .backend import Options
from .decoding import Setting
from .generate import HFBackend
from .models import LoadedModel


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
    harness: Way = field(default_factory=Way)
    identical: int = 0
    compared: int = 0

    @property
    def ratio(self) -> float:
        return self.harness.rate / self.loop.rate if self.loop.rate else 0.0


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
) -> dict[str, Any]:
    from .models import load_model

    presets = presets or ["greedy", "beam", "top_p"]
    overrides = pipeline.Overrides(
        shots=shots or [0, 1, 3], presets=presets, seeds=[seed], limit=limit
    )
    plan = pipeline.prepare(task_path, overrides)
    options = Options(max_new_tokens=max_new_tokens)  # no stop strings: equal work both ways
    started = time.perf_counter()
    loaded = load_model(model, device)
    backend = HFBackend(loaded)
    warm = runner.Request(plan.prompts[0], plan.settings[0], seed)
    backend.generate([warm.prompt.text], warm.setting, [warm.own_seed], Options(max_new_tokens=1))
    ready_s = time.perf_counter() - started

    picked = random.Random(0).sample(plan.prompts, min(sample, len(plan.prompts)))
    results = []
    for setting in plan.settings:
        result = SettingResult(setting.name)
        requests = [r for r in plan.requests if r.setting.name == setting.name]
        began = time.perf_counter()
        records = runner.run(plan.task.spec, requests, backend, options)
        result.harness = Way(sum(r["n_tokens"] for r in records), time.perf_counter() - began)
        _say(f"{setting.name}: harness {len(requests)} prompts in {result.harness.seconds:.1f} s")
        texts, result.loop = lessons_loop(
            loaded, [p.text for p in picked], setting, max_new_tokens, seed
        )
        _say(f"{setting.name}: loop {len(picked)} prompts in {result.loop.seconds:.1f} s")
        if not setting.sampled and setting.beams == 1:
            by_prompt = {(r["item"], r["shots"]): r["raw_output"] for r in records}
            for prompt, text in zip(picked, texts, strict=True):
                result.compared += 1
                result.identical += by_prompt[(prompt.item, prompt.shots)] == text
        results.append(result)
    return _figures(results, loaded, ready_s, len(plan.requests), len(picked))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _figures(results: list[SettingResult], loaded: LoadedModel, ready_s: float,
             n_prompts: int, n_sample: int) -> dict[str, Any]:
    loop = Way(sum(r.loop.tokens for r in results), sum(r.loop.seconds for r in results))
    ours = Way(sum(r.harness.tokens for r in results), sum(r.harness.seconds for r in results))
    # Both ways give each setting the same number of prompts (all of them, or the sample),
    # so their overall rates weigh the settings alike. The loop's time for the whole grid
    # is its sample's time scaled up.
    scale = n_prompts / len(results) / n_sample
    greedy = [r for r in results if r.name == "greedy"]
    return {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "prompts_per_setting": n_prompts // max(1, len(results)),
        "loop_sample": n_sample,
        "settings": [
            {
                "name": r.name,
                "loop_tokens_per_s": round(r.loop.rate, 2),
                "harness_tokens_per_s": round(r.harness.rate, 2),
                "ratio": round(r.ratio, 2),
                "harness_tokens": r.harness.tokens,
                "harness_s": round(r.harness.seconds, 2),
                "loop_s": round(r.loop.seconds, 2),
                "loop_s_for_grid": round(r.loop.seconds * scale, 1),
                "greedy_identical": r.identical if r.compared else None,
            }
            for r in results
        ],
        "ratio_overall": round(ours.rate / loop.rate, 2) if loop.rate else 0.0,
        "ratio_greedy": round(greedy[0].ratio, 2) if greedy else None,
        "ratio_by_setting": {r.name: round(r.ratio, 2) for r in results},
        "greedy_identical": sum(r.identical for r in results),
        "greedy_total": sum(r.compared for r in results),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_s": round(ready_s, 2),
    }


def format_table(figures: dict[str, Any]) -> str:
    lines = [
        f"model {figures['model']} on {figures['device']} ({figures['dtype']}); "
        f"{figures['prompts_per_setting']} prompts per setting, loop timed on "
        f"{figures['loop_sample']}; ready in {figures['load_s']} s",
        f"{'setting':<16}{'loop tok/s':>12}{'harness tok/s':>15}{'ratio':>8}{'greedy same':>13}",
    ]
    for s in figures["settings"]:
        same = "" if s["greedy_identical"] is None else f"{s['greedy_identical']}/{figures['loop_sample']}"
        lines.append(
            f"{s['name']:<16}{s['loop_tokens_per_s']:>12.1f}{s['harness_tokens_per_s']:>15.1f}"
            f"{s['ratio']:>7.1f}×{same:>13}"
        )
    lines.append(
        f"overall ratio {figures['ratio_overall']}×; greedy identical "
        f"{figures['greedy_identical']}/{figures['greedy_total']}; peak RSS "
        f"{figures['peak_rss_mb']} MB"
    )
    return "\n".join(lines)
