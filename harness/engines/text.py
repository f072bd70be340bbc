"""Text every engine makes the same way: answers decoded from token ids, and stop strings
matched on token sequences (transformers' ``StopStringCriteria``, built once each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Text:
    """Decoding and stop-string matchers for one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._matchers: dict[str, Any] = {}

    def decode(self, ids: list[int]) -> str:
        """Token ids to text, special tokens left out (as answers are reported)."""
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def matchers(self, stop: tuple[str, ...]) -> list[Any]:
        """transformers' matchers that end generation at a stop string, built once each.

        Building one scans the whole vocabulary (half a second for Gemma's). A stop string
        that no token can spell is left out, as transformers refuses it: the model cannot
        write it, and answers are cut at every stop string afterwards anyway.
        """
        from transformers import StopStringCriteria

        for string in stop:
            if string not in self._matchers:
                try:
                    self._matchers[string] = StopStringCriteria(self.tokenizer, [string])
                except ValueError:
                    self._matchers[string] = None
        return [m for m in (self._matchers[s] for s in stop) if m is not None]

    def ends(self, stop: tuple[str, ...]) -> Callable[[list[int]], bool]:
        """Whether a token sequence ends on one of the stop strings (transformers' rule),
        for engines that step sequences themselves (beam search on vLLM)."""
        matchers = self.matchers(stop)

        def ends(tokens: list[int]) -> bool:
            if not matchers:
                return False
            import torch

            ids = torch.tensor([tokens], dtype=torch.long)
            return any(bool(m(ids, None)[0]) for m in matchers)

        return ends
