"""The engines by name (``--backend``), and choosing and opening one.

Each engine is a backend class (the contract's ``Engine``) that answers for itself,
before any model loads, whether it can run here (``available``) and which settings it
refuses (``refusal``); nobody else compares engine names. An engine's module is imported
only when that engine is asked about, so ``harness validate`` loads none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.engines.contract import Backend, Engine, Options, Parallel
    from harness.engines.hf.backend import HFBackend
    from harness.engines.vllm.backend import VLLMBackend
    from harness.tasks.decoding import Setting

# name -> "module:class"; a new engine is one entry here and a folder beside hf/ and vllm/
ENGINES = {
    "hf": "harness.engines.hf.backend:HFBackend",
    "vllm": "harness.engines.vllm.backend:VLLMBackend",
}
# "auto" takes the first of these that is available and prefers the device
AUTO_ORDER = ("vllm", "hf")
NAMES = ("auto", *ENGINES)

if TYPE_CHECKING:
    # Each engine's class checked against the contract by mypy (tests/test_types.py), so
    # a method missing or of another signature fails there, not on a machine with that
    # engine: as a class, which the registry hands out (Backend extends Engine), and as
    # a loaded backend, where mypy's report names the member that does not fit.
    _CLASSES: list[type[Backend]] = [HFBackend, VLLMBackend]

    def _loaded(hf: HFBackend, vllm: VLLMBackend) -> list[Backend]:
        return [hf, vllm]


def engine(name: str) -> type[Engine]:
    """The engine class called ``name``; a name that is none is one line."""
    if name not in ENGINES:
        raise HarnessError(f"--backend {name}: use {', '.join(NAMES)}")
    module, _, cls = ENGINES[name].partition(":")
    found: type[Engine] = getattr(importlib.import_module(module), cls)
    return found


def choose(requested: str, device: str = "auto") -> str:
    """The engine ``--backend`` asks for: "auto" is the first engine of ``AUTO_ORDER``
    that can run here and takes the device (vLLM where CUDA is present and vLLM is
    installed, else transformers: on the project's 2-core CPU the transformers backend
    measured faster than vLLM's CPU build, 159 against 126 tokens/s greedy)."""
    if requested != "auto":
        engine(requested)  # an unknown name is refused here
        return requested
    for name in AUTO_ORDER:
        cls = engine(name)
        if cls.available() is None and cls.prefers(device):
            return name
    return AUTO_ORDER[-1]


def check(cls: type[Engine], settings: list[Setting], options: Options) -> None:
    """Refuse, before any model loads, an engine that cannot run here or a setting it
    cannot run (one line that names the setting and the engine)."""
    missing = cls.available()
    if missing:
        raise HarnessError(missing)
    for setting in settings:
        reason = cls.refusal(setting, options)
        if reason:
            raise HarnessError(f"decoding setting {setting.name!r}: {reason} with --backend {cls.name}")


def open_backend(name: str, model: str, device: str = "auto", fast: bool = True,
                 parallel: Parallel | None = None) -> Backend:
    """Load ``model`` into the engine ``name``; ``parallel`` (tensor and data parallel,
    Ray) is for the engines that take it."""
    return engine(name).open(model, device=device, fast=fast, parallel=parallel)
