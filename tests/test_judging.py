"""A model as judge: replies read by rule, unreadable ones counted (never 0), both orders
asked for pairs, answers cached in judge.jsonl, and agreement with people."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.records import judged, load_run
from harness.reports.judgement import gather, panels
from harness.reports.report import summary_of
from harness.runs.judging import judge_run
from harness.runs.rating import import_ratings
from harness.scoring.judges import parse_choice, parse_point
from tests.conftest import FakeBackend
from tests.judged_runs import ITEMS, PAIR_RUBRIC, RUBRIC, make_run, ratings_file, write

SCALE = ["1", "2", "3", "4", "5"]


def test_a_point_is_read_from_the_start_of_the_reply() -> None:
    assert parse_point(" 4점입니다. 5점은 아니에요", SCALE) == "4"
    assert parse_point("점수: 2", SCALE) == "2"
    assert parse_point("14", SCALE) is None  # not a point of 1-5
    assert parse_point("3.5", SCALE) is None and parse_point("0.5", SCALE) is None
    assert parse_point("점수는 2.", SCALE) == "2"
    assert parse_point("잘 모르겠어요", SCALE) is None
    assert parse_point("good, not bad", ["bad", "good"]) == "good"
    assert parse_point("goodness", ["bad", "good"]) is None
    assert parse_point("보통이에요", ["나쁨", "보통", "좋음"]) == "보통"


def test_a_choice_is_a_b_or_a_tie() -> None:
    assert parse_choice(" A") == "a"
    assert parse_choice("B가 더 낫다") == "b"
    assert parse_choice("둘이 비슷해요") == "tie"
    assert parse_choice("Both are fine") is None  # "Both" is not B
    assert parse_choice("") is None
    # only the first non-empty line is read: not the rubric's next example after it
    assert parse_choice("\n\n대화:\nA: 안녕") is None
    assert parse_choice(" B\n\n대화:\nA: 안녕") == "b"
    assert parse_point("\n 3\n점수: 5", SCALE) == "3"


def _judge(replies: dict[str, str]) -> FakeBackend:
    """A judge that answers by the setting whose output the prompt shows."""
    backend = FakeBackend()
    backend.info = {**backend.info, "name": "fake-judge", "fingerprint": "j" * 64}

    def respond(prompt: str, setting, seed, index) -> str:
        answer = prompt.split("B의 답:", 1)[1].split("\n", 1)[0]
        kind = "beam" if "번 " in answer else "greedy" if "괜찮아" in answer else "top_p"
        return replies[kind]

    backend.respond = respond
    return backend


@pytest.fixture
def pointwise(tmp_path: Path) -> Path:
    return make_run(tmp_path, rating={"scale": [1, 2, 3, 4, 5]},
                    judge={"rubric": RUBRIC}, shots=(0,))


def test_unreadable_replies_are_counted_and_left_unscored(pointwise: Path) -> None:
    judge = _judge({"greedy": " 4점", "beam": " 점수는 2", "top_p": " 음, 글쎄요"})
    done = judge_run(pointwise, backend=judge)
    assert (done.asked, done.new, done.unparsed) == (3 * ITEMS, 3 * ITEMS, ITEMS)
    # the prompts hold the item's columns, the output and the reference
    first = judge.calls[0][0][0]
    assert "A: 질문 0번이야?" in first and "B의 답:  응, 0번은 괜찮아." in first
    assert "정답 예: 응 0번 맞아" in first and "1 / 2 / 3 / 4 / 5" in first
    lines = judged.read_judge(pointwise)
    assert len(lines) == 3 * ITEMS and all(line["prompt"] and "reply" in line for line in lines)

    run, found = load_run(pointwise)
    gathered = gather(pointwise, run, found)
    rows = {r["setting"]: r for r in summary_of(run, gathered.records, gathered.extra).rows}
    assert rows["greedy"]["judge"] == 4.0 and rows["beam"]["judge"] == 2.0
    assert rows["top_p"]["judge"] is None  # unreadable: no score, not 0
    page = (pointwise / "index.html").read_text(encoding="utf-8")
    assert f"<b>{ITEMS}</b> unreadable" in page and "음, 글쎄요" in page

    # judged again: every answer comes from judge.jsonl, the model is not asked
    again = _judge({"greedy": "1", "beam": "1", "top_p": "1"})
    done = judge_run(pointwise, backend=again)
    assert done.new == 0 and again.calls == []


def test_an_interrupted_judging_resumes_where_it_stopped(pointwise: Path) -> None:
    judge = _judge({"greedy": "5", "beam": "1", "top_p": "3"})
    real = judge.generate
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    judge.generate = failing
    with pytest.raises(KeyboardInterrupt):
        judge_run(pointwise, backend=judge)
    kept = len(judged.read_judge(pointwise))
    assert kept == 16  # the first batch
    judge.generate = real
    done = judge_run(pointwise, backend=judge)
    assert done.new == 3 * ITEMS - kept and done.unparsed == 0


def test_pairs_are_asked_both_ways_and_position_bias_shows(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, judge={"rubric": PAIR_RUBRIC, "mode": "pairwise"}, shots=(0,))
    judge = FakeBackend()
    judge.respond = lambda prompt, setting, seed, index: " A"  # always the first shown
    done = judge_run(run_dir, backend=judge)
    assert done.asked == ITEMS * 3 * 2  # 3 pairs of settings, both orders
    run, found = load_run(run_dir)
    gathered = gather(run_dir, run, found)
    shown = panels(gathered, summary_of(run, gathered.records, gathered.extra))["judge"]
    assert shown["pairs"]["first_share"] == "1.00"
    assert shown["consistent"] == {"pairs": ITEMS * 3, "same": 0}
    # the two orders cancel: every setting wins half its judgements
    assert {a["rate"] for a in shown["pairs"]["arms"]} == {"0.50"}


def test_the_judge_against_the_people(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, judge={"rubric": RUBRIC}, shots=(0,))
    judge_run(run_dir, backend=_judge({"greedy": "good", "beam": "bad", "top_p": "good"}))
    people = {(i, s, 0): {"overall": "good" if s == "greedy" else "bad"}
              for i in range(6) for s in ("greedy", "beam", "top_p")}
    import_ratings(run_dir, [write(tmp_path / "r.json", ratings_file(run_dir, "지수", people))])
    run, found = load_run(run_dir)
    gathered = gather(run_dir, run, found)
    trust = panels(gathered, summary_of(run, gathered.records, gathered.extra))["trust"]
    # agree on greedy and beam, disagree on top_p: 12 of 18 outputs the same
    assert trust["outputs"] == 18
    kappa = trust["kappas"][0]
    # table: people good 6 / bad 12; judge good 12 / bad 6; agree on 12
    # p_o = 12/18, p_e = (6*12 + 12*6) / 18^2 = 144/324 -> kappa = (2/3 - 4/9)/(5/9) = 0.4
    assert kappa["kappa"] == "0.40" and kappa["outputs"] == 18
    # setting means, people: greedy 1, beam 0, top_p 0 (ranks 3, 1.5, 1.5); judge: 1, 0, 1
    # (ranks 2.5, 1, 2.5): centred (1, -.5, -.5) . (.5, -1, .5) = .75 over 1.5 -> 0.5
    assert trust["rho"] == "+0.50" and trust["cells"] == 3
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert 'id="trust"' in page


def test_a_tiny_model_judges_and_rescore_rejudges_from_the_cache(
        tmp_path: Path, hf_model_dir: Path, capsys) -> None:
    run_dir = make_run(tmp_path, judge={"rubric": RUBRIC, "model": str(hf_model_dir),
                                        "max_new_tokens": 4}, shots=(0,))
    done = judge_run(run_dir, device="cpu")
    assert done.asked == 3 * ITEMS and done.new == 3 * ITEMS
    lines = judged.read_judge(run_dir)
    # whatever a random model says is kept and read by rule; unread ones are counted
    assert sum(line["read"] is None for line in lines) == done.unparsed
    assert all(isinstance(line["reply"], str) for line in lines)
    # rescore re-judges without the generating model: every answer is in judge.jsonl
    assert main(["rescore", str(run_dir), "--task", str(tmp_path / "task.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"{3 * ITEMS} questions (0 asked now" in out
