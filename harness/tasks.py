"""The task file: YAML loaded safely and validated against the contract in DESIGN.md."""

from __future__ import annotations

import difflib
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, WrapValidator,
    field_validator, model_validator,
)

from .data import Item, check_items, read_table
from .errors import HarnessError

Kind = Literal["classification", "qa", "translation", "generation"]


def _path_or_items(value: Any, handler: Any) -> Any:
    # Without this, a value that is neither reports one error per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(
            "expected a CSV, TSV, JSONL, Excel (.xlsx) or Parquet path, or a list of "
            "mappings (column: value)"
        ) from None


Source = Annotated[str | list[dict[str, Any]], WrapValidator(_path_or_items)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptSpec(_Strict):
    instruction: str | None = Field(None, description="Jinja, rendered once at the top")
    example: str | None = Field(None, description="Jinja, rendered once per shot")
    query: str = Field(description="Jinja, rendered for the item itself")
    separator: str = Field("\n", description="joins instruction, examples and query")


class DecodingSpec(_Strict):
    presets: list[str] = Field(default_factory=list, description="built-in named settings")
    configs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="your own named settings: generate() arguments"
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="cartesian product; each combination is one setting"
    )
    max_new_tokens: int = Field(
        32, ge=1, le=4096, description="new tokens per output at most; a setting may set its own"
    )
    stop: list[str] = Field(default_factory=list, description="strings that end an answer")
    bad_words: list[str] = Field(
        default_factory=list, description="strings the model must not produce"
    )

    @model_validator(mode="after")
    def _no_empty_strings(self) -> DecodingSpec:
        if any(s == "" for s in self.stop + self.bad_words):
            raise ValueError("stop and bad_words cannot hold empty strings")
        return self


class Task(_Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$", max_length=80,
        description="letters, digits, - and _; it names the report folder",
    )
    description: str = Field("", description="one line for harness list and the report")
    kind: Kind = Field(description="picks the checks and the metrics")
    data: Source = Field(
        description="CSV, TSV, JSONL, .xlsx or .parquet path relative to the YAML, or an "
        "inline list"
    )
    fewshot: Source | None = Field(
        None, description="pool that examples are drawn from"
    )
    shots: list[int] = Field(
        default_factory=lambda: [0], min_length=1,
        description="shot counts compared side by side; 0 is no examples",
    )
    prompt: PromptSpec = Field(description="the Jinja templates a prompt is built from")
    target: str | None = Field(None, description="Jinja over the item: the reference answer")
    aliases: str | None = Field(
        None, description="Jinja over the item: other accepted answers, separated by |"
    )
    labels: list[str] | None = Field(None, description="classification: the allowed answers")
    scoring: Literal["generate", "likelihood", "both"] = Field(
        "generate", description="classification: generate answers (generate), rank the "
        "labels by their log-probability after the prompt (likelihood), or both side by side",
    )
    decoding: DecodingSpec = Field(
        default_factory=DecodingSpec, description="the settings compared side by side"
    )
    seeds: list[int] = Field(
        default_factory=lambda: [42], min_length=1,
        description="each sampled setting runs once per seed",
    )
    metrics: list[str] | None = Field(None, description="default chosen by kind")
    model: str = Field(
        "default", description="default, a model folder, a .gguf file or a hub id; "
        "--model overrides it",
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("kind")  # absent when kind itself is wrong
        if metrics is None or kind is None:
            return metrics
        from .metrics import metric_names  # lazily: it imports sacrebleu

        known = metric_names(kind)
        for name in metrics:
            if name not in known:
                guess = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {guess[0]!r}?" if guess else f"choose from {', '.join(known)}"
                raise ValueError(f"{name!r} is not a metric of a {kind} task; {hint}")
        return metrics

    @field_validator("scoring")
    @classmethod
    def _scoring_ranks_labels(cls, scoring: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if scoring != "generate" and kind is not None and kind != "classification":
            raise ValueError(
                f"{scoring} ranks the labels of a classification task; a {kind} task is "
                "scored on what the model generates (scoring: generate)"
            )
        return scoring

    @model_validator(mode="after")
    def _check_kind(self) -> Task:
        if any(k < 0 for k in self.shots):
            raise ValueError("shots must be 0 or more")
        if len(set(self.shots)) != len(self.shots):
            raise ValueError("shots has a count twice")
        if max(self.shots) > 0 and not self.prompt.example:
            raise ValueError("shots above 0 need prompt.example")
        if self.kind != "generation" and not self.target:
            raise ValueError(f"a {self.kind} task needs target (the reference answer)")
        if self.kind == "classification":
            if not self.labels or len(self.labels) < 2:
                raise ValueError("a classification task needs labels (two or more)")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels has a label twice")
        elif self.labels is not None:
            raise ValueError("labels is only for kind: classification")
        return self


class LoadedTask(BaseModel):
    """A validated task with its items read."""

    model_config = ConfigDict(frozen=True)

    spec: Task
    path: Path
    items: list[Item]
    pool: list[Item] | None


def load_task(path: str | Path) -> LoadedTask:
    """Load, validate and read the data of one task file."""
    path = Path(path)
    return load_task_text(_read_yaml_text(path), path, path.parent)


def load_task_text(text: str, source: Path, base: Path) -> LoadedTask:
    """A task written as YAML text; ``source`` names it in messages, data paths are
    relative to ``base``."""
    raw, root = _parse_yaml(source, text)
    return load_task_mapping(raw, source, base, root)


def load_task_mapping(
    raw: dict[str, Any], source: Path, base: Path, root: yaml.Node | None = None
) -> LoadedTask:
    """A task given as a mapping of fields (a task file once parsed, or a dict from
    Python); ``root``, the parsed YAML, lets messages name the line."""
    try:
        spec = Task.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(_explain(source, exc, root)) from None
    items = _read_items(source, base, spec.data, "data")
    pool = _read_items(source, base, spec.fewshot, "fewshot") if spec.fewshot is not None else None
    return LoadedTask(spec=spec, path=source, items=items, pool=pool)


def _read_items(
    source: Path, base: Path, data: str | list[dict[str, Any]], field: str
) -> list[Item]:
    if isinstance(data, list):
        return check_items(data, f"{source}: {field}")
    return read_table((base / data).resolve())


def _read_yaml_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HarnessError(f"{path}: task file not found") from None
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: the task file is not UTF-8 text") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the task file ({exc.strerror})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # most often Jinja left unquoted: {{ text }}
                raise yaml.constructor.ConstructorError(
                    None, None, 'a mapping or list used as a key; put Jinja templates in '
                    'quotes, e.g. query: "{{ text }}"', key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise HarnessError(f"{where}: YAML error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: YAML error: {exc}") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a task file is a mapping of fields (name, kind, data, ...)")
    return raw, root


def _explain(path: Path, exc: ValidationError, root: yaml.Node | None) -> str:
    """Turn pydantic's report into lines that name the file, line, field and a fix."""
    lines = []
    for error in exc.errors():
        loc = [part for part in error["loc"] if not isinstance(part, str) or part[0] != "_"]
        field = ".".join(str(part) for part in loc) or "(task)"
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
            guess = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1)
            if guess:
                message += f"; did you mean {guess[0]!r}?"
        elif error["type"] == "missing":
            message = "required field is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            if field == "name" and error["type"] == "string_pattern_mismatch":
                message = "use letters, digits, - and _ only (the name becomes a folder name)"
        lines.append(f"{where}: {field}: {message}")
    return "\n".join(lines)


def _fields_at(loc: list[Any]) -> list[str]:
    model: Any = Task
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the key or item that ``loc`` points at, if it can be found."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
