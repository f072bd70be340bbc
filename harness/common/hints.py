"""The hint after an unknown name: the known name it most likely meant to be."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str], otherwise: str = "") -> str:
    """"did you mean 'X'?" for the known name closest to ``name`` (a typo's likely
    intent), or ``otherwise`` where none is close (a list of the known names, say)."""
    guess = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {guess[0]!r}?" if guess else otherwise
