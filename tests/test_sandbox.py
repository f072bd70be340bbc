"""Tests for harness.tasks.sandbox: a hostile or careless template ends in one line, quickly."""

from __future__ import annotations

import pytest

from harness import cli
from harness.errors import HarnessError
from harness.tasks import sandbox


@pytest.fixture(autouse=True)
def _short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same checks at a tenth of the time: templates that would run for hours stop
    # within a fraction of a second, so the suite stays quick.
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 0.2)


def rendered(source: str, **row: object) -> str:
    return sandbox.render(sandbox.compile_template(source, "t.yaml: prompt.query"), row,
                          "t.yaml: prompt.query")


def refusal(source: str, **row: object) -> str:
    with pytest.raises(HarnessError) as caught:
        rendered(source, **row)
    message = str(caught.value)
    assert message.startswith("t.yaml: prompt.query: ") and "\n" not in message
    return message


BOMBS = {
    # name: (template, words the one line holds)
    "range of a billion": ("{% for i in range(10**9) %}x{% endfor %}", "range() is limited"),
    "nested loops, no output": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "longer than 0.2 s"),
    "nested loops, output": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "template stopped:"),  # its output or its time, whichever comes first
    "a macro calling itself twice": (
        ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
         "{{ f(60) }}"), "longer than 0.2 s"),
    "a macro doubling its text": (
        ("{% macro f(n) %}{% if n %}{% set s = f(n - 1) %}{{ s }}{{ s }}{% else %}x"
         "{% endif %}{% endmacro %}{{ f(60) }}"), "longer than 1,000,000"),
    "self-recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nests too deeply"),
    "lipsum": ("{{ lipsum(10**6) }}", "'lipsum' is undefined"),
    "a power tower": ("{{ 10**(10**10) }}", "a number above 2^4096"),
    "squaring in a loop": (("{% set ns = namespace(x=3) %}{% for i in range(64) %}"
                            "{% set ns.x = ns.x * ns.x %}{% endfor %}"), "a number above"),
    "text times a billion": ("{{ text * 10**9 }}", "longer than 1,000,000"),
    "a billion times text": ("{{ 1000000000 * text }}", "longer than 1,000,000"),
    "doubling by ~": ("{% set s = 'x' %}" + "{% set s = s ~ s %}" * 45 + "{{ s }}",
                      "longer than 1,000,000"),
    "doubling in a namespace": (
        ("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
         "{% endfor %}"), "longer than 1,000,000"),
    "doubling by +": (("{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                       "{% set ns.s = ns.s + ns.s %}{% endfor %}"), "longer than 1,000,000"),
    "format_map on text": ("{{ '{0}'.format_map(text) }}", "IndexError"),
    "a wide str.format": ("{{ '{:>1000000000}'.format(text) }}", "format width"),
    "a wide %": ("{{ '%1000000000d' % 1 }}", "format width"),
    "a wide * in %": ("{{ '%*d' % (1000000000, 1) }}", "format width"),
    "a wide format filter": ("{{ '%.1000000000f'|format(1.5) }}", "format width"),
    "center": ("{{ text|center(1000000000) }}", "longer than 1,000,000"),
    "ljust": ("{{ text.ljust(1000000000) }}", "longer than 1,000,000"),
    "replace into every gap": ("{{ (text * 300000)|replace('', text * 300000) }}",
                               "longer than 1,000,000"),
    "indent": ("{{ (text ~ '\n') * 100000|indent(1000000) }}", "longer than 1,000,000"),
    "a loop over a long text, nested": (
        "{% for i in long %}{% for j in long %}{% endfor %}{% endfor %}", "longer than 0.2 s"),
    "division by zero": ("{{ 1 / 0 }}", "ZeroDivisionError"),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_a_runaway_template_stops_in_one_line(case: str) -> None:
    source, words = BOMBS[case]
    assert words in refusal(source, text="abc", long="y" * 100_000)


@pytest.mark.parametrize(("tag", "source"), [
    ("{% include %}", "{% include 'other.j2' %}"),
    ("{% import %}", "{% import 'macros.j2' as m %}{{ m.x() }}"),
    ("{% from ... import %}", "{% from 'macros.j2' import x %}"),
    ("{% extends %}", "{% extends 'base.j2' %}"),
])
def test_templates_cannot_reach_other_files(tag: str, source: str) -> None:
    with pytest.raises(HarnessError) as caught:
        sandbox.compile_template(source, "t.yaml: prompt.query")
    assert str(caught.value).startswith(f"t.yaml: prompt.query: {tag} on its line 1 is not allowed")


def test_self_is_refused_as_a_name_but_fine_as_a_column() -> None:
    with pytest.raises(HarnessError, match="'self'.*rename the column"):
        sandbox.compile_template("{{ self }}", "t.yaml: prompt.query")
    # a row with a column named self renders (Jinja's render(**row) refused it)
    assert rendered("{{ text }}!", self="나", text="가") == "가!"


def test_ordinary_templates_render_as_before() -> None:
    source = ("{% for i in range(3) %}{{ i }}{% endfor %} {{ '%5d' % 7 }} {{ '{:>4}'.format(text) }}"
              " {{ 2**64 }} {{ text|center(7) }} {{ text * 2 }} {{ [1, 2] + [3] }}"
              " {{ '{a}'.format_map({'a': text}) }} {{ text ~ '!' }}\n")
    assert rendered(source, text="한글") == (
        f"012     7   한글 18446744073709551616 {'한글'.center(7)} 한글한글 [1, 2, 3] 한글 한글!\n"
    )


def test_a_bomb_in_a_task_file_is_one_line_from_validate(write_task, capsys) -> None:
    path = write_task(shots=[0], prompt={"query": "{% for i in range(100000) %}"
                                         "{% for j in range(100000) %}{% endfor %}{% endfor %}"
                                         "{{ text }}"})
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"harness: error: {path}: prompt.query: template stopped:")
