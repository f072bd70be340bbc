"""The task file: YAML loaded safely and validated against the contract in DESIGN.md."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)

from harness.common.files import MiB, read_regular
from harness.common.hints import did_you_mean
from harness.errors import HarnessError
from harness.scoring.kinds import Kind
from harness.tasks.data import Item, check_items, read_table
from harness.tasks.hub import DataSource

# sacrebleu's tokenizers a task may choose for bleu (ko-mecab needs sacrebleu[ko])
BleuTokenize = Literal["13a", "intl", "char", "ko-mecab", "zh", "ja-mecab", "flores200", "none"]

MAX_SEED = 2**63 - 1  # seeds are what torch and every engine take: 0 .. 2^63 - 1
MAX_TASK_BYTES = 256 * MiB  # a task file with inline rows; larger data belongs in a file
# Values that YAML aliases (*name) may add to a task file beyond those written in it:
# enough to reuse a prompt or a list, far too few for an alias bomb ("billion laughs").
MAX_ALIAS_VALUES = 100_000


def seed_problem(seeds: list[int]) -> str | None:
    """What is wrong with a list of seeds (the task's or --seed's), or None."""
    if not seeds:
        return "give one seed or more"
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        return f"seeds are whole numbers from 0 to 2^63 - 1 ({MAX_SEED})"
    if len(set(seeds)) != len(seeds):
        return "a seed is given twice"
    return None


def shots_problem(shots: list[int]) -> str | None:
    """What is wrong with a list of shot counts (the task's or --shots's), or None."""
    if not shots:
        return "give one shot count or more"
    if any(k < 0 for k in shots):
        return "shot counts are 0 or more"
    if len(set(shots)) != len(shots):
        return "a shot count is given twice"
    return None


def _path_or_items(value: Any, handler: Any) -> Any:
    # Without this, a value that is neither reports one error per member of the union.
    try:
        return handler(value)
    except ValidationError:
        if isinstance(value, dict):  # the mapping form: say what is wrong inside it
            try:
                return DataSource.model_validate(value)
            except ValidationError as exc:
                raise ValueError(_source_problem(exc)) from None
        raise ValueError(
            "expected a CSV, TSV, JSONL, Excel (.xlsx) or Parquet path, a datasets folder, "
            "a list of mappings (column: value), or a mapping naming a Hub dataset "
            "(dataset, config, split, revision)"
        ) from None


def _source_problem(exc: ValidationError) -> str:
    """The first mistake in a mapping-form data or fewshot, as one phrase."""
    error = exc.errors()[0]
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        fields = list(DataSource.model_fields)
        hint = did_you_mean(key, fields, f"use {', '.join(fields)}")
        return f"unknown key {key!r}; {hint}"
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


Source = Annotated[str | list[dict[str, Any]] | DataSource, WrapValidator(_path_or_items)]


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


def _as_texts(value: Any) -> Any:
    """A scale written as numbers (``[1, 2, 3, 4, 5]``) is kept as their text."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


class RatingSpec(_Strict):
    """How people rate the outputs in the report (and what a judge answers on)."""

    scale: Annotated[list[str], WrapValidator(lambda v, h: h(_as_texts(v)))] = Field(
        default_factory=lambda: ["bad", "good"], min_length=2, max_length=11,
        description="the points of the scale, worst first (default bad, good); numbers "
        "(1 to 5) score as themselves, words as their place (0, 1, ...)",
    )
    criteria: list[str] = Field(
        default_factory=list, max_length=8,
        description="named criteria, each rated on the scale (e.g. 자연스러움, 관련성); "
        "none: one overall rating",
    )

    @model_validator(mode="after")
    def _distinct(self) -> RatingSpec:
        if len(set(self.scale)) != len(self.scale) or any(not s.strip() for s in self.scale):
            raise ValueError("scale needs distinct, non-empty points")
        if len(set(self.criteria)) != len(self.criteria) or any(
                not c.strip() for c in self.criteria):
            raise ValueError("criteria needs distinct, non-empty names")
        return self


class JudgeSpec(_Strict):
    """A model that scores the outputs (``harness judge``): given a Jinja rubric, it
    answers with a point of the rating scale (pointwise) or A / B / tie (pairwise)."""

    rubric: str = Field(
        description="Jinja: the judge's prompt. Pointwise: item columns, prompt, output, "
        "reference, scale; pairwise: output_a and output_b instead of output",
    )
    mode: Literal["pointwise", "pairwise"] = Field(
        "pointwise", description="a score per output, or which of two settings' outputs is "
        "better (both orders asked)",
    )
    model: str = Field("default", description="default, a model folder, a .gguf file or a "
                       "hub id; --judge-model overrides it")
    max_new_tokens: int = Field(8, ge=1, le=512, description="tokens of the judge's reply")

    @field_validator("rubric")
    @classmethod
    def _compiles(cls, rubric: str) -> str:
        from harness.tasks.sandbox import compile_template

        try:
            compile_template(rubric, "rubric")
        except HarnessError as exc:
            raise ValueError(str(exc).removeprefix("rubric: ")) from None
        return rubric


