"""A prompt-evaluation harness for causal language models, Korean ones first.

From Python: ``harness.run``, ``harness.load``, ``harness.load_model`` and
``harness.fine_tune`` (see ``harness.api``); a mistake raises ``harness.HarnessError``.
They are imported on first use, so that ``harness --help`` and ``harness validate`` stay
quick.
"""

from typing import Any

from .errors import HarnessError

__version__ = "0.1.0"
__all__ = ["HarnessError", "Model", "Run", "fine_tune", "load", "load_model", "run"]

_API = {"Model", "Run", "fine_tune", "load", "load_model", "run"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
