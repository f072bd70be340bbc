"""Choosing and opening a backend: ``--backend auto|hf|vllm``.

Kept apart from the contract (``backend``) so that the contract imports no engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.engines.contract import Backend, Options, Parallel
    from harness.tasks.decoding import Setting


# The backends a user can ask for with --backend; "auto" picks one (see ``choose``).
NAMES = ("auto", "hf", "vllm")


def choose(requested: str, device: str = "auto") -> str:
    """The backend ``--backend`` asks for: "auto" is vLLM where CUDA is present and vLLM
    is installed, else transformers (on the project's 2-core CPU the transformers backend
    measured faster than vLLM's CPU build: 159 against 126 tokens/s greedy)."""
    import importlib.util

    from harness.errors import HarnessError

    if requested not in NAMES:
        raise HarnessError(f"--backend {requested}: use {', '.join(NAMES)}")
    if requested != "auto":
        return requested
    if device == "cpu" or importlib.util.find_spec("vllm") is None:
        return "hf"
    import torch

    return "vllm" if torch.cuda.is_available() else "hf"


def check(name: str, settings: list[Setting], options: Options) -> None:
    """Refuse, before any model loads, a setting the backend cannot run (one line that
    names the setting and the backend)."""
    if name == "vllm":
        from harness.engines.vllm.backend import refusal, require

        require()
    else:
        return  # transformers runs every setting decoding.py accepts
    from harness.errors import HarnessError

    for setting in settings:
        reason = refusal(setting, options)
        if reason:
            raise HarnessError(f"decoding setting {setting.name!r}: {reason} with --backend {name}")


def open_backend(name: str, model: str, device: str = "auto", fast: bool = True,
                 parallel: Parallel | None = None) -> Backend:
    """Load ``model`` into the backend ``name`` ("hf" or "vllm"); ``parallel`` (tensor and
    data parallel, Ray) is vLLM's alone."""
    if name == "vllm":
        from harness.engines.vllm.backend import VLLMBackend

        return VLLMBackend.open(model, device, parallel)
    if parallel is not None and (parallel.tensor > 1 or parallel.data > 1 or parallel.ray):
        from harness.errors import HarnessError

        raise HarnessError("--tensor-parallel, --data-parallel and --ray need --backend vllm")
    from harness.engines.hf.backend import HFBackend
    from harness.engines.models import load_model

    return HFBackend(load_model(model, device), fast=fast)
