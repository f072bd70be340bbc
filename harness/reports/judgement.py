"""People's ratings and a judge model's verdicts, gathered for the summary and the page.

``gather`` reads ratings.json and judge.jsonl (records/judged.py) and gives back the
records with their human and judge scores as fields, the metrics that turn those into
summary columns (intervals and marks as every metric has), and the panels the page
shows: raters and their agreement, blind pairs (win rates, Bradley–Terry strengths,
head-to-head tests), the judge's questions and replies, and how far the judge agrees
with the people where both scored the same outputs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from harness.records import Record, judged
from harness.scoring import agreement, judges, pairwise, ratings, stats
from harness.scoring.metrics import Metric
from harness.scoring.ratings import Scale, output_key
from harness.scoring.summary import Summary

SHOWN_REPLIES = 200  # judge questions shown on the page; judge.jsonl has them all


@dataclass
class Gathered:
    records: list[Record]
    extra: list[Metric] = field(default_factory=list)
    scale: Scale = field(default_factory=Scale)
    stored: dict[str, Any] | None = None  # ratings.json
    judge: list[dict[str, Any]] = field(default_factory=list)  # this run's judge lines
    judge_info: dict[str, Any] | None = None  # run.json's judge entry


def gather(run_dir: Path | None, run: dict[str, Any], found: list[Record]) -> Gathered:
    """The records with ``human``/``human_<criterion>`` and ``judge`` fields, and the
    metrics that summarise them; the records as they are when nothing was rated."""
    scale = Scale.of(run)
    out = Gathered(found, scale=scale)
    if run_dir is None:
        return out
    stored = judged.read_ratings(run_dir)
    if stored and (stored.get("scale"), stored.get("criteria")) != (
            list(scale.points), list(scale.criteria)):
        stored = None  # rated on a scale the task no longer has: import them again
    if stored and any(r["outputs"] for r in stored["raters"]):
        out.records = ratings.with_scores(out.records, stored, scale)
        out.extra += scale.metrics()
    out.stored = stored
    info = run.get("judge")
    if info:
        ids = set(info.get("ids", []))
        # read again by today's rules (judge.jsonl keeps the replies themselves)
        lines = [{**line, "read": judges.read(line.get("mode", ""), line.get("reply", ""),
                                              scale.points)}
                 for line in judged.read_judge(run_dir) if line["id"] in ids]
        out.judge, out.judge_info = lines, info
        if info.get("mode") == "pointwise":
            # a point the scale no longer has (the task's scale changed) counts as unread
            point = {tuple(line["key"]): scale.value(line["read"]) for line in lines
                     if line.get("read") in scale.points}
            out.records = [cast(Record, {**r, judges.FIELD: point.get(output_key(r))})
                           for r in out.records]
            out.extra.append(judges.metric(info.get("model", "?"), scale.points))
    return out


# ---------------------------------------------------------------- the page's panels


def panels(gathered: Gathered, summary: Summary) -> dict[str, Any]:
    """What the page's Ratings and Judge sections show (empty where there is nothing)."""
    out: dict[str, Any] = {"raters": [], "alphas": [], "pairs": None, "needed": [],
                           "judge": None, "trust": None}
    stored, scale = gathered.stored, gathered.scale
    if stored:
        out["raters"] = ratings.rater_table(stored)
        out["alphas"] = [{"criterion": c, "alpha": _two(a.value), "units": a.units}
                         for c, a in ratings.agreement_by_criterion(stored, scale).items()]
        out["pairs"] = _pairs_panel(ratings.judgements(stored), ratings.left_chosen(stored),
                                    summary, "left")
        out["needed"] = _items_needed(summary, gathered.records,
                                      [scale.field(c) for c in scale.criteria])
    if gathered.judge_info:
        out["judge"] = _judge_panel(gathered, summary)
        if gathered.judge_info.get("mode") == "pointwise" and stored:
            out["trust"] = _trust(gathered, summary)
    return out


def _pairs_panel(judgements: list[pairwise.Judgement], first: list[bool], summary: Summary,
                 side: str) -> dict[str, Any] | None:
    if not judgements:
        return None
    arms = [ratings.arm(s, k) for k in summary.shots for s in summary.settings
            if (s, k) in summary.cells]
    table = pairwise.arms_table(judgements, arms)
    share = pairwise.first_position_share(first)
    return {
        "n": len(judgements),
        "arms": [{"arm": a.name, "games": a.games, "wins": f"{a.wins:g}",
                  "rate": _two(a.win_rate), "rate_ci": _interval(a.win_low, a.win_high),
                  "strength": _two(a.strength, signed=True),
                  "strength_ci": _interval(a.low, a.high)}
                 for a in sorted(table, key=lambda a: -(a.strength if a.strength is not None
                                                        else -1e9)) if a.games],
        "h2h": [{"a": h.a, "b": h.b, "a_wins": h.a_wins, "b_wins": h.b_wins, "ties": h.ties,
                 "p": _p(h.p), "p_holm": _p(h.p_holm),
                 "verdict": _verdict(h), "needed": h.needed,
                 "more": (max(0, h.needed - h.a_wins - h.b_wins) if h.needed else None)}
                for h in pairwise.head_to_head(judgements)],
        "side": side, "first_share": _two(share), "decisive": len(first),
    }


def _verdict(h: pairwise.HeadToHead) -> str:
    if h.p_holm >= stats.ALPHA:
        return "no real difference"
    return f"{h.a if h.a_wins > h.b_wins else h.b} better"


