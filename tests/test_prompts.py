"""Tests for harness.tasks.prompts: sandboxed templates and few-shot assembly."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.tasks.prompts import Prompt, build_prompts
from harness.tasks.spec import load_task

PROMPT = {
    "instruction": "감정을 고르세요.",
    "example": "문장: {{ text }}\n감정: {{ label }}",
    "query": "문장: {{ text }}\n감정:",
    "separator": "\n\n",
}


def prompts_of(write_task, **fields) -> tuple[list[Prompt], list[dict]]:
    task = load_task(write_task(**fields))
    return build_prompts(task), task.items


def by_item_and_shots(prompts: list[Prompt]) -> dict[tuple[int, int], Prompt]:
    return {(p.item, p.shots): p for p in prompts}


def refusal(write_task, **fields) -> str:
    task = load_task(write_task(**fields))
    with pytest.raises(HarnessError) as caught:
        build_prompts(task)
    return str(caught.value)


def test_prompts_are_instruction_examples_and_query_joined_by_the_separator(write_task) -> None:
    prompts, rows = prompts_of(write_task, shots=[0, 1, 2], prompt=PROMPT)
    assert len(prompts) == len(rows) * 3
    table = by_item_and_shots(prompts)

    def example(j: int) -> str:
        return f"문장: {rows[j]['text']}\n감정: {rows[j]['label']}"

    for i, row in enumerate(rows):
        query = f"문장: {row['text']}\n감정:"
        assert table[i, 0].text == f"감정을 고르세요.\n\n{query}"
        assert table[i, 0].examples == []
        (a,) = table[i, 1].examples
        assert table[i, 1].text == f"감정을 고르세요.\n\n{example(a)}\n\n{query}"
        a2, b2 = table[i, 2].examples
        assert table[i, 2].text == f"감정을 고르세요.\n\n{example(a2)}\n\n{example(b2)}\n\n{query}"
        assert all(table[i, k].references == [row["label"]] for k in (0, 1, 2))


def test_trailing_newlines_of_templates_are_kept(write_task) -> None:
    prompt = {"example": "{{ text }} → {{ label }}\n", "query": "{{ text }} →\n"}
    prompts, rows = prompts_of(write_task, shots=[1], prompt=prompt)
    first = prompts[0]
    (j,) = first.examples
    # default separator "\n" after an example that ends in "\n" leaves a blank line
    assert first.text == f"{rows[j]['text']} → {rows[j]['label']}\n\n{rows[0]['text']} →\n"


def test_without_a_pool_an_item_is_never_its_own_example(write_task) -> None:
    rows = [{"text": f"문장 {n}번입니다", "label": "중립"} for n in range(1, 7)]
    prompts, _ = prompts_of(write_task, rows=rows, shots=[0, 5], prompt=PROMPT)
    for p in prompts:
        assert p.item not in p.examples
        assert len(set(p.examples)) == p.shots
        assert p.text.count(rows[p.item]["text"]) == 1  # only in the query


def test_examples_come_from_the_fewshot_pool_when_there_is_one(write_task, tmp_path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "풀에서 온 예시", "label": "기쁨"}\n'
                    '{"text": "또 다른 예시", "label": "분노"}\n', encoding="utf-8")
    prompts, _ = prompts_of(write_task, fewshot="pool.jsonl", shots=[2], prompt=PROMPT)
    for p in prompts:
        assert sorted(p.examples) == [0, 1]
        assert "풀에서 온 예시" in p.text and "또 다른 예시" in p.text


def test_fewshot_order_first_gives_every_item_the_pools_first_rows(write_task,
                                                                   tmp_path) -> None:
    rows = [{"text": f"예시 문장 {n}", "label": "중립"} for n in range(1, 7)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    prompts, items = prompts_of(write_task, fewshot="pool.jsonl", shots=[0, 1, 3], prompt=PROMPT,
                                fewshot_order="first")
    for p in prompts:
        assert p.examples == [0, 1, 2][:p.shots]  # the same first rows, in the file's order
        assert p.text.startswith("감정을 고르세요.\n\n" + "".join(
            f"문장: 예시 문장 {n}\n감정: 중립\n\n" for n in range(1, p.shots + 1)))
    # by default each item draws its own order: not every item starts with the first row
    shuffled, _ = prompts_of(write_task, fewshot="pool.jsonl", shots=[3], prompt=PROMPT)
    assert any(p.examples != [0, 1, 2] for p in shuffled)
    assert len(prompts) == 3 * len(items)


def test_fewshot_order_first_skips_the_item_itself_when_examples_come_from_the_data(
        write_task) -> None:
    prompts, _ = prompts_of(write_task, shots=[2], prompt=PROMPT, fewshot_order="first")
    assert [p.examples for p in prompts] == [[1, 2], [0, 2], [0, 1], [0, 1]]


def test_fewshot_order_takes_two_values(write_task) -> None:
    with pytest.raises(HarnessError, match="fewshot_order"):
        load_task(write_task(fewshot_order="random"))


def test_a_pool_holding_the_item_itself_never_shows_it_nor_shortens_the_shots(
    write_task, tmp_path, emotion_rows
) -> None:
    # The pool is the data plus one more row: 4 other examples for each item.
    extra = {"text": "새로운 예시 문장", "label": "기쁨"}
    lines = [json.dumps(row, ensure_ascii=False) for row in [*emotion_rows, extra]]
    (tmp_path / "pool.jsonl").write_text("\n".join(lines), encoding="utf-8")
    prompts, rows = prompts_of(write_task, fewshot="pool.jsonl", shots=[4], prompt=PROMPT)
    for p in prompts:
        assert len(p.examples) == 4
        assert p.text.count(rows[p.item]["text"]) == 1
    # 5 examples would need the item itself: refused, not silently 4.
    message = refusal(write_task, fewshot="pool.jsonl", shots=[5], prompt=PROMPT)
    assert "data item 1" in message


def test_more_shots_extend_fewer_and_a_second_build_is_the_same(write_task) -> None:
    task = load_task(write_task(shots=[0, 1, 2, 3], prompt=PROMPT))
    first, second = build_prompts(task), build_prompts(task)
    assert first == second
    table = by_item_and_shots(first)
    for i in range(len(task.items)):
        assert table[i, 2].examples[:1] == table[i, 1].examples
        assert table[i, 3].examples[:2] == table[i, 2].examples
        query = f"문장: {task.items[i]['text']}\n감정:"
        assert table[i, 2].text.startswith(table[i, 1].text.removesuffix(query))


def test_shot_counts_can_be_chosen_at_build_time(write_task) -> None:
    task = load_task(write_task(shots=[0], prompt=PROMPT))  # --shots 1,2 on a 0-shot task
    prompts = build_prompts(task, [1, 2])
    assert sorted({p.shots for p in prompts}) == [1, 2]
    assert all(len(p.examples) == p.shots and "감정: " in p.text for p in prompts)


def test_a_variable_missing_from_a_row_names_the_item_and_its_columns(write_task) -> None:
    rows = [{"text": "비가 와요", "label": "슬픔"}, {"label": "기쁨"}]
    message = refusal(write_task, data=rows, shots=[0])
    assert "prompt.query uses text" in message
    assert "data item 2" in message
    assert "columns label" in message


def test_a_variable_missing_from_the_pool_is_refused(write_task, tmp_path) -> None:
    (tmp_path / "pool.jsonl").write_text('{"sentence": "가", "label": "기쁨"}\n', encoding="utf-8")
    message = refusal(write_task, fewshot="pool.jsonl", shots=[1], prompt=PROMPT)
    assert "prompt.example uses text, missing from few-shot pool item 1" in message


def test_the_instruction_cannot_use_item_variables(write_task) -> None:
    message = refusal(write_task, prompt={**PROMPT, "instruction": "{{ label }} 중 고르세요"})
    assert "prompt.instruction uses label" in message


def test_a_template_syntax_error_names_the_template(write_task) -> None:
    message = refusal(write_task, prompt={**PROMPT, "query": "문장: {{ text \n감정:"})
    assert "prompt.query" in message and "template error" in message
    message = refusal(write_task, target="{% if label %}{{ label }}")
    assert "target" in message


def test_an_undefined_attribute_is_an_error_not_an_empty_string(write_task) -> None:
    rows = [{"text": "가", "label": "기쁨", "meta": {"source": "뉴스"}},
            {"text": "나", "label": "슬픔", "meta": {"source": "블로그"}}]
    message = refusal(write_task, data=rows, shots=[0],
                      prompt={"query": "{{ meta.author }}: {{ text }}"})
    assert "prompt.query" in message and "author" in message


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ text.__class__.__base__.__subclasses__()|length }}",
    ],
)
def test_the_sandbox_refuses_reaching_python_internals(write_task, payload: str) -> None:
    message = refusal(write_task, shots=[0], prompt={"query": payload + " {{ text }}"})
    assert "sandbox" in message
    assert "subprocess" not in message and "<class" not in message


def test_more_shots_than_examples_is_refused(write_task, tmp_path) -> None:
    message = refusal(write_task, shots=[0, 4], prompt=PROMPT)  # 4 rows: 3 others each
    assert "asks for 4 examples" in message and "has 3" in message
    (tmp_path / "pool.jsonl").write_text('{"text": "가", "label": "기쁨"}\n', encoding="utf-8")
    message = refusal(write_task, fewshot="pool.jsonl", shots=[2], prompt=PROMPT)
    assert "the few-shot pool has 1" in message


def test_a_reference_outside_the_labels_is_refused(write_task, emotion_rows) -> None:
    rows = [*emotion_rows[:2], {"text": "날씨가 좋네요", "label": "행복"}]
    message = refusal(write_task, rows=rows)
    assert "data item 3" in message and "'행복'" in message and "labels" in message


def test_aliases_are_split_on_bars_trimmed_and_deduplicated(write_task) -> None:
    rows = [
        {"question": "일본의 수도는?", "answer": " 도쿄", "aliases": "동경| 도쿄도 ||도쿄"},
        {"question": "프랑스의 수도는?", "answer": "파리", "aliases": ""},
    ]
    prompts, _ = prompts_of(
        write_task, rows=rows, kind="qa", labels=None, shots=[0],
        prompt={"query": "질문: {{ question }}\n답:"}, target="{{ answer }}",
        aliases="{{ aliases }}",
    )
    assert [p.references for p in prompts] == [["도쿄", "동경", "도쿄도"], ["파리"]]


def test_a_data_column_named_self_is_an_ordinary_column(write_task) -> None:
    rows = [{"text": "가", "label": "기쁨", "self": "나"}, {"text": "다", "label": "슬픔", "self": "라"}]
    prompts, _ = prompts_of(write_task, rows=rows, shots=[0, 1], prompt=PROMPT)
    assert prompts[0].text == "감정을 고르세요.\n\n문장: 가\n감정:"
    message = refusal(write_task, rows=rows, shots=[0], prompt={"query": "{{ self }}"})
    assert "prompt.query" in message and "'self'" in message and "rename" in message


@pytest.mark.parametrize(("source", "words"), [
    ("{% include 'x.j2' %}{{ text }}", "{% include %} on its line 1 is not allowed"),
    ("{% for i in range(10**9) %}{% endfor %}{{ text }}", "range() is limited to 100,000"),
    ("{{ '{0}'.format_map(text) }}", "cannot render it (IndexError"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}{{ text }}", "nests too deeply"),
    ("{{ text * 10**9 }}", "longer than 1,000,000"),
])
def test_template_mistakes_are_one_line_naming_the_template(write_task, source, words) -> None:
    try:
        task = load_task(write_task(shots=[0], prompt={"query": source}))
        build_prompts(task)
    except HarnessError as exc:
        message = str(exc)
    else:
        pytest.fail("the template was accepted")
    assert "prompt.query" in message and words in message and "\n" not in message


def test_drawing_examples_touches_about_as_many_rows_as_it_draws(write_task, monkeypatch) -> None:
    """Linear in the items: each draw asks the random generator for about as many
    numbers as examples it returns, however large the pool (no shuffle of it all)."""
    import random

    asked = []
    real = random.Random._randbelow

    def counting(self, n):
        asked.append(n)
        return real(self, n)

    monkeypatch.setattr(random.Random, "_randbelow", counting)
    rows = [{"text": f"문장 {i}", "label": "기쁨"} for i in range(3000)]
    rows += [dict(rows[0]) for _ in range(5)]  # copies of item 1 are never its examples
    prompts, _ = prompts_of(write_task, rows=rows, shots=[0, 3], prompt=PROMPT)
    assert len(prompts) == 2 * len(rows)
    assert len(asked) <= 2 * 3 * len(rows)  # a shuffle per item would ask 3,004 each
    for p in prompts:
        assert len(p.examples) == p.shots and len(set(p.examples)) == p.shots
        assert all(rows[j] != rows[p.item] for j in p.examples)
