"""``harness doctor``: what a new machine has, and whether both engines agree on it.

It says what it finds (GPU, CUDA, vLLM and the model runner vLLM picks, bfloat16), then
runs every preset of ``tasks/emotion.yaml`` and ``tasks/continuation.yaml`` on a few
items on both engines and checks what the README promises:

- greedy and beam outputs are the same on both engines;
- sampled outputs are the same again on a rerun with the same seed (on the keyed draw,
  the same as the transformers backend's too: that is checked where it is the sampler);
- label rankings are the same on both engines (the same best label, log-probabilities
  within 1e-3);

and times the two engines and vLLM's own ``LLM.generate`` on the same prompts (no stop
strings, the same lengths), printing one table with the ratios and a last line saying
whether the machine passed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.engines import registry
from harness.engines.contract import Options, Parallel
from harness.records import Record
from harness.runs import pipeline, runner

TASKS = ("tasks/emotion.yaml", "tasks/continuation.yaml")
TOLERANCE = 1e-3  # label log-probabilities, between the engines


@dataclass
class Line:
    """One setting of one task: its figures and its checks."""

    task: str
    setting: str
    prompts: int
    rates: dict[str, float] = field(default_factory=dict)  # engine -> tokens/s
    checks: list[tuple[str, bool]] = field(default_factory=list)  # (what, passed)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.checks)


def environment() -> dict[str, Any]:
    """What the machine has, as the engines see it."""
    import platform

    import torch

    found: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        found["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
        found["cuda"] = torch.version.cuda
        found["bf16"] = bool(torch.cuda.is_bf16_supported())
    else:
        found["gpu"] = "none"
        found["cuda"] = None
        found["bf16"] = _cpu_bf16()
    from harness.engines.vllm.backend import available

    if available():
        import vllm

        found["vllm"] = vllm.__version__
    else:
        found["vllm"] = None
    return found


def _cpu_bf16() -> bool:
    """Whether the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_doctor(model: str = "default", limit: int = 4, presets: list[str] | None = None,
               tasks: tuple[str, ...] = TASKS, device: str = "auto", seed: int = 42,
               raw: bool = True, parallel: Parallel | None = None,
               given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Open both engines (``given``: engines already open, used and left open), run the
    checks and the timings, and return the figures ``format_report`` prints."""
    found = environment()
    if found["vllm"] is None:
        return {"environment": found, "lines": [], "failed": ["vLLM is not installed"]}
    plans = [_narrowed(pipeline.prepare(_task_file(task),
                                        pipeline.Overrides(limit=limit, seeds=[seed])), presets)
             for task in tasks]
    rank = presets is None or "likelihood" in presets
    plans = [p for p in plans if p.settings or (rank and p.likelihood)]
    opened: dict[str, Any] = dict(given or {})
    lines: list[Line] = []
    try:
        for name in ("hf", "vllm"):
            if name not in opened:
                _say(f"opening {name} on {model}")
                opened[name] = registry.open_backend(name, model, device, parallel=parallel)
        info = opened["vllm"].describe()
        found["vllm_runner"] = info.get("runner")
        found["vllm_sampler"] = info.get("sampler")
        found["vllm_device"] = info.get("device")
        for plan in plans:
            lines += _check_task(plan, opened, rank)
    finally:
        for name, backend in opened.items():
            if not (given and name in given):
                backend.close()
    if raw:
        from harness.tools.bench import _raw_vllm

        for plan in plans:
            timed = _raw_vllm(model, None if device == "auto" else device, parallel, plan,
                              plan.options.max_new_tokens)
            for line in lines:
                if line.task == plan.task.spec.name and line.setting in timed:
                    line.rates["raw"] = timed[line.setting].rate
    failed = [f"{line.task}/{line.setting}: {what}" for line in lines
              for what, ok in line.checks if not ok]
    return {"environment": found, "lines": lines, "failed": failed}


def _task_file(task: str) -> Path:
    """A shipped task by its path from the repository's root, wherever the command runs."""
    path = Path(task)
    if path.exists():
        return path
    return Path(__file__).resolve().parents[2] / task


def _narrowed(plan: pipeline.Plan, presets: list[str] | None) -> pipeline.Plan:
    """The plan with only the settings named in ``presets`` (None: all of them)."""
    import dataclasses

    if presets is None:
        return plan
    return dataclasses.replace(
        plan, settings=[s for s in plan.settings if s.name in presets],
        requests=[r for r in plan.requests if r.setting.name in presets],
    )


def _check_task(plan: pipeline.Plan, opened: dict[str, Any], rank: bool) -> list[Line]:
    name = plan.task.spec.name
    options = Options(max_new_tokens=plan.options.max_new_tokens)  # the work vLLM's own does
    lines = []
    for setting in plan.settings:
        requests = [r for r in plan.requests if r.setting.name == setting.name]
        line = Line(name, setting.name, len(requests))
        outputs: dict[str, list[Record]] = {}
        for engine, backend in opened.items():
            began = time.perf_counter()
            made = runner.run(plan.task.spec, requests, backend, options)
            seconds = time.perf_counter() - began
            line.rates[engine] = sum(r["n_tokens"] for r in made) / seconds if seconds else 0.0
            outputs[engine] = made
            _say(f"{name} {setting.name}: {engine} {len(requests)} prompts in {seconds:.1f} s")
        if setting.sampled:
            again = runner.run(plan.task.spec, requests, opened["vllm"], options)
            line.checks.append(("vllm: same samples again with the same seed",
                                _texts(again) == _texts(outputs["vllm"])))
            if opened["vllm"].identity().get("sampler") == "keyed":
                line.checks.append(("keyed draw: the transformers backend's samples",
                                    _texts(outputs["vllm"]) == _texts(outputs["hf"])))
        else:
            line.checks.append(("the same outputs on both engines",
                                _texts(outputs["vllm"]) == _texts(outputs["hf"])))
        lines.append(line)
    if rank and plan.likelihood and plan.task.spec.labels:
        lines.append(_check_ranking(plan, opened))
    return lines


def _texts(made: list[Record]) -> list[tuple[Any, ...]]:
    return [(r["item"], r["shots"], r["sequence"], r["raw_output"], r["n_tokens"]) for r in made]


def _check_ranking(plan: pipeline.Plan, opened: dict[str, Any]) -> Line:
    labels = list(plan.task.spec.labels or [])
    texts = [p.text for p in plan.prompts]
    line = Line(plan.task.spec.name, "likelihood", len(texts))
    scores = {}
    for engine, backend in opened.items():
        began = time.perf_counter()
        scores[engine] = backend.rank_labels(texts, labels)
        seconds = time.perf_counter() - began
        line.rates[engine] = len(texts) / seconds if seconds else 0.0  # prompts/s
    same_best = all(
        max(a, key=lambda s: s.logprob).label == max(b, key=lambda s: s.logprob).label
        for a, b in zip(scores["vllm"], scores["hf"], strict=True)
    )
    close = all(abs(x.logprob - y.logprob) <= TOLERANCE
                for a, b in zip(scores["vllm"], scores["hf"], strict=True)
                for x, y in zip(a, b, strict=True))
    line.checks += [("the same best label on both engines", same_best),
                    (f"label log-probabilities within {TOLERANCE}", close)]
    return line


def format_report(figures: dict[str, Any]) -> str:
    """What was found, the table, and the verdict as the last line."""
    found = figures["environment"]
    out = [
        f"GPU: {found['gpu']} · CUDA: {found.get('cuda') or '–'} · "
        f"bf16: {'yes' if found.get('bf16') else 'no'} · torch {found['torch']}",
        f"vLLM: {found.get('vllm') or 'not installed'}"
        + (f" on {found.get('vllm_device')} · model runner {found.get('vllm_runner')} · "
           f"sampler {found.get('vllm_sampler')}" if found.get("vllm_runner") else ""),
        "",
    ]
    header = ("task", "setting", "prompts", "hf tok/s", "vllm tok/s", "vLLM's own tok/s",
              "vllm/own", "vllm/hf", "checks")
    rows = []
    for line in figures["lines"]:
        hf, ours, own = (line.rates.get(k) for k in ("hf", "vllm", "raw"))
        rows.append((
            line.task, line.setting, str(line.prompts), _num(hf), _num(ours), _num(own),
            _ratio(ours, own), _ratio(ours, hf),
            "ok" if line.passed else "FAILED: " + "; ".join(w for w, ok in line.checks if not ok),
        ))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    out.append("(likelihood rows: prompts ranked per second)")
    failed = figures["failed"]
    out.append("FAIL: " + "; ".join(failed) if failed else
               f"PASS: {sum(len(line.checks) for line in figures['lines'])} checks")
    return "\n".join(out)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
