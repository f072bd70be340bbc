"""Throughput against a server (``--backend openai``): the harness's runner against a
plain asyncio client sending the very same requests at the same concurrency.

    python -m harness.tools.bench_server --base-url http://127.0.0.1:8000/v1 --concurrency 8

The plain client is what a person would write by hand: httpx's async client, a
semaphore, ``asyncio.gather``, the answers' JSON and nothing else. The harness's figure
is ``runner.run`` whole: requests built from the task, answers parsed into outputs and
records scored. The two take turns, ``--rounds`` times each, so that a server warming up
or a neighbour's load falls on both; tokens are those the server says it generated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from harness.engines.contract import Server
from harness.engines.openai.backend import OpenAIBackend
from harness.runs import pipeline, runner


async def _plain(base_url: str, bodies: list[tuple[str, dict[str, Any]]], concurrency: int,
                 timeout: float) -> tuple[float, int, list[Any]]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", limits=limits,
                                 timeout=timeout) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(path: str, body: dict[str, Any]) -> Any:
            async with gate:
                answer = await client.post(path, json=body)
                answer.raise_for_status()
                return answer.json()

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(path, body) for path, body in bodies))
        seconds = time.perf_counter() - started
    tokens = sum(a["usage"]["completion_tokens"] for a in answers)
    return seconds, tokens, answers


def bench(task: Path, base_url: str, model: str, presets: list[str], shots: list[int] | None,
          limit: int | None, concurrency: int, rounds: int) -> dict[str, Any]:
    plan = pipeline.prepare(task, pipeline.Overrides(presets=presets, shots=shots, limit=limit,
                                                     scoring="generate", chat_on_server=True))
    backend = OpenAIBackend.open(model, server=Server(base_url, concurrency=concurrency))
    try:
        bodies = [backend.request(r.prompt.text, r.setting, r.own_seed, plan.options)
                  for r in plan.requests]
        figures: dict[str, Any] = {"requests": len(bodies), "concurrency": concurrency,
                                   "plain": [], "harness": []}
        asyncio.run(_plain(base_url, bodies[: concurrency * 2], concurrency, 600))  # warm-up
        for _ in range(rounds):
            seconds, tokens, answers = asyncio.run(_plain(base_url, bodies, concurrency, 600))
            figures["plain"].append({"s": round(seconds, 2), "tokens": tokens,
                                     "tok_per_s": round(tokens / seconds, 1)})
            before = backend.usage.get("completion_tokens", 0)
            started = time.perf_counter()
            made = runner.run(plan.task.spec, plan.requests, backend, plan.options)
            seconds = time.perf_counter() - started
            tokens = backend.usage.get("completion_tokens", 0) - before
            figures["harness"].append({"s": round(seconds, 2), "tokens": tokens,
                                       "tok_per_s": round(tokens / seconds, 1),
                                       "outputs": len(made)})
        greedy = [i for i, r in enumerate(plan.requests) if not r.setting.sampled
                  and r.setting.beams == 1]
        texts = {(r["item"], r["shots"]): r["output"] for r in made if r["setting"] == "greedy"}
        figures["greedy_same"] = sum(
            texts.get((plan.requests[i].prompt.item, plan.requests[i].prompt.shots))
            == _first_text(answers[i], plan.options.stop) for i in greedy)
        figures["greedy_compared"] = len(greedy)
        return figures
    finally:
        backend.close()


def _first_text(answer: dict[str, Any], stop: tuple[str, ...]) -> str:
    from harness.engines.contract import cut_at_stop

    return cut_at_stop(answer["choices"][0].get("text", ""), stop)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", type=Path, default=Path("tasks/emotion.yaml"))
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="default")
    parser.add_argument("--presets", default="greedy,top_p")
    parser.add_argument("--shots", default=None, help="0,1,3 (default: the task's)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    figures = bench(args.task, args.base_url, args.model, args.presets.split(","),
                    [int(s) for s in args.shots.split(",")] if args.shots else None,
                    args.limit, args.concurrency, args.rounds)
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
