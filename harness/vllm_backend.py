"""The vLLM backend (to be built): see issue 11."""

from __future__ import annotations

from typing import Any

from .backend import Options
from .decoding import Setting
from .errors import HarnessError


def refusal(setting: Setting, options: Options) -> str | None:
    return None


class VLLMBackend:
    name = "vllm"

    @classmethod
    def open(cls, model: str, device: str) -> Any:
        raise HarnessError("--backend vllm: not available yet")
