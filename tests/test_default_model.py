"""Smoke test of the real default model (Gemma 3 270M from its PyPI package).

It uses the real cache (~/.cache/harness, or $HARNESS_CACHE when the user set one), not
a temporary folder: the first run converts the GGUF file once (about a minute), and
later runs, as well as the README's main command, reuse that folder (seconds).
Deselect it with ``-m "not slow"``.
"""

from __future__ import annotations

import pytest

from harness.engines.contract import Options
from harness.engines.hf.backend import HFBackend
from harness.engines.models import load_model
from harness.tasks.decoding import Setting


@pytest.mark.slow
def test_the_default_model_loads_and_writes_korean(real_harness_cache) -> None:
    loaded = load_model("default", "cpu")

    assert loaded.model.config.model_type == "gemma3_text"
    converted = list((real_harness_cache / "models").glob("gemma-3-270m-*/config.json"))
    assert converted, "the default model is converted into the harness cache"
    assert loaded.tokenizer.padding_side == "left"
    backend = HFBackend(loaded)
    prompt = "한국의 수도는 서울이고, 일본의 수도는"
    (generation,) = backend.generate(
        [prompt], Setting("greedy", {}), [None], Options(max_new_tokens=4)
    )[0]
    assert generation.text.strip()
    assert 1 <= generation.n_tokens <= 4
    assert generation.mean_logprob is not None and generation.mean_logprob <= 0
