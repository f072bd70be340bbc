"""The report as a person sees it: opened from the file system in headless Chromium.

Driven by Playwright's Python client against Debian's own Chromium (never a browser
Playwright downloads). Without Chromium or the client the tests skip and say why; under
CI (CI set), where .ci/run installs Chromium, they fail instead.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness.engines.contract import Generation
from harness.reports import report
from harness.runs.pipeline import execute, new_run_dir, prepare

CHROMIUM = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or ""
# What Chromium needs to run headless as root in a container, and to stay off the network.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
]
MODEL_INFO = {"name": "tiny-model", "type": "fake", "device": "cpu", "dtype": "float32",
              "fingerprint": "0" * 64}
XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def _need_browser() -> Any:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is missing (pip install -e '.[test]')"
    if reason is None and not (CHROMIUM and Path(CHROMIUM).exists()):
        reason = "no chromium on PATH (apt-get install chromium fonts-noto-cjk)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Chromium)")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    sync_playwright = _need_browser()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh profile each run
            executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 900}, locale="ko-KR",
        )
        yield context
        context.close()


class Visit:
    """One page opened from disk, with every request, console error and dialog noted."""

    def __init__(self, context: Any, path: Path) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = page = context.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        started = time.perf_counter()
        page.goto(path.as_uri(), wait_until="load")
        self.wall_s = time.perf_counter() - started

    @property
    def network(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:", "about:"))]

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def visible(self, selector: str) -> int:
        return sum(1 for node in self.page.locator(selector).all() if node.is_visible())


def _answers(prompt: str, setting: Any, seed: int | None, index: int) -> Generation:
    """Greedy answers right on items 1 and 3; sampling says the same thing three times."""
    query = prompt.rsplit("문장: ", 1)[1]
    if setting.name == "greedy":
        text = {"시험에": " 기쁨", "키우던": " 슬픔이에요", "약속을": XSS, "고양이가": " 중립"}
        answer = next(a for k, a in text.items() if query.startswith(k))
        return Generation(answer, answer + "\n문장: 다음", 3, -0.4, "stop")
    answer = " 분노" if index < 2 or query.startswith("고양이가") else " 기쁨"
    return Generation(answer, answer, 2, -1.7, "length")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tiny task through the fake backend: greedy and 3-sequence sampling."""
    import yaml

    from tests.conftest import BASE_TASK, EMOTION_ROWS, FakeBackend, write_csv

    folder = tmp_path_factory.mktemp("browser-run")
    write_csv(folder / "data.csv", EMOTION_ROWS)
    spec = {**BASE_TASK, "shots": [0, 1], "seeds": [7],
            "decoding": {"presets": ["greedy", "top_k_top_p_3"], "stop": ["\n"]}}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    plan = prepare(path)
    backend = FakeBackend()
    backend.respond = _answers
    run_dir = new_run_dir(folder / "reports", "tiny")
    backend.info = MODEL_INFO

    execute(plan, backend, run_dir)
    return run_dir


def test_the_report_works_in_a_real_browser(browser, small_run: Path, tmp_path: Path) -> None:
    visit = Visit(browser, small_run / "index.html")
    page = visit.page

    assert visit.network == [], "the report must load nothing from the network"
    assert visit.errors == []
    # the summary table: a row per setting × shots, grouped by shot count, each value
    # with its interval, and the best value marked
    assert page.locator("#summary").is_visible()
    assert visit.count("#summary tbody tr:not(.group)") == 4
    assert page.locator("#summary tr.group").all_inner_texts() == ["0-shot", "1-shot"]
    assert visit.visible("#summary td.best") > 0
    assert visit.visible("#summary td .ci") >= 4 * 3  # accuracy, macro-F1, invalid at least
    # the paired comparisons, the main metric's open
    assert page.locator("#differences").is_visible()
    assert page.locator("table.diffs").first.is_visible()
    # the charts, drawn inline: accuracy and macro-F1 by shots, what each setting answers
    assert visit.visible("figure svg") == 3
    # the confusion matrices, one per setting × shots, with a "no label" column
    assert visit.visible("table.confusion") == 4
    first = page.locator("table.confusion").first
    assert first.locator("caption").inner_text().startswith("greedy · 0-shot")
    assert first.locator("thead th").all_inner_texts()[1:] == ["기쁨", "슬픔", "분노", "중립",
                                                               "no label"]
    assert page.locator("#label-scores").is_visible()
    # Korean outputs side by side; identical samples grouped; the cut tail dimmed
    assert page.get_by_text("슬픔이에요").first.is_visible()
    assert page.locator(".cut", has_text="↵문장: 다음").first.is_visible()
    assert page.locator(".count", has_text="×2").first.is_visible()
    assert page.locator(".count", has_text="×3").first.is_visible()
    assert page.locator("#f-count").inner_text() == "4 of 4 items"
    # an output that is HTML shows as text and runs nothing
    assert page.get_by_text(XSS).first.is_visible()
    assert page.evaluate("window.pwned") is None and visit.dialogs == []
    assert visit.count(".item img") == 0 and visit.count(".item script") == 0
    # the prompt opens on a click
    prompt = page.locator(".item").first.locator("details").first
    prompt.locator("summary").click()
    assert prompt.locator("pre").is_visible()
    assert "감정을 고르세요." in prompt.locator("pre").inner_text()

    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 20_000


