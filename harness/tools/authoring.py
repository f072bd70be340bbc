"""Writing tasks: the exact prompts a task gives the model, and a starter task from data.

``preview`` renders one item's prompts with build_prompts, as a run does, and splits each
back into its blocks so that a reader sees where the instruction, the examples, the
separators and the query begin and end, and every space that matters.
``new_task`` writes a commented task file for a data file, choosing its columns by
their names (or, failing that, by their values) and checking the result as written.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.scoring.kinds import KINDS
from harness.tasks import chat
from harness.tasks.data import Item, read_table
from harness.tasks.prompts import Prompt, Templates, build_prompts
from harness.tasks.spec import LoadedTask, Task, load_task

# ---------------------------------------------------------------- preview

NEWLINE, SPACE, TAB, END = "⏎", "␣", "→", "▌"
LEGEND = (
    f"{NEWLINE} newline   {SPACE} space at a line's edge or beside another   {TAB} tab   "
    f"{END} end of the prompt: the answer starts here"
)


@dataclass(frozen=True)
class Preview:
    task: LoadedTask
    item: int  # from 1, as error messages count
    prompts: list[Prompt]  # one per shot count
    # per prompt, in order: (instruction | example N | separator | query, its text)
    blocks: list[list[tuple[str, str]]]
    tokens: list[int | None]  # per prompt, under ``model``
    reference_tokens: int | None  # of the first reference, without special tokens
    model: str  # the model the tokens were counted under, or why they were not
    chat: str = "none"  # how the prompts went through the model's chat template
    roles: list[list[str]] | None = None  # per prompt, its turns' roles (chat only)
    note: str | None = None  # chat.PLAIN_NOTE where the model has a template left unused


def preview(path: str | Path, item: int = 1, shots: list[int] | None = None,
            model: str | None = None, chat_mode: str | None = None) -> Preview:
    """The prompts of one item, exactly as a run renders them, with their token counts
    (through the model's chat template where ``chat_mode`` or the task asks for it)."""
    task = load_task(path)
    if not 1 <= item <= len(task.items):
        raise HarnessError(f"--item {item}: {task.path} has items 1 to {len(task.items)}")
    shot_counts = shots if shots is not None else task.spec.shots
    if not shot_counts or any(k < 0 for k in shot_counts):
        raise HarnessError("--shots takes counts of 0 or more")
    prompts = [p for p in build_prompts(task, shot_counts) if p.item == item - 1]
    templates = Templates(task, shot_counts)
    mode = chat_mode or task.spec.chat
    roles, note = None, None
    if mode == "none":
        blocks = [_blocks(task, templates, p) for p in prompts]
        count, counted_by, tokenizer = _token_counter(model or task.spec.model,
                                                      explicit=model is not None)
        if getattr(tokenizer, "chat_template", None):
            note = chat.PLAIN_NOTE
    else:  # the tokenizer is needed for its template: its failures are errors
        from harness.engines.models import load_tokenizer

        name = model or task.spec.model
        tokenizer = load_tokenizer(name)
        roles = [[turn["role"] for turn in chat.turns(task, p, mode, templates)]
                 for p in prompts]
        prompts = chat.templated(task, prompts, mode, tokenizer, name, shot_counts)
        blocks = [[("chat template", p.text)] for p in prompts]
        count, counted_by = _counter(tokenizer), name
    tokens = [count(p.text) if count else None for p in prompts]
    refs = prompts[0].references
    ref_tokens = count(refs[0], specials=False) if count and refs else None
    return Preview(task, item, prompts, blocks, tokens, ref_tokens, counted_by, mode, roles,
                   note)


def format_preview(pv: Preview) -> str:
    """The prompts with their boundaries and whitespace made visible."""
    spec, lines = pv.task.spec, []
    source = "the few-shot pool" if pv.task.pool is not None else "the data"
    for prompt, blocks, tokens in zip(pv.prompts, pv.blocks, pv.tokens, strict=True):
        counted = f"{tokens} tokens ({pv.model})" if tokens is not None else "tokens not counted"
        lines.append(
            f"── {pv.task.path} · item {pv.item} of {len(pv.task.items)} · "
            f"{prompt.shots} shot{'' if prompt.shots == 1 else 's'} · {counted} · "
            f"{len(prompt.text)} characters"
        )
        if prompt.examples:
            numbers = ", ".join(str(j + 1) for j in prompt.examples)
            order = ("the pool's first rows, the same for every item (fewshot_order: first)"
                     if spec.fewshot_order == "first" else
                     "this item's own seeded order (fewshot_order: per_item)")
            lines.append(f"examples from {source}: item{'s' * (len(prompt.examples) > 1)} "
                         f"{numbers}; {order}")
        if pv.roles is not None:
            roles = pv.roles[pv.prompts.index(prompt)]
            lines.append(f"chat: {pv.chat}, through {pv.model}'s chat template; turns: "
                         f"{', '.join(roles)} (the text below is exactly what the model reads)")
        width = max(len(name) for name, _ in blocks)
        for name, text in blocks:
            shown = [mark(text, whole=True)] if name == "separator" else mark_lines(text)
            for n, line in enumerate(shown):
                lines.append(f"{name if n == 0 else '':>{width}} │{line}")
        lines[-1] += END
        lines.append(_reference_line(prompt.references, pv.reference_tokens))
        lines.append("")
    if pv.tokens[0] is None:
        lines.append(f"tokens {pv.model}")
    stop = ", ".join(mark(s, whole=True) for s in spec.decoding.stop) or "(none)"
    lines.append(f"answers: at most {spec.decoding.max_new_tokens} new tokens, cut at: {stop}")
    lines.append(LEGEND)
    if pv.note:
        lines.append(pv.note)
    return "\n".join(lines)


def mark_lines(text: str) -> list[str]:
    """The lines of ``text``, each newline shown as ⏎ and telling whitespace marked."""
    parts = text.split("\n")
    return [mark(p) + (NEWLINE if n < len(parts) - 1 else "") for n, p in enumerate(parts)]


def mark(text: str, whole: bool = False) -> str:
    """Mark a space at either edge or beside another (every space with ``whole``), tabs,
    newlines and invisible characters (no-break and ideographic spaces, zero-width ones)."""
    out = []
    for i, ch in enumerate(text):
        if ch == " ":
            lone = 0 < i < len(text) - 1 and text[i - 1] not in " \t" and text[i + 1] not in " \t"
            out.append(SPACE if whole or not lone else " ")
        elif ch in "\n\t":
            out.append(NEWLINE if ch == "\n" else TAB)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp"):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def _reference_line(references: list[str], tokens: int | None) -> str:
    if not references:
        return "reference: (none: the task has no target)"
    line = f"reference: {mark(references[0])}"
    if len(references) > 1:
        line += f"  (also accepted: {' | '.join(mark(r) for r in references[1:])})"
    return line + (f"  ({tokens} tokens)" if tokens is not None else "")


def _blocks(task: LoadedTask, templates: Templates, prompt: Prompt) -> list[tuple[str, str]]:
    spec = task.spec
    pool = task.pool if task.pool is not None else task.items
    parts = []
    if spec.prompt.instruction:  # as build_prompts: an empty instruction is no block
        parts.append(("instruction", templates.render("prompt.instruction")))
    parts += [(f"example {n}", templates.render("prompt.example", pool[j]))
              for n, j in enumerate(prompt.examples, start=1)]
    parts.append(("query", templates.render("prompt.query", task.items[prompt.item])))
    separator = spec.prompt.separator
    if separator.join(text for _, text in parts) != prompt.text:  # prompts.py changed shape
        return [("prompt", prompt.text)]
    blocks: list[tuple[str, str]] = []
    for part in parts:
        blocks += [("separator", separator), part] if blocks else [part]
    return blocks


def _token_counter(spec: str, explicit: bool) -> tuple[Callable[..., int] | None, str, Any]:
    """A counter of the tokens a model's tokenizer makes of a text, loading no weights;
    the name it counts under (or why it does not), and the tokenizer (or None)."""
    from harness.engines.models import default_model_cached, load_tokenizer

    if not explicit and spec == "default" and default_model_cached() is None:
        return None, (
            "not counted: the default model is not converted yet (the first run does it); "
            "--model counts under another"
        ), None
    try:
        tokenizer = load_tokenizer(spec)
    except HarnessError as exc:
        if explicit:
            raise
        return None, f"not counted ({exc})", None
    return _counter(tokenizer), spec, tokenizer


def _counter(tokenizer: object) -> Callable[..., int]:
    """Tokens of a prompt as a run reads it (``tokens.prompt_ids``), or of a text alone
    (``specials=False``)."""
    from harness.engines.tokens import prompt_ids

    def count(text: str, specials: bool = True) -> int:
        if specials:
            return len(prompt_ids(tokenizer, [text])[0])
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

    return count


# ---------------------------------------------------------------- new

# Column names recognised, per kind, for what the prompt shows and for the answer.
INPUT_NAMES = {
    "classification": ("text", "sentence", "document", "review", "문장", "본문", "텍스트", "내용"),
    "qa": ("question", "query", "q", "질문", "문제"),
    "translation": ("source", "src", "ko", "kor", "korean", "한국어", "원문"),
    "generation": ("prompt", "opening", "context", "input", "text", "입력", "문장", "질문"),
}
ANSWER_NAMES = {
    "classification": ("label", "labels", "class", "category",
                       "감정", "정답", "분류", "라벨", "레이블"),
    "qa": ("answer", "answers", "a", "정답", "답"),
    "translation": ("target", "tgt", "en", "eng", "english", "translation", "영어", "번역"),
    "generation": ("reference", "reply", "response", "continuation", "target", "output",
                   "answer", "a", "답", "정답"),
}
ALIAS_NAMES = ("aliases", "alias", "별칭")
SETTINGS = {  # kind: (presets, max_new_tokens, stop at a newline)
    "classification": (["greedy", "beam", "top_p"], 8, True),
    "qa": (["greedy", "beam"], 16, True),
    "translation": (["greedy", "beam_no_repeat"], 64, True),
    "generation": (["greedy", "top_p"], 48, False),
}
FEW_VALUES = 50  # a label column has at most this many distinct values
STARTER_FIELDS = {"name", "description", "kind", "data", "fewshot", "shots", "prompt", "target",
                  "aliases", "labels", "decoding", "seeds", "metrics", "model"}
NL = "\n"


@dataclass(frozen=True)
class Columns:
    input: str  # what the prompt shows: the text, question, source sentence or opening
    answer: str | None  # the label, answer, translation or reference
    aliases: str | None  # qa: other accepted answers, separated by |
    why: dict[str, str]  # column -> how it was chosen

    def describe(self) -> str:
        roles = (("prompt", self.input), ("answer", self.answer), ("aliases", self.aliases))
        return "; ".join(f"{role}: {col} ({self.why[col]})" for role, col in roles if col)


@dataclass(frozen=True)
class NewTask:
    path: Path
    columns: Columns
    labels: list[str] | None
    summary: str  # the validated plan's one-line description


def choose_columns(kind: str, rows: list[Item], text_column: str | None = None,
                   label_column: str | None = None) -> Columns:
    """Which columns a starter task uses: the ones named so on the command line, else
    the first with a recognised name, else (classification) the last column whose values
    repeat as the label and the one with the longest values as the text, (qa) the last
    and the longest, (translation) the first two, (generation) the first, and the other
    one as the reference when there are just two."""
    columns = [c for c in rows[0] if all(c in row for row in rows)]
    why: dict[str, str] = {}
    for given, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if given is not None:
            if given not in columns:
                raise HarnessError(
                    f"{flag} {given}: no such column (the data has {', '.join(columns)})"
                )
            why[given] = flag
    answer = label_column or _named(columns, ANSWER_NAMES[kind], {text_column}, why)
    source = text_column or _named(columns, INPUT_NAMES[kind], {answer}, why)
    aliases = _named(columns, ALIAS_NAMES, {source, answer}, why) if kind == "qa" else None
    rest = [c for c in columns if c not in (source, aliases)]
    if answer is None:
        answer, how = _fallback_answer(kind, rows, columns, rest, source is not None)
        if answer is not None:
            why[answer] = how
    if source is None:
        others = [c for c in columns if c not in (answer, aliases)]
        if kind in ("classification", "qa") and others:
            source = max(others, key=lambda c: sum(len(str(r[c])) for r in rows))
            why[source] = "the longest values"
        elif others:
            source = others[0]
            why[source] = "the first column"
    if source is None or (answer is None and kind != "generation") or source == answer:
        raise HarnessError(
            f"a {kind} task needs a column for the prompt and another for the answer; "
            f"the data has {', '.join(columns)} (name them with --text-column, --label-column)"
        )
    for column in (source, answer, aliases):
        if column is not None and not _usable_in_jinja(column):
            raise HarnessError(
                f"column {column!r} cannot be named in a template; rename it in the data's "
                "header (letters, digits and _, Hangul too, not starting with a digit)"
            )
    return Columns(source, answer, aliases, why)


def _fallback_answer(kind: str, rows: list[Item], columns: list[str], rest: list[str],
                     source_known: bool) -> tuple[str | None, str]:
    if kind == "classification":
        few = min(FEW_VALUES, len(rows) - 1)
        repeating = [c for c in rest if 2 <= len({str(r[c]).strip() for r in rows}) <= few]
        if repeating:
            return repeating[-1], "the last column whose values repeat"
        return (rest[-1], "the last column") if rest else (None, "")
    if kind == "qa":
        return (rest[-1], "the last column") if rest else (None, "")
    if kind == "translation" or len(columns) == 2:  # generation: a reference if obvious
        after = rest if source_known else rest[1:]
        return (after[0], "the other column") if after else (None, "")
    return None, ""


def new_task(name: str, data: Path, kind: str = "classification", out: Path | None = None,
             text_column: str | None = None, label_column: str | None = None) -> NewTask:
    """Write a commented starter task for ``data``, check it, and return what was chosen."""
    from harness.runs import pipeline
    from harness.tasks.schema import SHIPPED_SCHEMA

    if kind not in KINDS:
        raise HarnessError(f"--kind {kind}: use one of {', '.join(KINDS)}")
    if kind not in INPUT_NAMES:  # a starter cannot guess an item's choices
        raise HarnessError(f"--kind {kind}: harness new writes {', '.join(INPUT_NAMES)} "
                           "tasks; start a multiple_choice task from "
                           "tasks/benchmarks/kobest_copa.yaml")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name):
        raise HarnessError(
            f"{name!r}: a task name is letters, digits, - and _ (it names the report folder)"
        )
    rows = read_table(data)
    path = out if out is not None else data.parent / f"{name}.yaml"
    columns = choose_columns(kind, rows, text_column, label_column)
    labels = _labels(data, rows, columns.answer) if kind == "classification" else None
    schema = _schema_reference(path) if SHIPPED_SCHEMA.exists() else None
    text = _starter_yaml(name, kind, _relative(data, path.parent), rows, columns, labels, schema)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise HarnessError(f"{path}: already exists; choose another name or --out") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write the task file ({exc.strerror})") from None
    try:
        plan = pipeline.prepare(path)
    except HarnessError as exc:
        path.unlink()
        raise HarnessError(
            f"the starter task would not validate, so it was not kept: {exc}"
        ) from None
    return NewTask(path, columns, labels, plan.describe())


