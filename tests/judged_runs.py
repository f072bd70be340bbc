"""Small generation runs made with the fake backend, for the ratings, judge and browser
tests: a chit-chat task of 12 items answered by three settings at 0 and 1 shots, and
ratings files written as the report exports them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.records import Record, load_run
from harness.runs.pipeline import execute, new_run_dir, prepare
from harness.scoring.ratings import run_id
from tests.conftest import FakeBackend, write_csv

ITEMS = 12
SETTINGS = ("greedy", "beam", "top_p")
RUBRIC = ("다음 대화에서 B의 답이 얼마나 자연스러운지 {{ scale }} 중 하나로 평가하세요.\n"
          "{{ context }}\nB의 답: {{ output }}\n정답 예: {{ reference }}\n점수:")
PAIR_RUBRIC = ("두 답 중 더 자연스러운 것을 A, B, 같음 중 하나로 고르세요.\n{{ context }}\n"
               "A: {{ output_a }}\nB: {{ output_b }}\n답:")


def answer(prompt: str, setting: Any, seed: int | None, index: int) -> str:
    """Each setting says something of its own about the item it was asked."""
    number = prompt.rsplit("질문 ", 1)[1].split("번", 1)[0]
    return {"greedy": f" 응, {number}번은 괜찮아.", "beam": f" {number}번 {number}번 {number}번",
            "top_p": f" 글쎄 {number}?"}[setting.name]


def make_run(folder: Path, rating: dict[str, Any] | None = None,
             judge: dict[str, Any] | None = None, shots: tuple[int, ...] = (0, 1)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"context": f"A: 질문 {i}번이야?", "reply": f"응 {i}번 맞아"} for i in range(ITEMS)]
    write_csv(folder / "data.csv", rows)
    write_csv(folder / "shots.csv", rows[:2])
    task: dict[str, Any] = {
        "name": "chat", "description": "작은 대화", "kind": "generation", "data": "data.csv",
        "fewshot": "shots.csv", "shots": list(shots),
        "prompt": {"example": "{{ context }}\nB: {{ reply }}", "query": "{{ context }}\nB:",
                   "separator": "\n\n"},
        "target": "{{ reply }}",
        "decoding": {"presets": list(SETTINGS), "max_new_tokens": 8},
    }
    if rating is not None:
        task["rating"] = rating
    if judge is not None:
        task["judge"] = judge
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
    backend = FakeBackend()
    backend.respond = answer
    run_dir = new_run_dir(folder / "reports", "chat")
    execute(prepare(path), backend, run_dir)
    return run_dir


def key_of(record: Record) -> dict[str, Any]:
    return {k: record[k] for k in ("item", "setting", "shots", "seed", "sequence")}


def ratings_file(run_dir: Path, rater: str, points: dict[tuple[int, str, int], dict[str, str]],
                 pairs: list[tuple[int, int, str, str, str]] = (), **changes: Any
                 ) -> dict[str, Any]:
    """What the report exports: ``points`` maps (item, setting, shots) to a score per
    criterion; a pair is (item, shots, setting a, setting b, winner)."""
    run, found = load_run(run_dir)
    by = {(r["item"], r["setting"], r["shots"]): r for r in found}
    rating = run["task"].get("rating") or {}
    data = {
        "harness_ratings": 1, "run": run_id(run), "task": "chat", "rater": rater,
        "scale": rating.get("scale") or ["bad", "good"],
        "criteria": rating.get("criteria") or ["overall"],
        "exported_at": "2026-12-06T20:00:00Z",
        "outputs": [{**key_of(by[k]), "output": by[k]["output"], "scores": s, "note": ""}
                    for k, s in points.items()],
        "pairs": [{"item": i, "a": {k: v for k, v in key_of(by[(i, a, shots)]).items()
                                    if k != "item"},
                   "b": {k: v for k, v in key_of(by[(i, b, shots)]).items() if k != "item"},
                   "winner": w, "left": "a"} for i, shots, a, b, w in pairs],
    }
    return {**data, **changes}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
