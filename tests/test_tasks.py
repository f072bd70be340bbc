"""Tests for harness.tasks.spec: loading a task file and refusing mistakes with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.tasks.spec import load_task

VALID = """\
name: tiny
kind: classification
data: data.csv
shots: [0, 1]
prompt:
  example: "문장: {{ text }}\\n감정: {{ label }}"
  query: "문장: {{ text }}\\n감정:"
target: "{{ label }}"
labels: [기쁨, 슬픔, 분노, 중립]
decoding:
  presets: [greedy]
  max_new_tokens: 4
"""


def error_of(path: Path) -> str:
    with pytest.raises(HarnessError) as caught:
        load_task(path)
    return str(caught.value)


def test_a_valid_task_loads_with_its_items_and_defaults(write_yaml, emotion_rows) -> None:
    task = load_task(write_yaml(VALID))
    spec = task.spec
    assert spec.name == "tiny" and spec.kind == "classification"
    assert spec.shots == [0, 1]
    assert spec.labels == ["기쁨", "슬픔", "분노", "중립"]
    assert spec.prompt.query == "문장: {{ text }}\n감정:"
    assert task.items == emotion_rows
    assert task.pool is None
    # defaults of the contract
    assert spec.prompt.separator == "\n"
    assert spec.seeds == [42]
    assert spec.model == "default"
    assert spec.decoding.stop == [] and spec.decoding.bad_words == []
    unset = load_task(write_yaml(VALID.replace("  max_new_tokens: 4\n", "")))
    assert unset.spec.decoding.max_new_tokens == 32


def test_inline_data_and_a_fewshot_file(write_yaml, tmp_path: Path) -> None:
    (tmp_path / "shots.jsonl").write_text('{"text": "가", "label": "기쁨"}\n', encoding="utf-8")
    text = VALID.replace("data: data.csv", 'data:\n  - {text: 비가 와요, label: 슬픔}\n'
                         "fewshot: shots.jsonl")
    task = load_task(write_yaml(text))
    assert task.items == [{"text": "비가 와요", "label": "슬픔"}]
    assert task.pool == [{"text": "가", "label": "기쁨"}]


def test_the_data_path_is_relative_to_the_task_file(
    write_yaml, tmp_path, monkeypatch, emotion_rows
) -> None:
    path = write_yaml(VALID)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_task(path).items == emotion_rows
    assert load_task(Path("..") / path.name).items == emotion_rows


def test_a_missing_data_file_is_named(write_yaml, tmp_path: Path) -> None:
    message = error_of(write_yaml(VALID.replace("data.csv", "nope.csv")))
    assert str(tmp_path / "nope.csv") in message and "not found" in message


def test_an_unknown_key_is_refused_with_its_line_and_a_suggestion(write_yaml) -> None:
    path = write_yaml(VALID.replace("target:", "targte:"))
    message = error_of(path)
    assert message.startswith(f"{path}:8: ")
    assert "unknown key 'targte'" in message
    assert "did you mean 'target'?" in message


def test_an_unknown_nested_key_is_refused_with_its_line_and_a_suggestion(write_yaml) -> None:
    path = write_yaml(VALID.replace("  max_new_tokens: 4", "  max_new_token: 4"))
    message = error_of(path)
    assert message.startswith(f"{path}:12: decoding.max_new_token: unknown key")
    assert "did you mean 'max_new_tokens'?" in message


def test_a_duplicate_key_is_refused_with_its_line(write_yaml) -> None:
    path = write_yaml(VALID + "shots: [0]\n")
    message = error_of(path)
    assert message.startswith(f"{path}:13: ")
    assert "duplicate key 'shots'" in message


def test_a_duplicate_nested_key_is_refused(write_yaml) -> None:
    path = write_yaml(VALID.replace("  max_new_tokens: 4", "  max_new_tokens: 4\n  presets: []"))
    message = error_of(path)
    assert message.startswith(f"{path}:13: ") and "duplicate key 'presets'" in message


def test_a_yaml_syntax_error_names_file_and_line(write_yaml) -> None:
    path = write_yaml(VALID.replace("labels: [기쁨, 슬픔, 분노, 중립]", "labels: [기쁨, 슬픔"))
    message = error_of(path)
    assert message.startswith(f"{path}:")
    line = int(message.split(":")[1])
    assert 9 <= line <= 11  # where the unclosed list begins or where YAML noticed
    assert "YAML error" in message


def test_unquoted_jinja_is_explained_not_a_crash(write_yaml) -> None:
    path = write_yaml(VALID.replace('  query: "문장: {{ text }}\\n감정:"', "  query: {{ text }}"))
    message = error_of(path)
    assert message.startswith(f"{path}:7: ")
    assert "quotes" in message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (("kind: classification\n", ""), "kind", "required field is missing"),
        (('  query: "문장: {{ text }}\\n감정:"\n', ""), "prompt.query", "required field is missing"),
        (("kind: classification", "kind: poetry"), "kind", "'classification'"),
        (("max_new_tokens: 4", "max_new_tokens: 0"), "decoding.max_new_tokens", "greater than"),
        (("shots: [0, 1]", "shots: many"), "shots", "valid list"),
        (("shots: [0, 1]", "shots: [0, -1]"), "(task)", "shots must be 0 or more"),
        (("shots: [0, 1]", "shots: [1, 1]"), "(task)", "shots has a count twice"),
        (("name: tiny", "name: my task"), "name", "letters, digits, - and _ only"),
        (("data: data.csv", "data: 5"), "data", "a list of mappings"),
        (("decoding:\n", "decoding:\n  stop: ['']\n"), "decoding", "empty strings"),
        (("labels: [기쁨, 슬픔, 분노, 중립]\n", ""), "(task)", "needs labels"),
        (("labels: [기쁨, 슬픔, 분노, 중립]", "labels: [기쁨]"), "(task)", "two or more"),
        (('target: "{{ label }}"\n', ""), "(task)", "needs target"),
    ],
)
def test_invalid_fields_are_refused_naming_the_field(write_yaml, change, field, words) -> None:
    old, new = change
    assert old in VALID
    path = write_yaml(VALID.replace(old, new))
    message = error_of(path)
    assert message.startswith(str(path))
    assert f": {field}: " in message
    assert words in message
    assert "\n" not in message  # one mistake, one line


def test_an_out_of_range_value_names_its_line(write_yaml) -> None:
    path = write_yaml(VALID.replace("max_new_tokens: 4", "max_new_tokens: 0"))
    assert error_of(path).startswith(f"{path}:12: decoding.max_new_tokens: ")


def test_labels_are_only_for_classification(write_yaml) -> None:
    path = write_yaml(VALID.replace("kind: classification", "kind: qa"))
    assert "labels is only for kind: classification" in error_of(path)


def test_shots_above_zero_need_an_example_template(write_yaml) -> None:
    path = write_yaml(VALID.replace('  example: "문장: {{ text }}\\n감정: {{ label }}"\n', ""))
    assert "shots above 0 need prompt.example" in error_of(path)


def test_a_task_file_that_is_not_a_mapping_or_not_there(write_yaml, tmp_path: Path) -> None:
    assert "a task file is a mapping" in error_of(write_yaml("- name: tiny\n"))
    assert "task file not found" in error_of(tmp_path / "missing.yaml")


def test_yaml_tags_that_would_run_code_are_refused(write_yaml) -> None:
    path = write_yaml(VALID.replace("name: tiny", "name: !!python/object/apply:os.getcwd []"))
    assert "YAML error" in error_of(path)


def test_yaml_aliases_that_would_expand_a_billion_times_are_refused(write_yaml) -> None:
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    text = "\n".join(levels) + "\nname: bomb\nkind: generation\ndata: [{text: *i}]\n"
    text += 'prompt: {query: "{{ text }}"}\n'
    with pytest.raises(HarnessError) as caught:
        load_task(write_yaml(text))
    assert "YAML aliases (*name) would repeat" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_few_aliases_still_work(write_yaml) -> None:
    text = VALID.replace('query: "문장: {{ text }}\\n감정:"', 'query: &q "문장: {{ text }}\\n감정:"')
    text = text.replace("target:", "description: *q\ntarget:")
    assert load_task(write_yaml(text)).spec.description == "문장: {{ text }}\n감정:"


def test_an_alias_that_contains_itself_is_refused(write_yaml) -> None:
    with pytest.raises(HarnessError, match="contains it"):
        load_task(write_yaml("name: x\nkind: generation\ndata: &d [{text: *d}]\nprompt: {query: q}\n"))


def test_a_task_file_is_parsed_once_with_libyaml_where_there_is_one(write_yaml, monkeypatch) -> None:
    import yaml

    from harness.tasks import spec as tasks

    if yaml.__with_libyaml__:
        assert issubclass(tasks._Loader, yaml.CSafeLoader)
    made = []
    real = tasks._Loader.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(tasks._Loader, "__init__", counting)
    rows = "".join(f'  - {{text: "문장 {i}", label: 기쁨}}\n' for i in range(2000))
    text = VALID.replace("data: data.csv\n", "data:\n" + rows)
    assert len(load_task(write_yaml(text)).items) == 2000
    assert made == [1]  # one pass over the text: the tree for line numbers is the same


@pytest.mark.parametrize("seeds", ["[9223372036854775808]", "[-1]", "[1, 1]", "[]"])
def test_seeds_outside_what_torch_takes_are_refused(write_yaml, seeds) -> None:
    with pytest.raises(HarnessError, match="seeds"):
        load_task(write_yaml(VALID + f"seeds: {seeds}\n"))