def _starter_yaml(name: str, kind: str, data: str, rows: list[Item], columns: Columns,
                  labels: list[str] | None, schema: str | None) -> str:
    """The starter task file's text: its fields in the order docs/tasks.md has them, each
    with a comment saying what it does."""
    return "\n".join([*_starter_head(name, kind, data, rows, columns, schema),
                      *_starter_prompt(kind, columns, labels), *_starter_decoding(kind),
                      *_starter_rest(kind)]) + "\n"


def _q(value: Any) -> str:
    """A value as YAML (JSON is YAML), Hangul kept as it is."""
    return json.dumps(value, ensure_ascii=False)


def _starter_head(name: str, kind: str, data: str, rows: list[Item], columns: Columns,
                  schema: str | None) -> list[str]:
    """The starter's opening comments, then name, description, kind, data and shots."""
    has_examples = columns.answer is not None
    shots = [k for k in (0, 1, 3) if k <= _max_shots(rows)] if has_examples else [0]
    out = [f"# yaml-language-server: $schema={schema}"] if schema else []
    out += [
        f"# A starter {kind} task that `harness new` wrote for {data} ({len(rows)} rows).",
        *textwrap.wrap(f"Columns: {columns.describe()}; --text-column and --label-column choose "
                       "others.", 88, initial_indent="# ", subsequent_indent="# ",
                       break_on_hyphens=False),
        f"# Read the prompts with `harness preview {name}.yaml`, then run `harness validate`.",
        "# Every field is described in docs/tasks.md.",
        "",
        "# Names the report folder: letters, digits, - and _.",
        f"name: {name}",
        "# One line, shown by `harness list` and in the report.",
        f"description: {_q(f'{kind} on {Path(data).name}')}",
        f"# {' | '.join(KINDS)}: picks the checks and the metrics.",
        f"kind: {kind}",
        "# The items to evaluate: a CSV, TSV, JSONL, .xlsx or .parquet file, relative to this file.",
        f"data: {_q(data)}",
        "# Examples are drawn from data (never the item itself); to draw them from a separate",
        "# file of the same columns instead, name it here:",
        "# fewshot: shots.csv",
        "# The shot counts compared side by side (0: the query alone).",
        f"shots: {_q(shots)}",
    ]
    return out


