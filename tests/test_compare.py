"""Tests for harness.reports.compare: runs of one task side by side, deltas and differing items."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from harness import cli
from harness.errors import HarnessError
from harness.reports.compare import compare, deltas, load_runs
from harness.runs.pipeline import execute, new_run_dir, prepare

INFO = {"type": "fake", "device": "cpu", "dtype": "float32", "fingerprint": "0" * 64}
QUERIES = ["시험에", "키우던", "약속을", "고양이가"]


def make_run(path: Path, out: Path, backend, model: str, answers: list[str],
             overrides=None) -> Path:
    """A finished run where item i is answered answers[i] by every setting."""
    plan = prepare(path, overrides)

    def respond(prompt, setting, seed, index):
        query = prompt.rsplit("문장: ", 1)[1]
        return next(a for q, a in zip(QUERIES, answers, strict=True) if query.startswith(q))

    backend.respond = respond
    run_dir = new_run_dir(out, plan.task.spec.name)
    backend.info = {"name": model, **INFO}

    execute(plan, backend, run_dir)
    return run_dir


@pytest.fixture
def two_runs(write_task, tmp_path, fake_backend):
    """Run A right on items 1 and 3; run B (a 'tuned' model) right on items 1 to 3."""
    path = write_task(shots=[0, 1], decoding={"presets": ["greedy", "beam"]})
    a = make_run(path, tmp_path / "reports", fake_backend, "default", ["기쁨", "기쁨", "분노", "?"])
    b = make_run(path, tmp_path / "reports", fake_backend, str(tmp_path / "tuned"),
                 ["기쁨", "슬픔", "분노", "?"])
    return a, b


def page_data(page: str) -> dict:
    found = re.search(r'id="review-data">(.*?)</script>', page, re.DOTALL)
    return json.loads(found.group(1))


def test_deltas_per_setting_and_shots(two_runs) -> None:
    runs = load_runs(list(two_runs))
    keys, columns, table = deltas(runs)
    assert keys == [("greedy", 0), ("greedy", 1), ("beam", 0), ("beam", 1)]
    assert columns[:3] == ["accuracy", "macro_f1", "invalid"] and "n" not in columns
    accuracy = table[("greedy", 0)]["accuracy"]
    assert accuracy["values"] == [0.5, 0.75]
    assert accuracy["lows"][0] <= 0.5 <= accuracy["highs"][0]
    assert accuracy["deltas"] == [pytest.approx(0.25)]
    # B is right on item 2 where A is not, and on no item where A is wrong: one discordant
    # item, McNemar p = 1; not a change anyone should believe
    (change,) = accuracy["changes"]
    assert (change.items, change.test, change.p) == (4, "McNemar", 1.0)
    assert accuracy["marks"] == ["same"] and accuracy["p_holm"] == [1.0]
    assert table[("greedy", 0)]["length"]["marks"] == [""]  # no better direction
    assert [run.label.split(" · ")[0] for run in runs] == ["default", "tuned"]


def test_a_change_on_every_item_is_significant(write_task, tmp_path, fake_backend) -> None:
    rows = [{"text": f"{q} 문장 {i}", "label": label} for i in range(3)
            for q, label in zip(QUERIES, ["기쁨", "슬픔", "분노", "중립"], strict=True)][:10]
    path = write_task(rows=rows, shots=[0], decoding={"presets": ["greedy"]})
    before = make_run(path, tmp_path / "r", fake_backend, "default", ["?"] * 4)
    after = make_run(path, tmp_path / "r", fake_backend, "tuned",
                     ["기쁨", "슬픔", "분노", "중립"])
    _, _, table = deltas(load_runs([before, after]))
    accuracy = table[("greedy", 0)]["accuracy"]
    assert accuracy["values"] == [0.0, 1.0]
    # right on all 10 items after, on none before: McNemar 2/2^10, one comparison per metric
    assert accuracy["changes"][0].p == 2 / 1024 and accuracy["p_holm"] == [2 / 1024]
    assert accuracy["marks"] == ["up"]
    # every answer named no label before, none after: fewer invalid answers is better
    assert table[("greedy", 0)]["invalid"]["deltas"] == [-1.0]
    assert table[("greedy", 0)]["invalid"]["marks"] == ["up"]
    _, _, back = deltas(load_runs([after, before]))
    assert back[("greedy", 0)]["accuracy"]["marks"] == ["down"]
    assert back[("greedy", 0)]["accuracy"]["changes"][0].p == 2 / 1024


def test_compare_writes_a_page_and_a_csv(two_runs, tmp_path) -> None:
    page_path = compare(list(two_runs), tmp_path / "cmp")
    assert page_path == tmp_path / "cmp" / "compare.html"
    page = page_path.read_text(encoding="utf-8")
    assert not re.search(r"https?://|url\(|<link|<script[^>]*\ssrc=", page)
    assert page.count("<script>") == 1
    assert "+0.250" in page and 'class="num delta same"' in page
    assert re.search(r"\+0.250<span class=\"ci\">\[0.00, 0.[57][05]\]<", page)  # its interval
    assert "tuned · " in page and two_runs[0].name in page
    data = page_data(page)
    # only item 2 differs, in each of the 4 setting × shots rows, one column per run
    assert [item["title"] for item in data["items"]] == ["item 2"]
    (item,) = data["items"]
    assert len(item["cells"]) == 8 and {c for _, c, _ in item["cells"]} == {0, 1}
    texts = {(r, c): outs[0]["t"] for r, c, outs in item["cells"]}
    assert texts[(0, 0)] == "기쁨" and texts[(0, 1)] == "슬픔"
    assert data["differ"] == "row" and len(data["cols"]) == 2
    with (tmp_path / "cmp" / "compare.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows
               if (r["setting"], r["shots"], r["metric"]) == ("greedy", "0", "accuracy"))
    assert float(row["B-A"]) == pytest.approx(0.25)
    assert (row["B-A p"], row["B-A p Holm"], row["B-A test"]) == ("1.0", "1.0", "McNemar")
    assert float(row["A low"]) <= 0.5 <= float(row["A high"])


def test_compare_uses_the_items_every_run_has(write_task, tmp_path, fake_backend) -> None:
    from harness.runs.pipeline import Overrides

    path = write_task(shots=[0], decoding={"presets": ["greedy"]})
    a = make_run(path, tmp_path / "r", fake_backend, "default", ["기쁨", "슬픔", "분노", "?"])
    b = make_run(path, tmp_path / "r", fake_backend, "default", ["기쁨", "?", "분노", "중립"],
                 Overrides(limit=2))
    runs = load_runs([a, b])
    _, _, table = deltas(runs)
    assert table[("greedy", 0)]["accuracy"]["values"] == [1.0, 0.5]  # items 1 and 2 only
    assert (runs[0].n_items, runs[1].n_items) == (4, 2)


def test_compare_from_the_command_line(two_runs, tmp_path, capsys) -> None:
    assert cli.main(["compare", *map(str, two_runs)]) == 0
    out = capsys.readouterr().out
    page = Path(out.split("comparison: ")[1].strip())
    assert page.name == "compare.html" and page.parent.name.startswith("compare-tiny-")
    assert page.parent.parent == two_runs[0].parent


def test_compare_refuses_runs_of_different_tasks(two_runs, write_task, tmp_path,
                                                 fake_backend, capsys) -> None:
    other = write_task(name="other.yaml")
    other.write_text(other.read_text(encoding="utf-8").replace("name: tiny", "name: other"),
                     encoding="utf-8")
    c = make_run(other, tmp_path / "other", fake_backend, "default", ["기쁨"] * 4)
    assert cli.main(["compare", str(two_runs[0]), str(c)]) == 2
    err = capsys.readouterr().err
    assert "runs of different tasks" in err and "tiny (classification)" in err
    assert "other (classification)" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "words"), [
    (["A"], "two run folders or more"),
    (["A", "A"], "the same run folder is named twice"),
])
def test_compare_needs_two_different_runs(two_runs, args, words) -> None:
    folders = [two_runs[0] if a == "A" else two_runs[1] for a in args]
    with pytest.raises(HarnessError, match=words):
        load_runs(folders)


def test_runs_whose_model_names_hold_dollar_signs_compare(write_task, tmp_path, fake_backend,
                                                         capsys) -> None:
    path = write_task(shots=[0], decoding={"configs": {"cheap_$1$": {"num_beams": 2}}})
    a = make_run(path, tmp_path / "reports", fake_backend, "model_$A$", ["기쁨"] * 4)
    b = make_run(path, tmp_path / "reports", fake_backend, r"model_$\frac$", ["슬픔"] * 4)
    assert cli.main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8")
    assert "model_$A$" in page and r"model_$\frac$" in page and "cheap_$1$" in page
    assert cli.main(["report", str(a)]) == 0
    assert "cheap_$1$" in (a / "index.html").read_text(encoding="utf-8")
