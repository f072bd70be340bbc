"""A prompt-evaluation harness for causal language models, Korean ones first.

From Python: ``harness.run``, ``harness.load``, ``harness.load_model``,
``harness.fine_tune``, ``harness.rate`` and ``harness.judge`` (see ``harness.api``); a
mistake raises ``harness.HarnessError``.
They are imported on first use, so that ``harness --help`` and ``harness validate`` stay
quick.
"""

from typing import Any

from harness.common.version import __version__
from harness.errors import HarnessError

__all__ = ["HarnessError", "__version__", "Model", "Run", "fine_tune", "judge", "load",
           "load_model", "rate", "run"]

_API = {"Model", "Run", "fine_tune", "judge", "load", "load_model", "rate", "run"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
