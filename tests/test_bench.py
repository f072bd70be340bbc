"""harness bench: both ways run, and the figures the README quotes are all there."""

from __future__ import annotations

import json

from harness import cli
from harness.tools.bench import run_bench

KEYS = {"ratio_overall", "ratio_greedy", "ratio_by_setting", "greedy_identical",
        "greedy_total", "peak_rss_mb", "load_s"}


def test_bench_compares_the_loop_with_the_runner(write_task, hf_model_dir):
    figures = run_bench(
        str(write_task()), str(hf_model_dir), ["greedy", "top_p"], [0, 1], sample=4,
        max_new_tokens=4, device="cpu",
    )
    assert KEYS <= figures.keys()
    assert set(figures["ratio_by_setting"]) == {"greedy", "top_p"}
    assert figures["greedy_total"] == 4
    assert figures["greedy_identical"] == 4  # batched greedy equals one prompt at a time
    greedy = figures["settings"][0]
    assert greedy["harness_tokens"] > 0 and greedy["ratio"] > 0


def test_bench_json_is_the_last_line(write_task, hf_model_dir, capsys):
    code = cli.main(["bench", "--task", str(write_task()), "--model", str(hf_model_dir),
                     "--quick", "--json", "--device", "cpu"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert KEYS <= json.loads(last).keys()