def test_the_filters_hide_what_they_should(browser, small_run: Path) -> None:
    visit = Visit(browser, small_run / "index.html")
    page = visit.page
    every = visit.visible(".out")

    page.select_option("#f-mark", "wrong")
    assert visit.visible(".out.right") == 0 and visit.visible(".out.wrong") > 0
    page.select_option("#f-mark", "right")
    assert visit.visible(".out.wrong") == 0 and visit.visible(".out.right") > 0
    page.select_option("#f-mark", "")
    assert visit.visible(".out") == every

    page.select_option("#f-setting", "greedy")
    assert visit.count('tr[data-setting="top_k_top_p_3"]') == 0
    assert visit.visible('tr[data-setting="greedy"]') == 4
    page.select_option("#f-shots", "1")
    assert visit.count('td[data-shots="0"]') == 0 and visit.visible('td[data-shots="1"]') == 4
    page.select_option("#f-setting", "")
    page.select_option("#f-shots", "")

    page.fill("#f-search", "강아지")
    page.wait_for_function("document.getElementById('f-count').textContent.startsWith('1 ')")
    assert page.locator(".item h3").all_inner_texts() == ["item 2"]
    page.fill("#f-search", "")
    page.wait_for_function("document.getElementById('f-count').textContent.startsWith('4 ')")

    # the samples disagree on right/wrong for items 1 and 3 (items 2 and 4: all wrong)
    page.select_option("#f-setting", "top_k_top_p_3")
    page.check("#f-differ")
    assert page.locator(".item h3").all_inner_texts() == ["item 1", "item 3"]
    assert visit.errors == []


def test_the_summary_sorts_by_any_column_within_each_shot_count(browser,
                                                                small_run: Path) -> None:
    visit = Visit(browser, small_run / "index.html")
    page = visit.page
    heads = page.locator("#summary thead th")
    column = heads.all_inner_texts().index("accuracy ↑")

    def values(shots: str) -> list[float]:
        cells = page.locator(f'#summary tbody[data-shots="{shots}"] '
                             f"tr:not(.group) td:nth-child({column + 1})")
        return [float(v) for v in cells.evaluate_all("cells => cells.map(c => c.dataset.v)")]

    heads.nth(column).click()
    assert all(values(k) == sorted(values(k)) for k in ("0", "1"))
    heads.nth(column).click()
    assert all(values(k) == sorted(values(k), reverse=True) for k in ("0", "1"))
    assert heads.nth(column).get_attribute("aria-sort") == "descending"
    # each shot count's heading row stays on top of its rows
    assert page.locator("#summary tbody tr").first.inner_text() == "0-shot"


def test_the_comparison_page_works_in_a_real_browser(browser, small_run: Path,
                                                    tmp_path: Path) -> None:
    from harness.records import load_run, write_run, write_samples
    from harness.reports.compare import compare

    run, records = load_run(small_run)
    other = tmp_path / "tuned"
    other.mkdir()
    changed = [{**r, "output": "기쁨", "correct": 1.0} if r["item"] == 1 else r for r in records]
    write_run(other, {**run, "model": {**run["model"], "name": "tuned"}})
    write_samples(other / "samples.jsonl", changed)
    page_path = compare([small_run, other], tmp_path / "cmp")

    visit = Visit(browser, page_path)
    assert visit.network == [] and visit.errors == []
    assert visit.page.locator("#deltas-table").is_visible()
    # one item of four changed: shown, with its interval, but not significant
    changed = visit.page.locator("#deltas-table td.delta.same").first
    assert changed.is_visible() and "[" in changed.inner_text()
    assert visit.count("#deltas-table td.up") == 0
    assert visit.page.locator(".item h3").all_inner_texts() == ["item 2"]
    visit.page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)