def _items_needed(summary: Summary, found: list[Record], fields: list[str]
                  ) -> list[dict[str, Any]]:
    """For each human column and shot count: every setting not yet told apart from the
    best, and how many more rated items would (from the per-item differences seen)."""
    out = []
    for name in fields:
        metric = next((m for m in summary.metrics if m.name == name), None)
        if metric is None:
            continue
        means = _item_means(found, name)
        for k in summary.shots:
            family = summary.settings_compared.get((name, k), [])
            for c in family:
                if c.worse or c.better:
                    continue
                a, b = means.get(c.key, {}), means.get(c.against, {})
                both = sorted(set(a) & set(b))
                need = agreement.items_needed([a[i] - b[i] for i in both],
                                              stats.ALPHA / len(family))
                out.append({"column": metric.title, "shots": k, "setting": c.key[0],
                            "best": c.against[0], "rated": len(both), "needed": need,
                            "more": None if need is None else max(1, need - len(both))})
    return out


def _item_means(found: list[Record], name: str) -> dict[tuple[str, int], dict[int, float]]:
    sums: dict[tuple[str, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in found:
        value = cast(dict[str, Any], r).get(name)  # a field beyond the contract's
        if value is not None:
            sums[(r["setting"], r["shots"])][r["item"]].append(value)
    return {key: {i: sum(v) / len(v) for i, v in items.items()} for key, items in sums.items()}


def _judge_panel(gathered: Gathered, summary: Summary) -> dict[str, Any]:
    info, lines = gathered.judge_info or {}, gathered.judge
    read = [line for line in lines if line.get("read") is not None]
    out: dict[str, Any] = {
        "model": info.get("model"), "mode": info.get("mode"), "asked": len(lines),
        "parsed": len(read), "unparsed": len(lines) - len(read),
        "shown": [{"prompt": line["prompt"], "reply": line.get("reply", ""),
                   "read": line.get("read"), "about": _about(line)}
                  for line in lines[:SHOWN_REPLIES]],
        "pairs": None, "consistent": None,
    }
    if info.get("mode") == "pairwise":
        outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}
        verdicts: list[pairwise.Judgement] = []
        first: list[bool] = []
        by_pair: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for line in read:
            a, b = line["a"], line["b"]
            # the reply names the sides as shown; "ba" showed b first, as A
            said = line["read"] if line["order"] == "ab" else {"a": "b", "b": "a"}.get(
                line["read"], "tie")
            verdicts.append((ratings.arm(a[1], a[2]), ratings.arm(b[1], b[2]), outcome[said]))
            if line["read"] != "tie":
                first.append(line["read"] == "a")
            by_pair[(tuple(a), tuple(b))].append(said)
        out["pairs"] = _pairs_panel(verdicts, first, summary, "first")
        both = [v for v in by_pair.values() if len(v) == 2]
        out["consistent"] = {"pairs": len(both),
                             "same": sum(1 for v in both if v[0] == v[1])}
    return out


def _about(line: dict[str, Any]) -> str:
    if line.get("mode") == "pairwise":
        a, b = line["a"], line["b"]
        shown = (a, b) if line["order"] == "ab" else (b, a)
        return (f"item {a[0] + 1} · {a[2]}-shot · A = {shown[0][1]}, B = {shown[1][1]}")
    key = line["key"]
    return f"item {key[0] + 1} · {key[1]} · {key[2]}-shot"


def _trust(gathered: Gathered, summary: Summary) -> dict[str, Any] | None:
    """The judge against the people, on the outputs both scored (the first criterion)."""
    scale = gathered.scale
    criterion = scale.criteria[0]
    judge_point = {tuple(line["key"]): line["read"] for line in gathered.judge
                   if line.get("read") is not None}
    by_rater: dict[str, dict[tuple[Any, ...], str]] = {}
    for rater in (gathered.stored or {}).get("raters", []):
        by_rater[rater["rater"]] = {tuple(o["key"]): o["scores"][criterion]
                                    for o in rater["outputs"] if criterion in o["scores"]}
    shared = {k for points in by_rater.values() for k in points} & set(judge_point)
    if not shared:
        return None
    units = {k: [scale.value(p[k]) for p in by_rater.values() if k in p]
             + [scale.value(judge_point[k])] for k in shared}
    people = {k: v[:-1] for k, v in units.items()}
    kappas = []
    for name, points in by_rater.items():
        keys = sorted(set(points) & set(judge_point), key=str)
        if keys:
            value = agreement.kappa([points[k] for k in keys], [judge_point[k] for k in keys],
                                    order=scale.points)
            kappas.append({"rater": name, "outputs": len(keys), "kappa": _two(value)})
    human_field = scale.field(criterion)
    means = {key: (summary.estimate(key, _metric(summary, human_field))[0],
                   summary.estimate(key, _metric(summary, judges.FIELD))[0])
             for key in summary.cells}
    both = [(h, j) for h, j in means.values() if h is not None and j is not None]
    rho = agreement.rank_correlation([h for h, _ in both], [j for _, j in both])
    with_judge = agreement.alpha(units, "interval")
    alone = agreement.alpha(people, "interval")
    return {"criterion": criterion, "outputs": len(shared),
            "alpha": _two(with_judge.value), "alpha_people": _two(alone.value),
            "people_units": alone.units, "kappas": kappas, "rho": _two(rho, signed=True),
            "cells": len(both)}


def _metric(summary: Summary, name: str) -> Metric:
    return next(m for m in summary.metrics if m.name == name)


def _two(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
