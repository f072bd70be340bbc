"""Tests for harness.tasks.schema: the task file's JSON Schema, as editors use it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import cli
from harness.tasks.schema import SHIPPED_SCHEMA, schema_text, task_schema
from tests.conftest import BASE_TASK

SHIPPED = sorted(cli.TASKS_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, task: object) -> list[str]:
    return [error.message for error in validator.iter_errors(task)]


def test_the_shipped_schema_is_the_generated_one() -> None:
    # If this fails, the task models changed: run `harness schema --out schema/task.schema.json`.
    assert SHIPPED_SCHEMA.read_text(encoding="utf-8") == schema_text()


def test_schema_command_prints_and_writes_it(capsys, tmp_path: Path) -> None:
    assert cli.main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()
    out = tmp_path / "deep" / "task.schema.json"
    assert cli.main(["schema", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == schema_text()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_task_validates_and_points_at_the_schema(validator, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert errors(validator, yaml.safe_load(text)) == []
    first = text.splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schema/task.schema.json"
    assert (path.parent / first.split("$schema=")[1]).resolve() == SHIPPED_SCHEMA


@pytest.mark.parametrize(
    ("where", "key"),
    [((), "promt"), (("prompt",), "querry"), (("decoding",), "max_new_token")],
)
def test_an_unknown_key_is_refused_at_every_level(validator, where, key) -> None:
    task = copy.deepcopy(BASE_TASK)
    assert errors(validator, task) == []
    node = task
    for part in where:
        node = node[part]
    node[key] = 1
    (message,) = errors(validator, task)
    assert key in message and "not allowed" in message


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"kind": "poem"}, "poem"),
        ({"shots": "0,1"}, "not of type 'array'"),
        ({"decoding": {"presets": ["gredy"]}}, "gredy"),
        ({"decoding": {"configs": {"b": {"num_beam": 3}}}}, "num_beam"),
        ({"decoding": {"grid": {"temprature": [0.7]}}}, "temprature"),
        ({"metrics": ["acuracy"]}, "acuracy"),
        ({"name": "감정 분류"}, "does not match"),
    ],
)
def test_values_the_harness_refuses_are_marked(validator, change, found) -> None:
    task = {**copy.deepcopy(BASE_TASK), **change}
    assert any(found in message for message in errors(validator, task)), errors(validator, task)


def test_every_object_with_fields_refuses_other_keys() -> None:
    def objects(node: object):
        if isinstance(node, dict):
            if "properties" in node:
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    found = list(objects(task_schema()))
    assert len(found) >= 4  # the task, prompt, decoding, generate() arguments
    assert all(node["additionalProperties"] is False for node in found)


def test_fields_carry_descriptions_for_editors() -> None:
    schema = task_schema()
    for name in ("name", "kind", "data", "shots", "prompt", "labels", "seeds", "model"):
        assert schema["properties"][name].get("description"), name
