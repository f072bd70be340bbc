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
from typing import TYPE_CHECKING, Any

from harness.scoring import metrics

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

Row = dict[str, Any]

_STYLE: dict[RcKeyType, Any] = {
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


def label(metric: str) -> str:
    """A metric's axis label, from the registry."""
    found = metrics.find(metric)
    return found.label if found else metric


def color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def _errors(rows: list[Row], metric: str) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) from the rows' 95% interval columns; none
    where a row has no interval, and None when no row has one."""
    low, high = f"{metric}_low", f"{metric}_high"
    known = [row.get(low) is not None and row.get(high) is not None and row.get(metric)
             is not None for row in rows]
    if not any(known):
        return None
    return [[max(0.0, row[metric] - row[low]) if ok else 0.0
             for row, ok in zip(rows, known, strict=True)],
            [max(0.0, row[high] - row[metric]) if ok else 0.0
             for row, ok in zip(rows, known, strict=True)]]


def metric_by_shots(summary: list[Row], metric: str,
                    baseline: tuple[str, float] | None = None) -> str | None:
    """A metric against shot count, one line per setting, with 95% error bars; a dashed
    line for a baseline (label, value) such as always answering the commonest label."""
    series: dict[str, list[Row]] = {}
    for row in summary:
        if row.get(metric) is not None:
            series.setdefault(row["setting"], []).append(row)
    if not series:
        return None

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        shots = sorted({row["shots"] for rows in series.values() for row in rows})
        spread = 0.08 * (max(shots) - min(shots) or 1) / max(1, len(series) - 1)
        for i, (setting, rows) in enumerate(series.items()):
            rows = sorted(rows, key=lambda row: row["shots"])
            nudge = (i - (len(series) - 1) / 2) * spread  # keep the bars apart
            xs = [row["shots"] + nudge for row in rows]
            ys = [row[metric] for row in rows]
            ax.errorbar(xs, ys, yerr=_errors(rows, metric), marker=_MARKERS[i % len(_MARKERS)],
                        color=color(i), label=setting, linewidth=1.6, markersize=5,
                        elinewidth=1, capsize=2.5, alpha=0.95)
        if baseline is not None:
            ax.axhline(baseline[1], color="#6e7781", linestyle="--", linewidth=1)
            ax.annotate(baseline[0], (1, baseline[1]), xycoords=("axes fraction", "data"),
                        xytext=(-2, 3), textcoords="offset points", ha="right", fontsize=7,
                        color="#57606a")
        ax.set_xticks(shots, [f"{k}-shot" for k in shots])
        if len(shots) == 1:
            ax.set_xlim(shots[0] - 1, shots[0] + 1)
        ax.set_xlabel("shots (bars: 95% intervals)")
        ax.set_ylabel(label(metric))
        ax.set_title(f"{label(metric)} by shot count", loc="left")
        _legend(ax, len(series))

    return _svg(draw, (6.4, 3.6))


def bars_by_setting(summary: list[Row], names: list[str]) -> str | None:
    """One panel per metric: a bar per setting and shot count, with 95% error bars."""
    settings = list(dict.fromkeys(row["setting"] for row in summary))
    shots = sorted({row["shots"] for row in summary})
    if not settings or not names:
        return None
    cell = {(row["setting"], row["shots"]): row for row in summary}

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, len(names), sharey=False, squeeze=False)[0]
        width = 0.8 / len(shots)
        for ax, metric in zip(axes, names, strict=True):
            for j, k in enumerate(shots):
                rows = [cell.get((s, k), {}) for s in settings]
                xs = [i + (j - (len(shots) - 1) / 2) * width for i in range(len(settings))]
                ys = [row.get(metric) or 0.0 for row in rows]
                known = [{**row, metric: row.get(metric) or 0.0} for row in rows]
                ax.bar(xs, ys, width * 0.92, color=color(j), label=f"{k}-shot",
                       yerr=_errors(known, metric), error_kw={"elinewidth": 1, "capsize": 2})
            ax.set_xticks(range(len(settings)), settings, rotation=30 if len(settings) > 3 else 0,
                          ha="right" if len(settings) > 3 else "center")
            ax.set_ylim(0, 1.05)
            found = metrics.find(metric)
            hint = ("" if found is None else
                    " (higher is better)" if found.higher else " (lower is better)")
            ax.set_title(label(metric) + hint, loc="left")
            ax.grid(axis="x", visible=False)
        _legend(axes[-1], len(shots))

    return _svg(draw, (4.8 * len(names), 3.6))


def versus(summary: list[Row], x: str, y: str, title: str) -> str | None:
    """One metric against another: a point per setting and shot count (the registry's
    "versus" charts, such as mean log-probability against repetition, where greedy and
    beam search sit high and to the right, likely but looping, and sampling low and to
    the left, varied but unlikely)."""
    points = [row for row in summary if row.get(x) is not None and row.get(y) is not None]
    if not points:
        return None
    settings = list(dict.fromkeys(row["setting"] for row in points))

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for i, setting in enumerate(settings):
            rows = sorted((r for r in points if r["setting"] == setting), key=lambda r: r["shots"])
            xs = [r[x] for r in rows]
            ys = [r[y] for r in rows]
            ax.plot(xs, ys, linestyle=":", linewidth=1, color=color(i), alpha=0.7)
            ax.scatter(xs, ys, color=color(i), marker=_MARKERS[i % len(_MARKERS)], s=30,
                       label=setting, zorder=3)
            for r in rows:
                ax.annotate(f"{r['shots']}", (r[x], r[y]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7, color=color(i))
        ax.set_xlabel(f"{label(x)} (numbers: shots)")
        ax.set_ylabel(label(y))
        ax.set_title(title, loc="left")
        lo, hi = min(r[x] for r in points), max(r[x] for r in points)
        if hi - lo < 0.02:
            ax.set_xlim(lo - 0.05, hi + 0.05)
        _legend(ax, len(settings))

    return _svg(draw, (6.4, 3.6))


def answer_distribution(groups: list[str], counts: list[list[float]], categories: list[str],
                        ) -> str | None:
    """Stacked bars, one per group (the references first, then each setting × shots): the
    share of its answers that name each category (labels, then no label)."""
    if not groups:
        return None

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        left = [0.0] * len(groups)
        shares = [[c / (sum(row) or 1) for c in row] for row in counts]
        for j, category in enumerate(categories):
            widths = [row[j] for row in shares]
            shade = "#d0d7de" if j == len(categories) - 1 and category == "no label" else color(j)
            ax.barh(range(len(groups)), widths, left=left, color=shade, label=category,
                    height=0.7)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_yticks(range(len(groups)), groups, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of answers")
        ax.set_title("what each setting answers, beside the references", loc="left")
        ax.grid(axis="y", visible=False)
        _legend(ax, len(categories))

    return _svg(draw, (7.2, 0.28 * len(groups) + 1.2))


def grouped_bars(groups: list[str], series: dict[str, list[float | None]], ylabel: str,
                 title: str, errors: dict[str, list[tuple[float | None, float | None]]] | None
                 = None) -> str | None:
    """Bars per group (e.g. setting × shots), one bar per series (e.g. run), with 95%
    error bars where ``errors`` gives (low, high) per bar."""
    if not groups or not series:
        return None

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        width = 0.8 / len(series)
        for j, (name, values) in enumerate(series.items()):
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
            ys = [v or 0.0 for v in values]
            yerr = None
            bounds = (errors or {}).get(name) or []
            known = [(lo, hi) for lo, hi in bounds if lo is not None and hi is not None]
            if bounds and len(known) == len(bounds):
                yerr = [[max(0.0, y - lo) for y, (lo, _) in zip(ys, known, strict=True)],
                        [max(0.0, hi - y) for y, (_, hi) in zip(ys, known, strict=True)]]
            ax.bar(xs, ys, width * 0.92, color=color(j), label=name, yerr=yerr,
                   error_kw={"elinewidth": 1, "capsize": 2})
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0,
                      ha="right" if len(groups) > 4 else "center")
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.grid(axis="x", visible=False)
        _legend(ax, len(series))

    return _svg(draw, (max(9.0, 0.6 * len(groups) * max(1, len(series) / 2) + 2), 3.2))


# ---------------------------------------------------------------- machinery


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
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    # Nothing is drawn outside its axes' limits, so clip paths (whose url(#...)
    # references would be the page's only url()) can go.
    svg = re.sub(r"<clipPath .*?</clipPath>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r"<style .*?</style>\s*", "", svg, flags=re.DOTALL)  # the page styles charts
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
