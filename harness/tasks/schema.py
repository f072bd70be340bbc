"""The task file's JSON Schema, generated from the pydantic models that validate it.

Editors read it (``# yaml-language-server: $schema=...`` on a task's first line) to
complete and check fields. It is the models' own schema with four additions that the
same code checks at load time: preset names, the ``generate()`` arguments that configs
and grids may use, metric names, and rating points written as numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.scoring.metrics import every_name
from harness.tasks.decoding import PRESETS, GenerateArgs
from harness.tasks.spec import Task

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
# Where the repository keeps it; tasks/*.yaml point here. Absent in an installed package.
SHIPPED_SCHEMA = Path(__file__).resolve().parents[2] / "schema" / "task.schema.json"


def task_schema() -> dict[str, Any]:
    """The JSON Schema of a task file."""
    schema = Task.model_json_schema()
    defs = schema["$defs"]
    decoding = defs["DecodingSpec"]["properties"]
    decoding["presets"]["items"] = {"type": "string", "enum": list(PRESETS)}
    defs["GenerateArgs"] = GenerateArgs.model_json_schema()
    decoding["configs"]["additionalProperties"] = {"$ref": "#/$defs/GenerateArgs"}
    decoding["grid"]["propertyNames"] = {"enum": list(GenerateArgs.model_fields)}
    schema["properties"]["metrics"]["anyOf"][0]["items"] = {"type": "string",
                                                             "enum": every_name()}
    # a scale's points may be written as numbers (1 to 5); they are kept as text
    defs["RatingSpec"]["properties"]["scale"]["items"] = {"type": ["string", "integer"]}
    _close_every_model(schema)
    return {
        "$schema": SCHEMA_URL,
        "title": "harness task file",
        "description": "A prompt-evaluation task for harness (see docs/tasks.md).",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def schema_text() -> str:
    """The schema as the repository ships it: indented JSON, Hangul as is, one newline."""
    return json.dumps(task_schema(), ensure_ascii=False, indent=2) + "\n"


def _close_every_model(node: Any) -> None:
    """Refuse unknown keys in every object with named fields, as extra="forbid" does."""
    if isinstance(node, dict):
        if "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_every_model(value)
    elif isinstance(node, list):
        for value in node:
            _close_every_model(value)