class Task(_Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$", max_length=80,
        description="letters, digits, - and _; it names the report folder",
    )
    description: str = Field("", description="one line for harness list and the report")
    kind: Kind = Field(description="picks the checks and the metrics")
    data: Source = Field(
        description="CSV, TSV, JSONL, .xlsx or .parquet path relative to the YAML, a folder "
        "written by datasets' save_to_disk, an inline list, or a mapping naming a Hub dataset"
    )
    fewshot: Source | None = Field(
        None, description="pool that examples are drawn from"
    )
    fewshot_order: Literal["per_item", "first"] = Field(
        "per_item", description="per_item: each item its own seeded order of the pool; "
        "first: the pool's first rows, in file order, the same for every item",
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
    choices: str | None = Field(
        None, description="multiple_choice: a Jinja expression over the item giving its own "
        "list of choices, e.g. [alternative_1, alternative_2], or a list column's name; "
        "target then renders to the right choice's text or its index from 0",
    )
    answer_format: Literal["text", "letter", "number"] = Field(
        "text", description="multiple_choice scored by generating: how the answer is read "
        "from the output: the choice's text, its letter (A, B, ...) or its number (1, 2, ...)",
    )
    language: str | None = Field(
        None, pattern=r"^[a-z]{2,3}$", description="the language answers and references are "
        "in (ko, en, ...); default: Korean where most letters of the references are Hangul",
    )
    bleu_tokenize: BleuTokenize | None = Field(
        None, description="sacrebleu's tokenizer for bleu; default ko-mecab for Korean "
        "references (char where sacrebleu[ko] is not installed), 13a otherwise",
    )
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
    chat: Literal["none", "turns", "single"] = Field(
        "none", description="send prompts through the model's chat template: turns (the "
        "instruction as the system turn, each example as a user and an assistant turn, the "
        "query as the last user turn) or single (the whole prompt as one user turn); "
        "--chat overrides it",
    )
    chat_args: dict[str, Any] = Field(
        default_factory=dict, description="arguments for the chat template, e.g. "
        "enable_thinking: false (a server gets them as chat_template_kwargs); --chat-arg "
        "KEY=VALUE adds to them",
    )
    rating: RatingSpec = Field(
        default_factory=RatingSpec, description="the scale people rate outputs on in the "
        "report, and its named criteria",
    )
    judge: JudgeSpec | None = Field(None, description="a model as judge: its rubric and mode")
    too_long: Literal["refuse", "cut_left"] = Field(
        "refuse", description="a prompt that with its new tokens exceeds the model's "
        "context: refuse the run (naming it), or cut the prompt from the left",
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("kind")  # absent when kind itself is wrong
        if metrics is None or kind is None:
            return metrics
        from harness.scoring.metrics import metric_names  # lazily: it imports sacrebleu

        known = metric_names(kind)
        for name in metrics:
            if name not in known:
                hint = did_you_mean(name, known, f"choose from {', '.join(known)}")
                raise ValueError(f"{name!r} is not a metric of a {kind} task; {hint}")
            if name.endswith("_morph") and importlib.util.find_spec("kiwipiepy") is None:
                raise ValueError(f"{name} splits morphemes with Kiwi, which is not installed: "
                                 "pip install kiwipiepy (or pip install 'harness[ko]')")
        return metrics

    @field_validator("scoring")
    @classmethod
    def _scoring_ranks_labels(cls, scoring: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if scoring != "generate" and kind is not None and kind not in (
                "classification", "multiple_choice"):
            raise ValueError(
                f"{scoring} ranks the labels of a classification or multiple_choice task; a "
                f"{kind} task is scored on what the model generates (scoring: generate)"
            )
        return scoring

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, seeds: list[int]) -> list[int]:
        problem = seed_problem(seeds)
        if problem:
            raise ValueError(problem)
        return seeds

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
            raise ValueError("labels is only for kind: classification (multiple_choice "
                             "items carry their own choices)")
        if self.kind == "multiple_choice" and not self.choices:
            raise ValueError("a multiple_choice task needs choices (a Jinja expression over "
                             "the item giving its list of choices)")
        if self.kind != "multiple_choice" and self.choices is not None:
            raise ValueError("choices is only for kind: multiple_choice")
        return self


class LoadedTask(BaseModel):
    """A validated task with its items read."""

    model_config = ConfigDict(frozen=True)

    spec: Task
    path: Path
    items: list[Item]
    pool: list[Item] | None
    # where data and fewshot came from (Hub name, revision, fingerprint), for run.json
    sources: dict[str, Any] = {}


def load_task(path: str | Path) -> LoadedTask:
    """Load, validate and read the data of one task file."""
    path = Path(path)
    return load_task_text(_read_yaml_text(path), path, path.parent)


def load_task_text(text: str, source: Path, base: Path) -> LoadedTask:
    """A task written as YAML text; ``source`` names it in messages, data paths are
    relative to ``base``."""
    with _collector_paused():
        raw, root = _parse_yaml(source, text)
        return load_task_mapping(raw, source, base, root)


def load_task_mapping(
    raw: dict[str, Any], source: Path, base: Path, root: yaml.Node | None = None
) -> LoadedTask:
    """A task given as a mapping of fields (a task file once parsed, or a dict from
    Python); ``root``, the parsed YAML, lets messages name the line."""
    with _collector_paused():
        try:
            spec = Task.model_validate(raw)
        except ValidationError as exc:
            raise HarnessError(_explain(source, exc, root)) from None
    sources: dict[str, Any] = {}
    items = _read_items(source, base, spec.data, "data", sources)
    pool = (_read_items(source, base, spec.fewshot, "fewshot", sources)
            if spec.fewshot is not None else None)
    return LoadedTask(spec=spec, path=source, items=items, pool=pool, sources=sources)


def load_spec(path: str | Path) -> Task:
    """A task file validated without reading its data (``harness list``: a benchmark's
    Hub data need not be at hand to name it)."""
    path = Path(path)
    with _collector_paused():
        raw, root = _parse_yaml(path, _read_yaml_text(path))
        try:
            return Task.model_validate(raw)
        except ValidationError as exc:
            raise HarnessError(_explain(path, exc, root)) from None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's garbage collector off for a while: parsing a task file of many inline
    rows builds objects that are not garbage, and the collector would walk them again
    and again (three times slower on a 5 MB file)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _read_items(
    source: Path, base: Path, data: str | list[dict[str, Any]] | DataSource, field: str,
    sources: dict[str, Any],
) -> list[Item]:
    from harness.tasks import hub

    if isinstance(data, list):
        return check_items(data, f"{source}: {field}")
    if isinstance(data, DataSource):
        read = hub.read_source(data, base, f"{source}: {field}")
        sources[field] = read.provenance
        return read.items
    # absolute, but links not followed: errors name the file the task names
    path = Path(os.path.abspath(base / data))
    if path.is_dir():  # a folder written by datasets' save_to_disk
        read = hub.read_folder(path, None, f"{source}: {field}")
        sources[field] = read.provenance
        return read.items
    return read_table(path)


def _read_yaml_text(path: Path) -> str:
    raw = read_regular(path, "task file", MAX_TASK_BYTES)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: the task file is not UTF-8 text") from None


class _TaskYAML:
    """Mixed into a safe loader: refuses a key written twice in one mapping, and notes
    whether a list or mapping is used twice (through an alias), which only then makes
    the alias check worth its time."""

    shared = False

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if not self.shared and not isinstance(node, yaml.ScalarNode):
            self.shared = node in self.constructed_objects  # type: ignore[attr-defined]
        return super().construct_object(node, deep=deep)  # type: ignore[misc]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = (key_node.tag, key_node.value)  # no need to build it twice
            else:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):  # most often Jinja left unquoted: {{ text }}
                    raise yaml.constructor.ConstructorError(
                        None, None, 'a mapping or list used as a key; put Jinja templates in '
                        'quotes, e.g. query: "{{ text }}"', key_node.start_mark
                    )
            if key in seen:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else key
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


# libyaml's parser where PyYAML was built with it (ten times faster on a large file of
# inline rows), else the pure-Python one; both safe, both refusing duplicate keys.
_Loader: type = type(
    "_Loader", (_TaskYAML, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {}
)


def _parse_yaml(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """The task file's value and its node tree (for line numbers), parsed once."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        raw = loader.construct_document(root) if root is not None else None
        if loader.shared:  # shared values were built once; expanded they may be huge
            _check_aliases(path, root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise HarnessError(f"{where}: YAML error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a task file is a mapping of fields (name, kind, data, ...)")
    return raw, root


def _check_aliases(path: Path, root: yaml.Node) -> None:
    """Refuse aliases that would repeat more than MAX_ALIAS_VALUES values, or that
    contain themselves; counted on the node tree, never expanded."""
    sizes: dict[int, int] = {}  # a node's value count with every alias written out
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        children = _children(node)
        if closing:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            continue
        if key in sizes:
            continue
        if key in open_:
            raise HarnessError(
                f"{path}:{node.start_mark.line + 1}: YAML error: an alias refers to a "
                "value that contains it"
            )
        open_.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in children]
    added = sizes[id(root)] - len(sizes)
    if added > MAX_ALIAS_VALUES:
        raise HarnessError(
            f"{path}: YAML aliases (*name) would repeat {added:,} values; a task file may "
            f"repeat at most {MAX_ALIAS_VALUES:,} that way: write them out, or put rows in "
            "a data file"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
            if hint := did_you_mean(str(loc[-1]), _fields_at(loc[:-1])):
                message += f"; {hint}"
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
