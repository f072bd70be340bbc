"""People's ratings: the task's scale, the exported file checked against its run, merged
by rater, and the summary's human columns, pairs and agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.errors import HarnessError
from harness.records import load_run
from harness.reports.judgement import gather, panels
from harness.reports.report import summary_of
from harness.runs.rating import import_ratings
from harness.scoring.ratings import Scale
from harness.tasks.spec import RatingSpec
from tests.judged_runs import ITEMS, SETTINGS, make_run, ratings_file, write

CRITERIA = {"scale": [1, 2, 3, 4, 5], "criteria": ["자연스러움", "관련성"]}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("graded"), rating=CRITERIA, shots=(0,))


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    return make_run(tmp_path / "plain", shots=(0,))


def test_a_task_declares_its_scale_and_criteria() -> None:
    spec = RatingSpec.model_validate(CRITERIA)
    assert spec.scale == ["1", "2", "3", "4", "5"] and spec.criteria == ["자연스러움", "관련성"]
    assert RatingSpec().scale == ["bad", "good"] and RatingSpec().criteria == []
    for wrong in ({"scale": ["good"]}, {"scale": ["a", "a"]}, {"criteria": ["x", "x"]},
                  {"scale": ["a", "b"], "colour": "red"}):
        with pytest.raises(ValueError):
            RatingSpec.model_validate(wrong)


def test_a_mistyped_rating_key_is_one_line_naming_the_field(write_yaml) -> None:
    from harness.tasks.spec import load_task

    path = write_yaml('name: t\nkind: generation\ndata: [{q: "안녕"}]\nprompt: {query: "{{ q }}"}\n'
                      'rating: {scale: [1, 2, 3], critera: [관련성]}\n')
    with pytest.raises(HarnessError, match=r"rating.critera: unknown key 'critera'; did you "
                                           r"mean 'criteria'\?"):
        load_task(path)


def test_points_score_as_numbers_or_as_their_place() -> None:
    assert Scale(("1", "2", "3", "4", "5")).value("4") == 4.0
    assert Scale(("bad", "good")).value("good") == 1.0
    assert Scale(("나쁨", "보통", "좋음")).value("보통") == 1.0


def _points(setting_points: dict[str, list[int]]) -> dict:
    """Each setting's 자연스러움 per item (관련성 always 3)."""
    return {(i, s, 0): {"자연스러움": str(p), "관련성": "3"}
            for s, ps in setting_points.items() for i, p in enumerate(ps)}


def test_ratings_are_checked_merged_and_summarised(graded: Path, tmp_path: Path) -> None:
    first = _points({"greedy": [5, 4, 5, 4, 5, 4, 5, 4], "beam": [2, 1, 2, 2, 1, 2, 1, 2],
                     "top_p": [3, 3, 4, 3, 3, 3]})
    second = _points({"greedy": [5, 4, 5, 4, 5, 4, 5, 4], "beam": [1, 1, 2, 2, 2, 1, 1, 2]})
    pairs = [(i, 0, "greedy", "beam", "a") for i in range(8)] + [(8, 0, "beam", "top_p", "tie")]
    files = [write(tmp_path / "a.json", ratings_file(graded, "지수", first, pairs)),
             write(tmp_path / "b.json", ratings_file(graded, "민호", second))]
    done = import_ratings(graded, files)
    assert [r["rater"] for r in done.stored["raters"]] == ["지수", "민호"]
    assert (graded / "ratings.json").exists()

    run, found = load_run(graded)
    gathered = gather(graded, run, found)
    summary = summary_of(run, gathered.records, gathered.extra)
    # the human columns come right after the main metric, with intervals and marks
    assert summary.columns[1:3] == ["human_자연스러움", "human_관련성"]
    rows = {r["setting"]: r for r in summary.rows}
    # greedy: items 0-7, both raters 5, 4, 5, 4, ... -> 4.5; beam far below on the same
    # 8 items: the exact randomization test gives 2/256, Holm over two 0.016: worse
    assert rows["greedy"]["human_자연스러움"] == pytest.approx(4.5)
    assert rows["greedy"]["human_자연스러움_mark"] == "best"
    assert rows["beam"]["human_자연스러움_mark"] == "worse"
    assert rows["greedy"]["human_자연스러움_low"] < 4.5 < rows["greedy"]["human_자연스러움_high"]
    assert rows["top_p"]["human_관련성"] == 3.0
    shown = panels(gathered, summary)
    # alpha over the 16 outputs rated by both raters (greedy and beam, items 0-7)
    alphas = {a["criterion"]: a for a in shown["alphas"]}
    assert alphas["자연스러움"]["units"] == 16 and float(alphas["자연스러움"]["alpha"]) > 0.8
    assert alphas["관련성"]["alpha"] == "–"  # every rating the same: nothing to agree on
    arms = {a["arm"]: a for a in shown["pairs"]["arms"]}
    assert arms["greedy · 0-shot"]["wins"] == "8" and arms["beam · 0-shot"]["games"] == 9
    h2h = {(h["a"], h["b"]): h for h in shown["pairs"]["h2h"]}
    assert h2h[("beam · 0-shot", "greedy · 0-shot")]["b_wins"] == 8

    # the page carries the human columns and the agreement
    page = (graded / "index.html").read_text(encoding="utf-8")
    assert "human: 자연스러움" in page and 'id="agreement"' in page
    # the Python API: one row per rater, output and criterion
    frame = harness.load(graded).ratings
    assert len(frame) == (22 + 16) * 2
    assert set(frame["rater"]) == {"지수", "민호"}
    assert frame[frame["criterion"] == "자연스러움"]["value"].max() == 5.0

    # a rater's newer file replaces their older one; the other rater stays
    again = write(tmp_path / "a2.json", ratings_file(graded, "지수", _points({"top_p": [1]})))
    import_ratings(graded, [again])
    frame = harness.load(graded).ratings
    assert len(frame[frame["rater"] == "지수"]) == 2 and len(frame[frame["rater"] == "민호"]) == 32