def _starter_prompt(kind: str, columns: Columns, labels: list[str] | None) -> list[str]:
    """prompt, target, aliases and labels, from the columns chosen."""
    source, answer = columns.input, columns.answer
    out = [
        "# The prompt is instruction, examples and query joined by separator. {{ column }} is",
        "# the row's value; the query ends where the answer begins (no space after the colon:",
        "# most tokenizers put the space at the start of the next word's token).",
        "prompt:",
    ]
    if answer is None:  # a generation task without references (others have an answer)
        out += ["  # instruction: \"...\"  (rendered once, at the top; it cannot use columns)",
                f"  query: {_q(_var(source))}"]
    else:
        out += [f"  instruction: {_q(_instruction(kind, labels))}",
                f"  example: {_q(f'{source}: {_var(source)}' + NL + f'{answer}: {_var(answer)}')}",
                f"  query: {_q(f'{source}: {_var(source)}' + NL + f'{answer}:')}",
                f"  separator: {_q(NL * 2)}"]
    if answer is not None:
        out += ["# The reference answer, rendered from the item (spaces around it are dropped).",
                f"target: {_q(_var(answer))}"]
    if columns.aliases:
        out += ["# Other accepted answers, separated by |.",
                f"aliases: {_q(_var(columns.aliases))}"]
    if labels is not None:
        out += ["# The allowed answers (the label column's values, first seen first); an output",
                "# counts as the first of them it names, and as invalid when it names none.",
                f"labels: {_q(labels)}"]
    return out


