"""Users' Jinja templates: sandboxed, strict, and bounded in time and size.

Prompts, targets and the fine-tuning formats are Jinja written by the user. Jinja's
sandbox keeps a template away from Python's internals; this module adds what a careless
or hostile template needs besides, so that rendering one ends in a clear line and never
hangs the harness or eats its memory:

- one render of one template may take ``MAX_SECONDS`` and give ``MAX_CHARS`` characters;
  every loop, call and output chunk checks the clock, and every string a template builds
  (a concatenation, a call's or filter's result, an attribute read) is measured;
- ``*``, ``**``, ``+`` and ``%`` are checked before they compute: no string or list
  above ``MAX_CHARS``, no number above ``MAX_INT_BITS`` bits (``10**(10**10)``), no
  format width above ``MAX_CHARS``; so are the widths of ``center``, ``indent``,
  ``wordwrap``, ``replace`` and ``str.format``;
- ``{% include %}``, ``{% import %}`` and ``{% extends %}`` are refused (a task's
  templates stand alone), as is the name ``self`` (Jinja's own, never a data column),
  and ``lipsum`` is not offered;
- recursion that runs too deep, and any error a template raises, becomes one line.

These bounds are for mistakes and mischief in task files; they do not make rendering a
template from an unknown source as safe as reading a data file.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import json
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from harness.errors import HarnessError

MAX_SECONDS = 2.0  # to render one template once
MAX_CHARS = 1_000_000  # in a rendered template, and in any string or list built on the way
MAX_INT_BITS = 4096  # in a number a template computes


class _Limit(Exception):
    """A template went past one of the bounds above."""


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("deadline", default=0.0)


def _tick() -> None:
    deadline = _deadline.get()
    if deadline and time.monotonic() > deadline:
        raise _Limit(
            f"rendering took longer than {MAX_SECONDS:g} s (a loop or a macro that calls "
            "itself too often?)"
        )


def _measured(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_CHARS:
        kind = "text" if isinstance(value, str) else type(value).__name__
        raise _Limit(f"it builds {kind} longer than {MAX_CHARS:,} (characters or items)")
    return value


def _too_long(length: int) -> None:
    if length > MAX_CHARS:
        raise _Limit(f"it builds text longer than {MAX_CHARS:,} characters")


def _check_int(value: Any) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _Limit(f"it computes a number above 2^{MAX_INT_BITS}")


def _repeated(sequence: Any, times: Any) -> None:
    if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
        _too_long(len(sequence) * max(times, 0))


_PERCENT_WIDTHS = re.compile(r"%[#0 +\-]*(\d+|\*)?(?:\.(\d+|\*))?")


def _check_percent(pattern: Any, args: Any) -> None:
    """``pattern % args``: no literal width or precision above MAX_CHARS, nor a ``*``
    one taken from an argument."""
    if not isinstance(pattern, str):
        return
    for width, precision in _PERCENT_WIDTHS.findall(pattern):
        for part in (width, precision):
            if part == "*":
                values = args if isinstance(args, tuple) else (args,)
                if any(isinstance(v, int) and v > MAX_CHARS for v in values):
                    raise _Limit(f"a format width above {MAX_CHARS:,}")
            elif part and int(part) > MAX_CHARS:
                raise _Limit(f"a format width above {MAX_CHARS:,}")


def _check_format_spec(pattern: str) -> None:
    """``pattern.format(...)``: no literal width or precision above MAX_CHARS."""
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError:
        return  # str.format raises the same error itself, as one line
    for _, _, spec, _ in fields:
        if spec and any(int(n) > MAX_CHARS for n in re.findall(r"\d+", spec)):
            raise _Limit(f"a format width above {MAX_CHARS:,}")


def _width_of(value: Any) -> int:
    return value if isinstance(value, int) else len(value) if isinstance(value, str) else 0


# Filters and string methods whose output can be far longer than their input: the
# longest output their arguments allow, checked before they run.
def _center(value: Any, width: Any = 80, *rest: Any, **kw: Any) -> int:
    return max(len(str(value)), _width_of(width))


def _indent(value: Any, width: Any = 4, *rest: Any, **kw: Any) -> int:
    text = str(value)
    return len(text) + (text.count("\n") + 1) * _width_of(kw.get("width", width))


def _wordwrap(value: Any, width: Any = 79, break_long_words: Any = True,
              wrapstring: Any = None, *rest: Any, **kw: Any) -> int:
    wrap = kw.get("wrapstring", wrapstring)
    return len(str(value)) * (1 + (len(wrap) if isinstance(wrap, str) else 1))


def _replace(value: Any, old: Any = "", new: Any = "", *rest: Any, **kw: Any) -> int:
    text = str(value)
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    return len(text) + hits * len(new)


def _expandtabs(value: Any, tabsize: Any = 8, *rest: Any, **kw: Any) -> int:
    text = str(value)
    return len(text) + text.count("\t") * _width_of(kw.get("tabsize", tabsize))


def _join(value: Any, iterable: Any = (), *rest: Any, **kw: Any) -> int:
    parts = len(iterable) if hasattr(iterable, "__len__") else 0
    return len(str(value)) * parts


_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "center": _center, "indent": _indent, "wordwrap": _wordwrap, "replace": _replace,
}
_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": _center, "ljust": _center, "rjust": _center, "zfill": _center,
    "expandtabs": _expandtabs, "replace": _replace, "join": _join,
}


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    size = _FILTER_SIZES.get(name)
    passes = getattr(function, "jinja_pass_arg", None)  # context/environment first

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if size is not None:
            own = args[1:] if passes is not None else args
            if own:
                _too_long(size(*own, **kwargs))
        if name == "format" and args:
            own = args[1:] if passes is not None else args
            _check_percent(own[0], tuple(own[1:]))
        return _measured(function(*args, **kwargs))

    return guarded


class _Bounded(SandboxedEnvironment):
    """The sandbox, with the checks described at the top of this module."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**{"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True,
                            "autoescape": False, **options})
        self.globals.pop("lipsum", None)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        both_ints = isinstance(left, int) and isinstance(right, int)
        if operator == "*":
            _repeated(left, right)
            _repeated(right, left)
            if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _Limit(f"it computes a number above 2^{MAX_INT_BITS}")
        elif operator == "**":
            if both_ints and abs(left) > 1 and right > 0 and left.bit_length() * right > MAX_INT_BITS:
                raise _Limit(f"it computes a number above 2^{MAX_INT_BITS}")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _too_long(len(left) + len(right))
        elif operator == "%":
            _check_percent(left, right)
        result = super().call_binop(context, operator, left, right)
        _check_int(result)
        return _measured(result)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str):
            size = _METHOD_SIZES.get(getattr(obj, "__name__", ""))
            if size is not None:
                _too_long(size(owner, *args, **kwargs))
        return _measured(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        return _measured(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _measured(super().getitem(obj, argument))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format_spec(value.__self__)
        return wrapper

    def bounded(self, value: Any) -> Any:
        """A concatenation's result (``a ~ b``), measured."""
        return _measured(value)

    def bounded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """A for loop's items, each one checking the clock."""
        for item in iterable:
            _tick()
            yield item


ENV = _Bounded()

_REFUSED = {
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
}


class _AddChecks(NodeTransformer):
    """Route every for loop's items and every ``~`` through the environment's checks."""

    def __init__(self, env: _Bounded = ENV) -> None:
        self.env = env

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # rewrites the children in place (and returns ``node``)
        node.iter = self._call("bounded_iter", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._call("bounded", node)

    def _call(self, method: str, argument: nodes.Node) -> nodes.Expr:
        call = nodes.Call(nodes.EnvironmentAttribute(method), [argument], [], None, None)
        call.set_lineno(argument.lineno)
        call.set_environment(self.env)
        return call


@dataclass(frozen=True)
class Compiled:
    template: jinja2.Template
    variables: frozenset[str]  # the names it reads from the row


def _parse(env: jinja2.Environment, source: str, where: str, why: str = "") -> nodes.Template:
    """The template's syntax tree, with no tag that reaches other templates (``why`` ends
    that line)."""
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise HarnessError(f"{where}: template error on its line {exc.lineno}: {exc.message}") from None
    for kind, tag in _REFUSED.items():
        found = next(tree.find_all(kind), None)
        if found is not None:
            raise HarnessError(f"{where}: {tag} on its line {found.lineno} is not allowed{why}")
    return tree


def compile_template(source: str, where: str) -> Compiled:
    """Parse and check a user's template; ``where`` starts every error ("task.yaml: target")."""
    tree = _parse(ENV, source, where, ": a task's templates stand alone (write the text "
                  "into the template itself)")
    for name in tree.find_all(nodes.Name):
        if name.name == "self":
            raise HarnessError(
                f"{where}: the name 'self' (line {name.lineno}) is Jinja's own and never a "
                "data column; rename the column (e.g. self_text) and use that name"
            )
    variables = frozenset(meta.find_undeclared_variables(tree))
    tree = _AddChecks().visit(tree)
    code = ENV.compile(tree)
    # A plain dict of the globals (not Jinja's ChainMap): each render copies them into
    # its context, and a dict copies several times faster.
    return Compiled(ENV.template_class.from_code(ENV, code, dict(ENV.globals)), variables)


# ---------------------------------------------------------------- models' chat templates


class _Generation(Extension):
    """``{% generation %}...{% endgeneration %}``, which some chat templates use to mark
    the assistant's words for training masks: here it renders its body, as transformers
    does when no mask is asked for."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        line = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(line)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


class _BoundedChat(_Bounded, ImmutableSandboxedEnvironment):
    """The environment transformers renders a tokenizer's chat template in (immutable
    sandbox, trimmed blocks, loop controls, its tojson, raise_exception and strftime_now),
    with this module's bounds besides: a model folder's template is as untrusted as a
    task file."""

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.Undefined, keep_trailing_newline=False,
                         trim_blocks=True, lstrip_blocks=True,
                         extensions=[_Generation, "jinja2.ext.loopcontrols"])
        self.filters["tojson"] = _guard_filter("tojson", _tojson)
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: Any) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(pattern: str) -> str:
    return datetime.datetime.now().strftime(pattern)


CHAT_ENV = _BoundedChat()


@functools.lru_cache(maxsize=8)
def compile_chat_template(source: str, where: str) -> Compiled:
    """A tokenizer's chat template, compiled in the bounded chat environment (``where``
    starts every error: "--model m: its chat template")."""
    tree = _AddChecks(CHAT_ENV).visit(_parse(CHAT_ENV, source, where))
    code = CHAT_ENV.compile(tree)
    return Compiled(CHAT_ENV.template_class.from_code(CHAT_ENV, code, dict(CHAT_ENV.globals)),
                    frozenset())


def render(compiled: Compiled, row: dict[str, Any], where: str) -> str:
    """Render within the bounds; any failure is one HarnessError starting with ``where``."""
    token = _deadline.set(time.monotonic() + MAX_SECONDS)
    try:
        parts: list[str] = []
        size = 0
        for chunk in compiled.template.generate(row):  # a mapping: a column may be "self"
            size += len(chunk)
            if size > MAX_CHARS:
                raise _Limit(f"it renders more than {MAX_CHARS:,} characters")
            parts.append(chunk)
        return "".join(parts)
    except _Limit as exc:
        raise HarnessError(f"{where}: template stopped: {exc}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise HarnessError(f"{where}: refused by the sandbox ({exc})") from None
    except jinja2.TemplateError as exc:
        raise HarnessError(f"{where}: {exc}") from None
    except RecursionError:
        raise HarnessError(
            f"{where}: template stopped: it nests too deeply (a macro that calls itself?)"
        ) from None
    except MemoryError:
        raise HarnessError(f"{where}: template stopped: it ran out of memory") from None
    except OverflowError as exc:
        if "Range too big" in str(exc):  # Jinja's own bound on range()
            raise HarnessError(f"{where}: template stopped: range() is limited to 100,000 "
                               "numbers") from None
        raise HarnessError(f"{where}: cannot render it (OverflowError: {exc})") from None
    except Exception as exc:  # a template is the user's code: any error it raises is theirs
        raise HarnessError(f"{where}: cannot render it ({type(exc).__name__}: {exc})") from None
    finally:
        _deadline.reset(token)
