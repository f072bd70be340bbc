"""Charts for the reports: matplotlib figures turned into inline SVG.

The SVG carries no script, no external reference and no fonts (its text is left as
text, for the page's own Korean font stack to draw), and it is the same bytes for the
same numbers, so a report renders identically twice. matplotlib is imported on first
use, with the Agg backend, so that no command but those that write a report pays for it.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]

_STYLE = {
    "svg.fonttype": "none",  # text stays text: small, and drawn with the page's fonts
    "svg.hashsalt": "harness",  # stable ids, so the same numbers give the same page
    "text.parse_math": False,  # a "$" in a setting or model name is a dollar sign
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Noto Sans CJK KR", "Noto Sans KR", "NanumGothic",
                        "Malgun Gothic", "AppleGothic"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
}
_PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4",
            "#6e7781", "#fb8500", "#2da44e"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

# Axis labels of the metrics the charts draw.
LABELS = {
    "accuracy": "accuracy", "f1": "character F1", "exact_match": "exact match",
    "contains": "answer contained", "chrf": "chrF", "bleu": "BLEU", "distinct_1": "distinct-1",
    "distinct_2": "distinct-2", "repetition": "repeated 3-gram rate", "logprob": "mean log-prob",
}


def color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def metric_by_shots(summary: list[Row], metric: str) -> str | None:
    """The main metric against shot count, one line per setting."""
    points = _by_setting(summary, metric)
    if not points:
        return None

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        shots = sorted({k for series in points.values() for k, _ in series})
        for i, (setting, series) in enumerate(points.items()):
            xs, ys = zip(*series, strict=True)
            ax.plot(xs, ys, marker=_MARKERS[i % len(_MARKERS)], color=color(i), label=setting,
                    linewidth=1.6, markersize=5)
        ax.set_xticks(shots, [f"{k}-shot" for k in shots])
        if len(shots) == 1:
            ax.set_xlim(shots[0] - 1, shots[0] + 1)
        ax.set_xlabel("shots")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_title(f"{LABELS.get(metric, metric)} by shot count", loc="left")
        _legend(ax, len(points))

    return _svg(draw, (6.4, 3.6))


def repetition_by_setting(summary: list[Row]) -> str | None:
    """Repeated 3-gram rate and distinct-2 of each setting, a bar per shot count."""
    settings = list(dict.fromkeys(row["setting"] for row in summary))
    shots = sorted({row["shots"] for row in summary})
    if not settings:
        return None
    value = {(row["setting"], row["shots"], m): row.get(m) for row in summary
             for m in ("repetition", "distinct_2")}

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 2, sharey=False)
        width = 0.8 / len(shots)
        for ax, metric in zip(axes, ("repetition", "distinct_2"), strict=True):
            for j, k in enumerate(shots):
                xs = [i + (j - (len(shots) - 1) / 2) * width for i in range(len(settings))]
                ys = [value.get((s, k, metric)) or 0.0 for s in settings]
                ax.bar(xs, ys, width * 0.92, color=color(j), label=f"{k}-shot")
            ax.set_xticks(range(len(settings)), settings, rotation=30 if len(settings) > 3 else 0,
                          ha="right" if len(settings) > 3 else "center")
            ax.set_ylim(0, 1.05)
            ax.set_title(LABELS[metric] + (" (lower: less looping)" if metric == "repetition"
                                           else " (higher: more varied)"), loc="left")
            ax.grid(axis="x", visible=False)
        _legend(axes[1], len(shots))

    return _svg(draw, (9.6, 3.6))


def likelihood_vs_repetition(summary: list[Row]) -> str | None:
    """Mean log-probability against repetition: one point per setting and shot count.

    Greedy and beam search sit high and to the right (likely but looping); sampling low
    and to the left (varied but unlikely).
    """
    points = [row for row in summary
              if row.get("logprob") is not None and row.get("repetition") is not None]
    if not points:
        return None
    settings = list(dict.fromkeys(row["setting"] for row in points))

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for i, setting in enumerate(settings):
            rows = sorted((r for r in points if r["setting"] == setting), key=lambda r: r["shots"])
            xs = [r["repetition"] for r in rows]
            ys = [r["logprob"] for r in rows]
            ax.plot(xs, ys, linestyle=":", linewidth=1, color=color(i), alpha=0.7)
            ax.scatter(xs, ys, color=color(i), marker=_MARKERS[i % len(_MARKERS)], s=30,
                       label=setting, zorder=3)
            for r in rows:
                ax.annotate(f"{r['shots']}", (r["repetition"], r["logprob"]),
                            textcoords="offset points", xytext=(4, 3), fontsize=7,
                            color=color(i))
        ax.set_xlabel("repeated 3-gram rate (numbers: shots)")
        ax.set_ylabel("mean log-prob per token")
        ax.set_title("likely vs varied", loc="left")
        lo, hi = min(r["repetition"] for r in points), max(r["repetition"] for r in points)
        if hi - lo < 0.02:
            ax.set_xlim(lo - 0.05, hi + 0.05)
        _legend(ax, len(settings))

    return _svg(draw, (6.4, 3.6))


def grouped_bars(groups: list[str], series: dict[str, list[float | None]], ylabel: str,
                 title: str) -> str | None:
    """Bars per group (e.g. setting × shots), one bar per series (e.g. run)."""
    if not groups or not series:
        return None

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        width = 0.8 / len(series)
        for j, (name, values) in enumerate(series.items()):
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, [v or 0.0 for v in values], width * 0.92, color=color(j), label=name)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0,
                      ha="right" if len(groups) > 4 else "center")
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.grid(axis="x", visible=False)
        _legend(ax, len(series))

    return _svg(draw, (max(9.0, 0.6 * len(groups) * max(1, len(series) / 2) + 2), 3.2))


# ---------------------------------------------------------------- machinery


def _by_setting(summary: list[Row], metric: str) -> dict[str, list[tuple[int, float]]]:
    points: dict[str, list[tuple[int, float]]] = {}
    for row in summary:
        if row.get(metric) is not None:
            points.setdefault(row["setting"], []).append((row["shots"], row[metric]))
    return {s: sorted(series) for s, series in points.items()}


def _legend(ax: Any, entries: int) -> None:
    if entries > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  handlelength=1.6, borderaxespad=0)


def _svg(draw: Callable[[Any], None], size: tuple[float, float]) -> str:
    """Draw on a fresh figure and return it as an <svg> element for an HTML page."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a glyph no fallback font has
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(buffer.getvalue())


def _inline(svg: str) -> str:
    """Make matplotlib's SVG document an element that sits inside HTML.

    The XML prolog, DOCTYPE, metadata and namespace declarations go (an HTML parser
    knows SVG, and none of them may point away from the page); ids get a prefix unique to
    the chart, so that two charts on one page never share a marker.
    """
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    # Nothing is drawn outside its axes' limits, so clip paths (whose url(#...)
    # references would be the page's only url()) can go.
    svg = re.sub(r"<clipPath .*?</clipPath>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<style .*?</style>\s*", "", svg, flags=re.S)  # the page styles charts
    svg = re.sub(r'\s*clip-path="[^"]*"', "", svg)
    svg = re.sub(r"<defs>\s*</defs>\s*", "", svg)
    prefix = f"c{_fingerprint(svg)}"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"',
                 r'<svg \1role="img"', svg, count=1)  # the page sets the size
    return svg.strip()


def _fingerprint(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