def _starter_decoding(kind: str) -> list[str]:
    """decoding, with the presets to choose from listed: the kind's usual choices."""
    from harness.tasks.decoding import PRESETS

    presets, max_new_tokens, stop = SETTINGS[kind]
    out = ["decoding:", "  # Built-in settings compared side by side, from:"]
    for preset, args in PRESETS.items():
        shown = ", ".join(f"{k}={v}" for k, v in args.items()) or "(transformers' defaults)"
        out.append(f"  #   {preset:<18} {shown}")
    out += [
        f"  presets: {_q(presets)}",
        "  # Your own named settings (generate() arguments), and a grid whose every",
        "  # combination is a setting:",
        "  # configs: {beam3_block2: {num_beams: 3, no_repeat_ngram_size: 2}}",
        "  # grid: {do_sample: [true], temperature: [0.7, 1.0], top_p: [0.9, 0.95]}",
        "  # New tokens per output at most.",
        f"  max_new_tokens: {max_new_tokens}",
        "  # Strings that end an answer (it is cut there); newline: one line per answer.",
        f"  stop: {_q([NL])}" if stop else "  # stop: [\"\\n\"]",
        "  # Strings the model must not produce:",
        "  # bad_words: [\"<unk>\"]",
    ]
    return out


def _starter_rest(kind: str) -> list[str]:
    """seeds, metrics, model, then any field added to the task file since (commented)."""
    from harness.scoring.metrics import metric_names

    out = [
        "# Each sampled setting runs once per seed.",
        "seeds: [42]",
        "# The scores to show first; by default all of the kind's:",
        f"# {', '.join(metric_names(kind))}.",
        "# metrics: []",
        "# The model, unless --model names another: default, a folder, a .gguf file or a hub id.",
        "# model: default",
    ]
    for field, info in Task.model_fields.items():
        if field not in STARTER_FIELDS:  # a field added after this starter was written
            default = info.get_default(call_default_factory=True)
            if hasattr(default, "model_dump"):  # a section (rating:): its fields' defaults
                default = default.model_dump(mode="json")
            out += textwrap.wrap(f"{info.description or field}.", 88, initial_indent="# ",
                                 subsequent_indent="# ", break_on_hyphens=False)
            out.append(f"# {field}: {_q(default)}")
    return out