@pytest.mark.parametrize("change, message", [
    ({"run": "chat/2020-01-01T00:00:00/000000000000"}, "these ratings are of run"),
    ({"scale": ["bad", "good"]}, "rated on the scale"),
    ({"rater": " "}, "no rater's name"),
    ({"harness_ratings": 7}, "not a ratings file"),
])
def test_a_file_of_another_run_or_scale_is_refused(graded: Path, tmp_path: Path, change,
                                                   message: str) -> None:
    path = write(tmp_path / "x.json", {**ratings_file(graded, "지수", {}), **change})
    with pytest.raises(HarnessError, match=message):
        import_ratings(graded, [path])


def test_an_output_the_run_does_not_have_is_refused(graded: Path, tmp_path: Path) -> None:
    data = ratings_file(graded, "지수", _points({"greedy": [5]}))
    bad = [{**data["outputs"][0], "item": ITEMS + 3},
           {**data["outputs"][0], "output": "다른 답"},
           {**data["outputs"][0], "scores": {"자연스러움": "6"}},
           {**data["outputs"][0], "scores": {"재미": "3"}}]
    for entry, message in zip(bad, ["the run has no output item 15", "rated text differs",
                                     "not a point of the scale", "unknown criterion"]):
        path = write(tmp_path / "x.json", {**data, "outputs": [entry]})
        with pytest.raises(HarnessError, match=message):
            import_ratings(graded, [path])
    same = ratings_file(graded, "지수", {}, [(0, 0, "greedy", "greedy", "a")])
    with pytest.raises(HarnessError, match="same setting and shot count"):
        import_ratings(graded, [write(tmp_path / "p.json", same)])


def test_one_bad_file_keeps_nothing(plain: Path, tmp_path: Path) -> None:
    good = write(tmp_path / "g.json", ratings_file(plain, "a", {(0, "greedy", 0): {"overall": "good"}}))
    bad = write(tmp_path / "b.json", ratings_file(plain, "b", {}, scale=["1", "2"]))
    with pytest.raises(HarnessError):
        import_ratings(plain, [good, bad])
    assert not (plain / "ratings.json").exists()


def test_the_command_imports_and_prints_the_human_column(plain: Path, tmp_path: Path,
                                                         capsys) -> None:
    points = {(i, s, 0): {"overall": "good" if s == "greedy" else "bad"}
              for i in range(ITEMS) for s in SETTINGS}
    path = write(tmp_path / "r.json", ratings_file(plain, "지수", points))
    assert main(["ratings", str(plain), str(path)]) == 0
    out = capsys.readouterr().out
    assert "지수: 36 outputs, 0 pairs" in out
    line = next(x for x in out.splitlines() if x.startswith("greedy"))
    assert "1.000" in line and "*" in line  # every greedy output rated good: best
    # a mistake is one line and exit code 2
    assert main(["ratings", str(plain), str(tmp_path / "missing.json")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    not_json = tmp_path / "n.json"
    not_json.write_text("{", encoding="utf-8")
    assert main(["ratings", str(plain), str(not_json)]) == 2
    assert "not a JSON ratings file" in capsys.readouterr().err


def test_few_ratings_say_how_many_more_items_would_separate(plain: Path, tmp_path: Path) -> None:
    # greedy a little better than beam on 4 items, with spread: not yet significant
    points = {}
    for i, (g, b) in enumerate([("good", "bad"), ("good", "good"), ("bad", "bad"),
                                ("good", "bad")]):
        points[(i, "greedy", 0)] = {"overall": g}
        points[(i, "beam", 0)] = {"overall": b}
    import_ratings(plain, [write(tmp_path / "r.json", ratings_file(plain, "a", points))])
    run, found = load_run(plain)
    gathered = gather(plain, run, found)
    needed = panels(gathered, summary_of(run, gathered.records, gathered.extra))["needed"]
    row = next(n for n in needed if n["setting"] == "beam")
    # differences 1, 0, 0, 1: mean 0.5, sd 0.577 -> ((1.96 + 0.84) * 0.577 / 0.5)^2 = 10.5
    assert row["rated"] == 4 and row["needed"] == 11 and row["more"] == 7
    page = (plain / "index.html").read_text(encoding="utf-8")
    assert 'id="needed"' in page and "about 7" in page


def test_ratings_json_is_readable(plain: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", ratings_file(plain, "지수", {(0, "beam", 0): {"overall": "bad"}}))
    import_ratings(plain, [path])
    stored = json.loads((plain / "ratings.json").read_text(encoding="utf-8"))
    assert stored["scale"] == ["bad", "good"] and stored["criteria"] == ["overall"]
    assert stored["raters"][0]["outputs"][0]["key"] == [0, "beam", 0, None, 0]
