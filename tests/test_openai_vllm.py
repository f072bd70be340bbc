"""--backend openai against ``vllm serve`` on a tiny model (the CPU build starts in about
a minute, so this is marked slow: the quick sweep leaves it out, CI runs it).

The same folder run by ``--backend hf`` gives the reference: greedy answers, their
log-probabilities, label ranking through the prompt's own log-probabilities, and the
extra fields vLLM takes (bad words, top-k) refused by no one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers import free_port, vllm_serve

from harness.engines.contract import Server
from harness.runs import pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_served(hf_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("vllm")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    with vllm_serve(hf_model_dir, port, log):
        yield f"http://127.0.0.1:{port}/v1"


def outputs(finished: pipeline.Finished) -> dict[tuple, dict]:
    return {(r["setting"], r["item"], r["shots"], r["sequence"]): r for r in finished.records}


def test_vllm_serve_answers_as_the_hf_backend_does(vllm_served: str, hf_model_dir: Path,
                                                   write_task, tmp_path: Path) -> None:
    task = write_task(scoring="both", decoding={
        "presets": ["greedy"], "max_new_tokens": 6, "stop": ["내"], "bad_words": ["분"],
        "configs": {"sampled": {"do_sample": True, "top_k": 20, "top_p": 0.9,
                                "num_return_sequences": 2}}})
    theirs = outputs(pipeline.run(pipeline.RunConfig(
        task=task, overrides=pipeline.Overrides(model=str(hf_model_dir)),
        backend="hf", out=tmp_path / "hf", cache=False)))
    done = pipeline.run(pipeline.RunConfig(
        task=task, overrides=pipeline.Overrides(), backend="openai", out=tmp_path / "served",
        server=Server(vllm_served, concurrency=4), cache=False))
    ours = outputs(done)
    assert ours.keys() == theirs.keys()
    greedy = [key for key in ours if key[0] == "greedy"]
    assert len(greedy) == 8
    for key in greedy:
        # vLLM detokenizes the answer after the prompt, keeping a leading space that
        # transformers' decode of the answer alone drops
        assert ours[key]["output"].strip() == theirs[key]["output"].strip(), key
        assert ours[key]["stop_reason"] == theirs[key]["stop_reason"], key
        assert ours[key]["n_tokens"] == theirs[key]["n_tokens"], key
        assert ours[key]["mean_logprob"] == pytest.approx(theirs[key]["mean_logprob"], abs=1e-3)
    ranked = [key for key in ours if key[0] == "likelihood"]
    assert len(ranked) == 8
    for key in ranked:
        for label, logprob in theirs[key]["label_logprobs"].items():
            assert ours[key]["label_logprobs"][label] == pytest.approx(logprob, abs=1e-3)
    assert len([key for key in ours if key[0] == "sampled"]) == 16
    info = json.loads((done.run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["model"]["server"]["kind"] == "vLLM" and info["model"]["name"] == "tiny"
    assert info["model"]["server"]["max_model_len"] == 128