def _instruction(kind: str, labels: list[str] | None) -> str:
    if kind == "classification":
        assert labels is not None
        if len(labels) <= 10:
            return f"다음 글을 읽고 {', '.join(labels)} 중 하나로 답하세요."
        return "다음 글을 읽고 알맞은 분류를 하나 고르세요."
    return {"qa": "다음 질문에 짧게 답하세요.", "translation": "다음 문장을 번역하세요.",
            "generation": "다음 글에 이어질 말을 쓰세요."}[kind]


def _labels(data: Path, rows: list[Item], column: str | None) -> list[str]:
    assert column is not None
    labels: list[str] = []
    for number, row in enumerate(rows, start=1):
        value = str(row[column]).strip()
        if not value:
            raise HarnessError(f"{data}: item {number} has no {column} (its label)")
        if value not in labels:
            labels.append(value)
    if len(labels) < 2:
        raise HarnessError(
            f"{data}: column {column} holds one value only; a label column needs two or more"
        )
    return labels


def _named(columns: list[str], names: tuple[str, ...], taken: set[str | None],
           why: dict[str, str]) -> str | None:
    for column in columns:
        if column.strip().lower() in names and column not in taken:
            why[column] = "by its name"
            return column
    return None


def _max_shots(rows: list[Item]) -> int:
    """Examples available to every item: the rows other than the item and its copies."""
    copies = Counter(json.dumps(row, sort_keys=True, default=str) for row in rows)
    return len(rows) - max(copies.values())


def _usable_in_jinja(column: str) -> bool:
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    try:
        parsed = SandboxedEnvironment().parse(_var(column))
    except Exception:  # a syntax error: not a name
        return False
    return meta.find_undeclared_variables(parsed) == {column}


def _var(column: str) -> str:
    return "{{ " + column + " }}"


def _schema_reference(task_path: Path) -> str:
    """The shipped schema, relative to a task inside the repository, else as a file URI."""
    from harness.tasks.schema import SHIPPED_SCHEMA

    if task_path.resolve().is_relative_to(SHIPPED_SCHEMA.parent.parent):
        return _relative(SHIPPED_SCHEMA, task_path.parent)
    return SHIPPED_SCHEMA.as_uri()


def _relative(target: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return target.resolve().as_posix()
