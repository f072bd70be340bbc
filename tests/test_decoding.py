"""Tests for harness.tasks.decoding: presets, grids, and refusing bad settings before a model loads."""

from __future__ import annotations

import pytest

from harness import cli
from harness.errors import HarnessError
from harness.tasks.decoding import PRESETS, Setting, check, expand
from harness.tasks.spec import DecodingSpec


def settings_of(**fields) -> list[Setting]:
    return expand(DecodingSpec(**fields))


def refusal(**fields) -> str:
    with pytest.raises(HarnessError) as caught:
        settings_of(**fields)
    return str(caught.value)


def test_every_preset_is_a_valid_setting() -> None:
    settings = settings_of(presets=list(PRESETS))
    assert [s.name for s in settings] == list(PRESETS)
    assert [s.args for s in settings] == list(PRESETS.values())


def test_presets_carry_the_lessons_decoding_methods() -> None:
    named = {s.name: s for s in settings_of(presets=list(PRESETS))}
    assert not named["greedy"].sampled and named["greedy"].sequences == 1
    assert named["beam"].beams == 5 and not named["beam"].sampled
    assert named["beam_5_sequences"].sequences == 5
    assert named["top_k_top_p_3"].sampled and named["top_k_top_p_3"].rows_per_prompt == 3
    assert named["beam_5_sequences"].rows_per_prompt == 5


def test_with_nothing_chosen_a_task_runs_greedy() -> None:
    assert settings_of() == [Setting("greedy", {})]


def test_presets_then_configs_then_grid_combinations() -> None:
    settings = settings_of(
        presets=["greedy", "beam"],
        configs={"beam3_block2": {"num_beams": 3, "no_repeat_ngram_size": 2}},
        grid={"do_sample": [True], "temperature": [0.7, 1.0], "top_p": [0.9, 0.95]},
    )
    assert [s.name for s in settings] == [
        "greedy",
        "beam",
        "beam3_block2",
        "temperature=0.7,top_p=0.9",
        "temperature=0.7,top_p=0.95",
        "temperature=1.0,top_p=0.9",
        "temperature=1.0,top_p=0.95",
    ]
    assert settings[2].args == {"num_beams": 3, "no_repeat_ngram_size": 2}
    assert settings[-1].args == {"do_sample": True, "temperature": 1.0, "top_p": 0.95}
    assert all(s.sampled for s in settings[3:])


def test_a_grid_with_nothing_varying_is_named_by_all_its_values() -> None:
    (setting,) = settings_of(grid={"do_sample": [True], "top_k": [10]})
    assert setting.name == "do_sample=true,top_k=10"


def test_grid_size_is_the_product_of_its_value_counts() -> None:
    grid = {"num_beams": [2, 3, 4], "no_repeat_ngram_size": [0, 2], "length_penalty": [1.0]}
    settings = settings_of(grid=grid)
    assert len(settings) == 6
    assert len({s.name for s in settings}) == 6
    assert settings[0].name == "num_beams=2,no_repeat_ngram_size=0"


def test_only_replaces_the_tasks_settings() -> None:
    spec = DecodingSpec(presets=["beam"], configs={"mine": {"num_beams": 2}})
    assert [s.name for s in expand(spec, ["top_p", "greedy"])] == ["top_p", "greedy"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"presets": ["gredy"]}, "unknown preset 'gredy'; did you mean 'greedy'?"),
        ({"presets": ["zzz"]}, "known: greedy"),
        ({"configs": {"c": {"temprature": 0.7, "do_sample": True}}},
         "unknown generate() argument 'temprature'"),
        ({"configs": {"c": {"do_sample": True, "temperature": 0}}}, "temperature"),
        ({"configs": {"c": {"do_sample": True, "temperature": -1.0}}}, "temperature"),
        ({"configs": {"c": {"do_sample": True, "top_p": 0}}}, "top_p"),
        ({"configs": {"c": {"do_sample": True, "top_p": 1.5}}}, "top_p"),
        ({"configs": {"c": {"num_beams": 2, "num_return_sequences": 3}}},
         "num_return_sequences"),
        ({"configs": {"c": {"num_return_sequences": 2}}}, "num_return_sequences"),
        ({"configs": {"c": {"num_beams": 3, "no_repeat_ngram_size": -1}}},
         "no_repeat_ngram_size"),
        ({"configs": {"c": {"max_new_tokens": 0}}}, "max_new_tokens"),
        ({"configs": {"c": {"temperature": 0.7}}}, "do_sample"),
        ({"configs": {"c": {"top_k": 10}}}, "do_sample"),
        ({"configs": {"c": {"num_beams": "many"}}}, "num_beams"),
        ({"grid": {"temperature": []}}, "temperature has no values"),
        ({"presets": ["beam"], "configs": {"beam": {"num_beams": 2}}}, "used twice: beam"),
    ],
)
def test_bad_settings_are_refused(fields: dict, words: str) -> None:
    message = refusal(**fields)
    assert words in message
    if "configs" in fields:
        assert "'c'" in message or "beam" in message  # names the setting


def test_ranges_that_are_allowed_pass() -> None:
    check(Setting("edge", {"do_sample": True, "top_p": 1.0, "temperature": 0.01}), 8)
    check(Setting("block", {"num_beams": 2, "no_repeat_ngram_size": 0}), 8)
    check(Setting("many", {"do_sample": True, "num_return_sequences": 4}), 8)


def test_a_bad_setting_fails_the_run_before_any_model_loads(
    write_task, tmp_path, monkeypatch, capsys
) -> None:
    loads: list[str] = []
    monkeypatch.setattr("harness.engines.models.load_model", lambda *a, **k: loads.append(a) or 1 / 0)
    path = write_task(decoding={"configs": {"hot": {"temperature": 1.5}}})

    code = cli.main(["run", str(path), "--model", "anything", "--out", str(tmp_path / "out")])

    assert code == 2
    assert loads == []
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and "'hot'" in err and "do_sample" in err
    assert not (tmp_path / "out").exists()  # no run folder for a run that never started
