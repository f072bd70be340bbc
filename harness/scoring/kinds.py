"""The task kinds, named once: the task file's ``kind`` field, the metric registry and
``harness new`` all read them from here.

A kind picks the task's checks, its metrics and how its answers are marked. Adding one
is adding its name here, then the registry entries that show it (``metrics.METRICS``),
its main metric (``metrics.MAIN``) and the starter task's choices (``tools/authoring``).
This module imports nothing, so that loading a task file stays quick.
"""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["classification", "multiple_choice", "qa", "translation", "generation"]
KINDS: tuple[Kind, ...] = get_args(Kind)
