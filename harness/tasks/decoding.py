"""Decoding settings: built-in presets, custom configs, grids, and their validation.

A setting is a name and the ``generate()`` arguments the user set; everything not set is
left to transformers' defaults for that decoding mode. Every setting is checked here,
before any model loads.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.common.hints import did_you_mean
from harness.errors import HarnessError
from harness.tasks.spec import DecodingSpec

# The decoding methods compared in the Korean GPT-2 lessons this project grew from.
PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {},
    "beam": {"num_beams": 5, "early_stopping": True},
    "beam_no_repeat": {"num_beams": 5, "early_stopping": True, "no_repeat_ngram_size": 2},
    "beam_5_sequences": {
        "num_beams": 5,
        "early_stopping": True,
        "no_repeat_ngram_size": 2,
        "num_return_sequences": 5,
    },
    "sample": {"do_sample": True, "top_k": 0},
    "temperature_0.7": {"do_sample": True, "top_k": 0, "temperature": 0.7},
    "top_k": {"do_sample": True, "top_k": 50},
    "top_p": {"do_sample": True, "top_k": 0, "top_p": 0.92},
    "top_k_top_p_3": {"do_sample": True, "top_k": 50, "top_p": 0.95, "num_return_sequences": 3},
}


class GenerateArgs(BaseModel):
    """The ``generate()`` arguments a setting may use; None means "not set"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    do_sample: bool | None = None
    num_beams: int | None = Field(None, ge=1, le=64)
    num_return_sequences: int | None = Field(None, ge=1, le=64)
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    typical_p: float | None = Field(None, gt=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    length_penalty: float | None = None
    early_stopping: bool | Literal["never"] | None = None
    min_new_tokens: int | None = Field(None, ge=0)
    max_new_tokens: int | None = Field(None, ge=1, le=4096)


@dataclass(frozen=True)
class Setting:
    """One named decoding setting."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return bool(self.args.get("do_sample"))

    @property
    def sequences(self) -> int:
        return self.args.get("num_return_sequences", 1)

    @property
    def beams(self) -> int:
        return self.args.get("num_beams", 1)

    @property
    def rows_per_prompt(self) -> int:
        """Sequences the model carries per prompt: what a batch's size is counted in."""
        return max(self.beams, self.sequences)


def expand(spec: DecodingSpec, only: list[str] | None = None) -> list[Setting]:
    """The task's settings: presets, then configs, then the grid's combinations.

    ``only`` (from ``--presets``) replaces the task's presets and drops its configs and
    grid. With nothing chosen, the task runs greedy.
    """
    if only is not None:
        settings = [_preset(name) for name in only]
    else:
        settings = [_preset(name) for name in spec.presets]
        settings += [Setting(name, dict(args)) for name, args in spec.configs.items()]
        settings += _grid(spec.grid)
    if not settings:
        settings = [_preset("greedy")]
    names = [s.name for s in settings]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HarnessError(f"decoding: setting name used twice: {', '.join(twice)}")
    for setting in settings:
        check(setting, spec.max_new_tokens)
    return settings


def check(setting: Setting, max_new_tokens: int) -> None:
    """Refuse unknown arguments, out-of-range values and impossible combinations."""
    try:
        GenerateArgs.model_validate(setting.args)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(GenerateArgs.model_fields)
            raise HarnessError(
                f"decoding setting {setting.name!r}: unknown generate() argument {key!r} "
                f"(the harness takes {allowed})"
            ) from None
        raise HarnessError(f"decoding setting {setting.name!r}: {key}: {error['msg']}") from None
    from transformers import GenerationConfig  # lazily: validation is the only use here

    args = {"max_new_tokens": max_new_tokens, **setting.args}
    try:
        # transformers knows which combinations make sense; strict turns its warnings
        # (temperature without sampling, ...) into errors.
        logging.getLogger("transformers").setLevel(logging.ERROR)
        GenerationConfig(**args).validate(strict=True)
    except ValueError as exc:
        reason = " ".join(str(exc).replace("GenerationConfig is invalid:", "").split())
        # transformers' advice about a model's generation_config.json does not apply: the
        # harness never takes decoding arguments from the model.
        reason = reason.split(" If you're using a pretrained model")[0].removeprefix("- ")
        raise HarnessError(f"decoding setting {setting.name!r}: {reason}") from None


def _preset(name: str) -> Setting:
    if name not in PRESETS:
        hint = did_you_mean(name, PRESETS, f"known: {', '.join(PRESETS)}")
        raise HarnessError(f"decoding: unknown preset {name!r}; {hint}")
    return Setting(name, dict(PRESETS[name]))


def _grid(grid: dict[str, list[Any]]) -> list[Setting]:
    if not grid:
        return []
    empty = [key for key, values in grid.items() if not values]
    if empty:
        raise HarnessError(f"decoding.grid: {', '.join(empty)} has no values")
    varying = [key for key, values in grid.items() if len(values) > 1] or list(grid)
    settings = []
    for values in itertools.product(*grid.values()):
        args = dict(zip(grid, values))
        name = ",".join(f"{key}={_show(args[key])}" for key in varying)
        settings.append(Setting(name, args))
    return settings


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
