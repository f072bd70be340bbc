"""The loss chart of a fine-tuning run, as a small hand-written SVG.

Two lines and a few ticks do not need a plotting library: ``harness finetune`` and its
tests stay free of matplotlib (which the HTML reports' charts import on first use), the
file is the same bytes for the same losses, and it opens on its own in any browser.
"""

from __future__ import annotations

_W, _H = 560, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 28, 40


def loss_svg(train: list[float], validation: list[float | None], steps: list[float]) -> str:
    """Loss per epoch: validation from epoch 0 (before training), the training mean of
    each epoch at its end, and every step's loss as a faint line beneath them."""
    epochs = max(len(train), 1)
    values = [v for v in [*train, *validation, *steps] if v is not None]
    top = _nice_ceiling(max(values, default=1.0))

    def x(epoch: float) -> float:
        return _LEFT + (_W - _LEFT - _RIGHT) * epoch / epochs

    def y(loss: float) -> float:
        return _TOP + (_H - _TOP - _BOTTOM) * (1 - min(loss, top) / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{_LEFT}" y="18" font-size="14">loss per epoch</text>',
    ]
    for i in range(5):  # horizontal grid lines with their values
        value = top * i / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    every = next(n for n in (1, 2, 5, 10, 20, 50, 100, 10**9) if epochs / n <= 10)
    for epoch in range(0, epochs + 1, every):
        parts.append(
            f'<text x="{x(epoch):.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{epoch}</text>'
        )
    parts.append(
        f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 6}" text-anchor="middle">epoch</text>'
    )
    if steps and train:
        per_epoch = len(steps) / len(train)
        points = [(x((i + 1) / per_epoch), y(v)) for i, v in enumerate(steps)]
        parts.append(_polyline(points, "#9ecae1", 1))
    series = [
        ("train (epoch mean)", "#1f77b4", [(x(e + 1), y(v)) for e, v in enumerate(train)]),
        ("validation", "#d62728",
         [(x(e), y(v)) for e, v in enumerate(validation) if v is not None]),
    ]
    for row, (label, colour, points) in enumerate(series):
        if not points:
            continue
        parts.append(_polyline(points, colour, 2))
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>' for a, b in points]
        ly = _TOP + 8 + 16 * row
        parts.append(
            f'<line x1="{_W - 170}" x2="{_W - 150}" y1="{ly}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2"/><text x="{_W - 144}" y="{ly + 4}">{label}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _polyline(points: list[tuple[float, float]], colour: str, width: int) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{width}"/>'


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    while value < scale:
        scale /= 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * scale:
            return step * scale
    return 10 * scale