def _many_records(n_items: int) -> list[dict[str, Any]]:
    """Synthetic records: n_items × 2 shots × (greedy + beam + 3 samples × 2 seeds)."""
    from harness.scoring.metrics import score_sample

    labels = ["기쁨", "슬픔", "분노", "불안", "중립"]
    records = []
    for item in range(n_items):
        reference = labels[item % 5]
        for shots in (0, 3):
            prompt = "다음 문장에 담긴 감정을 고르세요.\n\n" + "문장: 예시 문장입니다.\n감정: 기쁨\n\n" * shots
            prompt += f"문장: {item}번째 문장은 오늘 날씨가 맑아서 기분이 좋다는 이야기입니다.\n감정:"
            rows = [("greedy", None, 0), ("beam", None, 0)]
            rows += [("top_p", seed, i) for seed in (1, 2) for i in range(3)]
            for setting, seed, sequence in rows:
                output = f" {labels[(item + sequence + (seed or 0)) % 5]}"
                record = {
                    "task": "emotion", "item": item, "shots": shots, "setting": setting,
                    "seed": seed, "sequence": sequence, "prompt": prompt, "output": output,
                    "raw_output": output + "\n\n문장:", "references": [reference],
                    "n_tokens": 3, "mean_logprob": -0.5 - sequence / 10, "stop_reason": "stop",
                }
                record.update(score_sample("classification", output, [reference], labels))
                records.append(record)
    return records


def test_five_thousand_outputs_open_quickly(browser, tmp_path: Path) -> None:
    records = _many_records(313)  # 313 items × 2 shots × 8 outputs = 5,008 outputs
    assert len(records) >= 5000
    run = {"task": {"name": "emotion", "kind": "classification", "metrics": ["accuracy"]},
           "model": MODEL_INFO, "started_at": "2026-11-26T08:00:00+09:00", "timings": {}}
    report.write_all(tmp_path, run, records)
    visit = Visit(browser, tmp_path / "index.html")
    page = visit.page
    timing = page.evaluate(
        "(() => { const t = performance.getEntriesByType('navigation')[0];"
        " return {dom: t.domContentLoadedEventEnd, load: t.loadEventEnd}; })()")
    size = (tmp_path / "index.html").stat().st_size
    print(f"\n5,008 outputs: index.html {size / 1e6:.2f} MB, DOMContentLoaded "
          f"{timing['dom']:.0f} ms, load {timing['load']:.0f} ms")
    assert visit.errors == [] and visit.network == []
    assert timing["load"] < 10_000  # generous: a shared 2-core machine; ~1 s is usual
    assert page.locator("#f-count").inner_text() == "313 of 313 items"
    assert visit.count(".item") == 20  # a page at a time
    started = time.perf_counter()
    page.select_option("#f-mark", "wrong")
    page.click("#next")
    assert time.perf_counter() - started < 3
    assert page.locator("#page").inner_text().startswith("page 2 /")


def test_each_labels_log_probability_stays_in_its_cell(browser, tmp_path: Path) -> None:
    """The ranked answer's line of every label with its log-probability wraps in its own
    cell rather than running over the next shot count's."""
    records = [r for r in _many_records(2) if r["setting"] == "greedy"]
    labels = ["기쁨", "슬픔", "분노", "불안", "중립"]
    for r in records:
        r.update(setting="likelihood", label_logprobs={
            f"{label}{'이 아주 길게 적힌 이름' * (i % 2)}": -1.2345 - i for i, label in
            enumerate(labels * 2)})
    run = {"task": {"name": "emotion", "kind": "classification", "metrics": ["accuracy"]},
           "model": MODEL_INFO, "started_at": "2026-11-26T08:00:00+09:00", "timings": {}}
    report.write_all(tmp_path, run, records)
    page = Visit(browser, tmp_path / "index.html").page
    lines = page.locator(".tag.list")
    assert lines.count() == 4
    # text that runs past its box (scrollWidth) would be drawn over the next cell
    overflow = page.evaluate(
        "[...document.querySelectorAll('.tag.list')].map(t => t.scrollWidth - t.clientWidth)")
    assert max(overflow) <= 1, overflow


