"""--backend openai: a model behind a server that speaks the OpenAI API.

Against ``transformers serve`` on a tiny model folder (started here, stopped here):
greedy answers equal those of ``--backend hf`` on the same folder, plain and chat; a
server killed mid-run loses nothing and ``--resume`` finishes the run. Against a small
server of the test's own: 429s and 500s retried, silence timed out, a wrong key, a
parameter rejected, settings refused before any request, reasoning kept apart from the
answer that is scored, and the key written nowhere.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers import FakeServer, completion, free_port, stop, transformers_serve

from harness.engines.contract import Server
from harness.errors import HarnessError
from harness.runs import pipeline


def run(task: Path, server: Server, out: Path, model: str = "fake-model", chat: str | None = None,
        cache: bool = False, resume: Path | None = None, **overrides: Any) -> pipeline.Finished:
    config = pipeline.RunConfig(
        task=task, overrides=pipeline.Overrides(model=model, chat=chat, **overrides),
        backend="openai", out=out, server=server, cache=cache, resume=resume,
    )
    return pipeline.run(config)


def rows(finished: pipeline.Finished) -> list[tuple]:
    return sorted((r["setting"], r["item"], r["shots"], r["sequence"], r["output"],
                   r["stop_reason"]) for r in finished.records)


def samples(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# ---------------------------------------------------------------- transformers serve


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import chat_model

    return chat_model(tmp_path_factory.mktemp("served") / "model")


@pytest.fixture(scope="module")
def served(chat_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """``transformers serve`` pinned to the tiny chat model: (base URL, port)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(chat_folder, port, log):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("chat", [None, "turns"])
def test_greedy_answers_from_transformers_serve_equal_the_hf_backends(
    served: str, chat_folder: Path, write_task, tmp_path: Path, chat: str | None
) -> None:
    task = write_task(decoding={"presets": ["greedy"], "max_new_tokens": 6})
    theirs = pipeline.run(pipeline.RunConfig(
        task=task, overrides=pipeline.Overrides(model=str(chat_folder), chat=chat),
        backend="hf", out=tmp_path / "hf", cache=False))
    ours = run(task, Server(served, concurrency=3), tmp_path / "served", str(chat_folder), chat)
    assert rows(ours) == rows(theirs)
    assert len(rows(ours)) == 8
    info = json.loads((ours.run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["model"]["server"]["base_url"] == served
    assert info["model"]["usage"]["completion_tokens"] == 8 * 6
    assert "served model" in (ours.run_dir / "index.html").read_text(encoding="utf-8")


def test_sampling_on_transformers_serve_is_refused_in_one_line(
    served: str, chat_folder: Path, write_task, tmp_path: Path
) -> None:
    """transformers serve (5.19) decodes greedily whatever temperature and seed ask, where
    the model's generation_config does not sample (and ignores n): refused, not run wrong."""
    task = write_task(decoding={"configs": {"mine": {"do_sample": True, "top_p": 0.9}}})
    with pytest.raises(HarnessError) as caught:
        run(task, Server(served, retries=0), tmp_path, str(chat_folder))
    assert "sampling (do_sample) is not done by the transformers server" in str(caught.value)
    assert "'mine'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_server_returning_fewer_sequences_than_asked_is_one_line(write_task, tmp_path) -> None:
    task = write_task(decoding={"configs": {"three": {"do_sample": True,
                                                      "num_return_sequences": 3}}})
    with FakeServer(lambda path, body: (200, completion(["하나"]), {})) as fake:
        with pytest.raises(HarnessError) as caught:
            run(task, Server(fake.url), tmp_path)
    message = str(caught.value)
    assert "asked for 3 sequence(s) (n) in setting 'three'" in message and "returned 1" in message
    assert "\n" not in message


def test_label_ranking_where_the_server_gives_no_prompt_logprobs_is_one_line(
    served: str, chat_folder: Path, write_task, tmp_path: Path
) -> None:
    task = write_task(scoring="likelihood")
    with pytest.raises(HarnessError, match="prompt's log-probabilities") as caught:
        run(task, Server(served), tmp_path, str(chat_folder))
    assert "\n" not in str(caught.value)


def test_a_server_killed_mid_run_loses_nothing_and_resume_finishes_it(
    chat_folder: Path, write_task, tmp_path: Path, emotion_rows
) -> None:
    rows_ = emotion_rows * 3  # 12 items, 2 shot counts: 24 requests, one at a time
    task = write_task(rows=rows_, decoding={"presets": ["greedy"], "max_new_tokens": 8})
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = Server(url, concurrency=1, retries=1)
    with transformers_serve(chat_folder, port, tmp_path / "first.log") as process:
        whole = run(task, server, tmp_path / "whole", str(chat_folder))
        out = tmp_path / "killed"
        killer = threading.Thread(target=_kill_after, args=(out, 5, process))
        killer.start()
        with pytest.raises(HarnessError) as caught:
            run(task, server, out, str(chat_folder))
        killer.join()
    message = str(caught.value)
    assert "cannot reach the server" in message and "--resume" in message, message
    run_dir = next(out.iterdir())
    kept = len(samples(run_dir))
    assert 5 <= kept < 24
    with transformers_serve(chat_folder, port, tmp_path / "second.log"):
        resumed = run(task, server, out, str(chat_folder), resume=run_dir)
    assert rows(resumed) == rows(whole)
    assert len(samples(run_dir)) == 24


def _kill_after(out: Path, outputs: int, process: Any) -> None:
    """Kill the server once the run folder under ``out`` holds ``outputs`` outputs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list(out.glob("*/samples.jsonl"))
        if found and len(found[0].read_text(encoding="utf-8").splitlines()) >= outputs:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    stop(process)


# ---------------------------------------------------------------- a server of our own


def test_429s_and_500s_are_retried_honouring_retry_after(write_task, tmp_path: Path) -> None:
    failures = [(429, {"Retry-After": "0.3"}), (500, {}), (503, {"Retry-After": "0"})]
    lock = threading.Lock()

    def reply(path: str, body: dict[str, Any]):
        with lock:
            failure = failures.pop(0) if failures else None
        if failure:
            return failure[0], {"error": {"message": "busy"}}, failure[1]
        return 200, completion([f"답{len(body['prompt'])}"]), {}

    task = write_task()
    with FakeServer(reply) as fake:
        started = time.monotonic()
        done = run(task, Server(fake.url, concurrency=1, retries=3), tmp_path)
        took = time.monotonic() - started
        assert fake.posts() == 8 + 3
    assert took >= 0.3  # Retry-After waited
    assert sorted(r["output"] for r in done.records) == sorted(
        f"답{len(r['prompt'])}" for r in done.records)
    info = json.loads((done.run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["model"]["system_fingerprint"] == ["fp_test"]
    assert info["model"]["usage"] == {"prompt_tokens": 80, "completion_tokens": 16,
                                      "total_tokens": 96}


def test_a_server_still_failing_after_the_retries_is_one_line(write_task, tmp_path) -> None:
    task = write_task()
    with FakeServer(lambda path, body: (503, {"error": {"message": "overloaded"}},
                                        {"Retry-After": "0"})) as fake:
        with pytest.raises(HarnessError) as caught:
            run(task, Server(fake.url, retries=2), tmp_path)
    message = str(caught.value)
    assert "still answering 503 after 3 tries" in message and "\n" not in message


def test_a_server_that_never_answers_times_out_in_one_line(write_task, tmp_path) -> None:
    task = write_task()
    with FakeServer(hang=5) as fake:
        started = time.monotonic()
        with pytest.raises(HarnessError) as caught:
            run(task, Server(fake.url, timeout=0.5, concurrency=2), tmp_path)
        assert time.monotonic() - started < 4
    assert "no answer within 0.5 s" in str(caught.value) and "\n" not in str(caught.value)
    assert not list(tmp_path.glob("tiny-*"))  # nothing finished: no run folder left


def test_a_wrong_key_is_one_line_naming_the_variable_not_the_key(
    write_task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-wrong-1234")
    task = write_task()
    with FakeServer(key="sk-right") as fake:
        with pytest.raises(HarnessError) as caught:
            run(task, Server(fake.url, api_key_env="MY_KEY"), tmp_path)
        assert fake.posts() == 0  # refused when the models were listed
    message = str(caught.value)
    assert "refused the key in $MY_KEY" in message and "sk-wrong" not in message
    assert "\n" not in message


def test_the_key_goes_in_the_header_and_nowhere_else(
    write_task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    key = "sk-secret-5678"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    task = write_task()
    with FakeServer(key=key) as fake:
        done = run(task, Server(fake.url), tmp_path, cache=True)
        assert {h["Authorization"] for h in fake.headers} == {f"Bearer {key}"}
    for path in done.run_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    cache = Path(os.environ["HARNESS_CACHE"])
    for path in cache.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_the_url_s_credentials_are_left_out_of_run_json(write_task, tmp_path: Path) -> None:
    task = write_task()
    with FakeServer() as fake:
        secret = fake.url.replace("http://", "http://user:pw@") + "?api-key=abc"
        done = run(task, Server(secret), tmp_path)
    text = (done.run_dir / "run.json").read_text(encoding="utf-8")
    assert "pw@" not in text and "abc" not in text
    assert json.loads(text)["model"]["server"]["base_url"] == fake.url


@pytest.mark.parametrize(("config", "named"), [
    ({"num_beams": 3}, "beam search (num_beams)"),
    ({"no_repeat_ngram_size": 2}, "n-gram blocking (no_repeat_ngram_size)"),
    ({"do_sample": True, "top_k": 40}, "top_k is not taken by the OpenAI-compatible server at"),
])
def test_what_the_server_cannot_do_is_refused_before_any_request(
    write_task, tmp_path: Path, config: dict[str, Any], named: str
) -> None:
    task = write_task(decoding={"configs": {"mine": config}})
    with FakeServer() as fake:
        with pytest.raises(HarnessError) as caught:
            run(task, Server(fake.url), tmp_path)
        assert fake.posts() == 0
    message = str(caught.value)
    assert message.startswith("decoding setting 'mine': ") and named in message
    assert "--backend openai" in message and "\n" not in message


def test_a_parameter_the_server_rejects_is_one_line_naming_it(write_task, tmp_path) -> None:
    def reply(path: str, body: dict[str, Any]):
        if "seed" in body:
            return 400, {"error": {"message": "Unrecognized request argument supplied: seed"}}, {}
        return 200, completion(["x"]), {}

    task = write_task(decoding={"presets": ["top_p"]})
    with FakeServer(reply) as fake:
        with pytest.raises(HarnessError) as caught:
            run(task, Server(fake.url), tmp_path)
    message = str(caught.value)
    assert "the server rejected seed=" in message and "\n" not in message


def test_the_decoding_grid_maps_onto_the_request(write_task, tmp_path: Path) -> None:
    task = write_task(decoding={"presets": ["greedy"],
                                "configs": {"warm": {"do_sample": True, "temperature": 0.7,
                                                     "top_p": 0.9, "top_k": 0,
                                                     "num_return_sequences": 2}},
                                "max_new_tokens": 5, "stop": ["\n"]}, seeds=[7])
    with FakeServer() as fake:
        done = run(task, Server(fake.url), tmp_path)
        bodies = [body for _, body in fake.requests]
    greedy = [b for b in bodies if b["temperature"] == 0.0]
    warm = [b for b in bodies if b["temperature"] == 0.7]
    assert len(greedy) == len(warm) == 8
    assert all(b["max_tokens"] == 5 and b["stop"] == ["\n"] and "seed" not in b
               for b in greedy)
    assert all(b["top_p"] == 0.9 and b["n"] == 2 and "top_k" not in b for b in warm)
    assert len({b["seed"] for b in warm}) == 8  # each prompt its own seed
    assert len(done.records) == 8 + 16


def test_a_stop_string_left_in_the_text_is_cut_and_said(write_task, tmp_path) -> None:
    task = write_task(decoding={"presets": ["greedy"], "stop": ["\n"]})
    with FakeServer(lambda path, body: (200, completion(["기쁨\n문장"]), {})) as fake:
        done = run(task, Server(fake.url), tmp_path)
    assert {(r["output"], r["stop_reason"]) for r in done.records} == {("기쁨", "stop")}


# ---------------------------------------------------------------- reasoning models


def test_reasoning_models_are_scored_on_their_answers(write_task, tmp_path: Path) -> None:
    """Chat answers that think first: in <think> tags, in a reasoning field, or never
    finishing. Metrics score what follows the thinking; the thinking is kept."""
    answers = {
        0: ("<think>합격했다고 하니 기쁨이다. 슬픔은 아니다.</think>\n기쁨", None, "stop"),
        1: ("슬픔", "강아지가 떠났으니 슬픔이다.", "stop"),
        2: ("<think>분노일까 슬픔일까 기쁨일까", None, "length"),
        3: ("<think>\n\n</think>\n\n중립", None, "stop"),
    }
    texts = [row["text"] for row in json.loads(json.dumps(_emotion()))]

    def reply(path: str, body: dict[str, Any]):
        assert path == "/v1/chat/completions"
        assert body["chat_template_kwargs"] == {"enable_thinking": True}
        query = body["messages"][-1]["content"]
        item = next(i for i, text in enumerate(texts) if text in query)
        content, reasoning, finish = answers[item]
        return 200, completion([content], finish, chat=True, reasoning=reasoning), {}

    task = write_task(shots=[0])
    with FakeServer(reply) as fake:
        done = run(task, Server(fake.url, chat_args={"enable_thinking": True}), tmp_path,
                   chat="turns")
    got = {r["item"]: r for r in done.records}
    assert [got[i]["output"] for i in range(4)] == ["기쁨", "슬픔", "", "중립"]
    assert [got[i]["correct"] for i in range(4)] == [1.0, 1.0, 0.0, 1.0]
    assert got[0]["reasoning"] == "합격했다고 하니 기쁨이다. 슬픔은 아니다."
    assert got[1]["reasoning"] == "강아지가 떠났으니 슬픔이다."
    assert got[0]["reasoning_chars"] == len(got[0]["reasoning"])
    assert got[2]["stop_reason"] == "thinking" and got[2]["reasoning"] == "분노일까 슬픔일까 기쁨일까"
    assert "기쁨" in got[0]["raw_output"] and "<think>" in got[0]["raw_output"]
    on_disk = {r["item"]: r for r in samples(done.run_dir)}
    assert on_disk[0]["reasoning"] == got[0]["reasoning"]
    from harness.scoring.summary import Summary

    summary = Summary("classification", done.records, ["기쁨", "슬픔", "분노", "중립"])
    assert "stop_thinking" in summary.columns and "reasoning" in summary.columns
    from harness.scoring import metrics

    assert summary.estimate(("greedy", 0), metrics.get("stop_thinking"))[0] == 1
    page = (done.run_dir / "index.html").read_text(encoding="utf-8")
    assert "still thinking (no answer) <b>1</b>" in page
    data = page.split('id="review-data">', 1)[1].split("</script>", 1)[0]
    assert "합격했다고 하니" in json.dumps(json.loads(data), ensure_ascii=False)  # folded there


def _emotion() -> list[dict[str, str]]:
    from conftest import EMOTION_ROWS

    return EMOTION_ROWS


def test_stopping_the_stream_stops_sending(tmp_path: Path) -> None:
    """Ctrl-C in the runner closes the backend's stream: nothing more is sent, and what
    was in flight is given up rather than waited for."""
    from harness.engines.contract import Options
    from harness.engines.openai.backend import OpenAIBackend
    from harness.tasks.decoding import Setting

    with FakeServer(hang=0.5) as fake:
        backend = OpenAIBackend.open("fake-model", server=Server(fake.url, concurrency=2))
        try:
            jobs = [(f"문장 {i}", Setting("greedy"), None) for i in range(20)]
            answers = backend.stream(jobs, Options())
            next(answers)
            started = time.monotonic()
            answers.close()
            assert time.monotonic() - started < 0.4  # the request in flight not waited for
            sent = fake.posts()
            time.sleep(1.2)
            assert fake.posts() == sent <= 4
        finally:
            backend.close()


def test_the_cache_answers_the_same_server_and_model_only(write_task, tmp_path: Path) -> None:
    task = write_task()
    with FakeServer() as fake, FakeServer() as other:
        first = run(task, Server(fake.url), tmp_path / "a", cache=True)
        again = run(task, Server(fake.url), tmp_path / "b", cache=True)
        assert fake.posts() == 8  # the second run came from the cache
        assert rows(again) == rows(first)
        run(task, Server(other.url), tmp_path / "c", cache=True)
        assert other.posts() == 8  # another server: its own requests
        run(task, Server(fake.url), tmp_path / "d", model="fake-model-2", cache=True)
        assert fake.posts() == 16  # another model name at the same server


def test_the_python_api_runs_a_served_model(write_task, tmp_path: Path) -> None:
    import harness

    task = write_task(shots=[0], chat="turns")
    with FakeServer() as fake:
        done = harness.run(task, backend="openai", base_url=fake.url, model="fake-model",
                           chat_args={"enable_thinking": False}, concurrency=2, out=tmp_path,
                           cache=False)
        bodies = [body for _, body in fake.requests]
    assert len(done.samples) == 4
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in bodies)