# ---------------------------------------------------------------- ratings in the page


@pytest.fixture(scope="module")
def rated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chit-chat run of 12 items, three settings at 0 and 1 shots, on the default scale."""
    from tests.judged_runs import make_run

    return make_run(tmp_path_factory.mktemp("rated-run"))


def test_ratings_are_given_kept_exported_and_imported(browser, rated_run: Path,
                                                      tmp_path: Path) -> None:
    import json

    from harness.cli import main
    from tests.judged_runs import ratings_file, write

    visit = Visit(browser, rated_run / "index.html")
    page = visit.page
    assert visit.errors == [] and visit.network == []
    total = 12 * 3 * 2
    assert page.locator("#r-count").inner_text() == f"0 of {total} outputs rated · 0 pairs"
    # export needs a name
    page.click("#r-export")
    assert "type your name first" in page.locator("#r-count").inner_text()
    page.fill("#r-name", "지수")
    # rate three outputs good and one bad, with a note
    rates = page.locator(".rate")
    for i in range(3):
        rates.nth(i).locator('button.pt[data-point="good"]').click()
    rates.nth(3).locator('button.pt[data-point="bad"]').click()
    rates.nth(3).locator("input.note").fill("같은 말을 되풀이함")
    rates.nth(3).locator("input.note").press("Tab")
    assert rates.nth(0).locator('button[data-point="good"]').get_attribute("aria-pressed") == "true"
    assert page.locator("#r-count").inner_text().startswith(f"4 of {total} outputs rated")
    # blind pairs: names hidden until chosen, then shown; a next pair on request
    page.click("#r-pair")
    blind = page.locator("#r-blind")
    assert blind.is_visible()
    assert blind.locator(".pair-side").count() == 2
    assert blind.locator(".who").all_inner_texts() == ["", ""]
    names = ("greedy", "beam", "top_p")
    texts = blind.locator(".pair-side .text").all_inner_texts()
    blind.locator('button[data-choice="A"]').click()
    revealed = blind.locator(".who").all_inner_texts()
    assert all(any(n in who for n in names) and "-shot" in who for who in revealed)
    assert revealed[0] != revealed[1]
    for _ in range(2):
        blind.locator(".next-pair").click()
        assert blind.locator(".who").all_inner_texts() == ["", ""]
        blind.locator('button[data-choice="tie"]').click()
    assert texts[0] != "" and page.locator("#r-count").inner_text().endswith("· 3 pairs")

    # a reload keeps everything (localStorage, per run)
    again = Visit(browser, rated_run / "index.html")
    page = again.page
    assert page.locator("#r-name").input_value() == "지수"
    assert page.locator("#r-count").inner_text() == f"4 of {total} outputs rated · 3 pairs"
    first = page.locator(".rate").nth(0)
    assert first.locator('button[data-point="good"]').get_attribute("aria-pressed") == "true"
    assert page.locator(".rate").nth(3).locator("input.note").input_value() == "같은 말을 되풀이함"
    page.screenshot(path=str(tmp_path / "rating.png"), full_page=False)

    # export one file, and import it (with a second rater's) into the run
    with page.expect_download() as download:
        page.click("#r-export")
    exported = tmp_path / download.value.suggested_filename
    download.value.save_as(exported)
    assert exported.name == "ratings-chat-지수.json"
    data = json.loads(exported.read_text(encoding="utf-8"))
    assert data["rater"] == "지수" and len(data["outputs"]) == 4 and len(data["pairs"]) == 3
    assert any(o["note"] == "같은 말을 되풀이함" for o in data["outputs"])
    rated = {(o["item"], o["setting"], o["shots"]): {"overall": o["scores"]["overall"]}
             for o in data["outputs"]}
    other = write(tmp_path / "other.json", ratings_file(rated_run, "민호", rated))
    assert main(["ratings", str(rated_run), str(exported), str(other)]) == 0

    # the page now shows the human column and the agreement between the two raters
    after = Visit(browser, rated_run / "index.html")
    page = after.page
    assert after.errors == []
    assert "human ↑" in page.locator("#summary thead").inner_text()
    assert page.locator("#raters").inner_text().count("지수") == 1
    agreement = page.locator("#agreement")
    assert agreement.is_visible() and "α = 1.00 over 4 outputs" in agreement.inner_text()
    assert page.locator("#human-pairs").is_visible()
    page.screenshot(path=str(tmp_path / "rated.png"), full_page=True)
