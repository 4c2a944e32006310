"""Line charts as plain SVG text, for the benchmark's results (`bench.soak`'s plot).

Hand-written because it is one chart type: a plotting library (matplotlib: ~40 MB with numpy)
would be a dependency for ~150 lines. Panels are stacked over one shared x axis; every
series is a `<polyline class="series" data-name=...>` with a `<circle>` per point whose
`<title>` gives the value (a tooltip in a browser); every tick line carries its value in
`data-value`, so the drawing can be read back (tests/bench/test_svgplot.py does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

#: Colours of the series in a panel, in order (colour-blind safe: Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
WIDTH = 760
PANEL_HEIGHT = 170
LEFT, RIGHT, TOP, GAP, BOTTOM = 78, 150, 40, 34, 44


@dataclass(frozen=True)
class Series:
    """One line: `points` are (x, y); a y of None leaves a gap in the line."""

    name: str
    points: Sequence[tuple[float, float | None]]


@dataclass(frozen=True)
class Panel:
    """One chart band with its own y axis (`label`, with the unit) and its lines."""

    label: str
    series: Sequence[Series]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering
    [low, high]: the first at or below `low`, the last at or above `high`."""
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"no ticks for [{low}, {high}]")
    if high == low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < high - 1e-9 * step:
        ticks.append(first + len(ticks) * step)
    return [round(t, 12) for t in ticks]


def _label(value: float) -> str:
    if value != 0 and abs(value) < 0.01:
        return f"{value:.1e}"
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.6g}"


def render(
    panels: Sequence[Panel],
    *,
    title: str,
    x_label: str,
    marker: tuple[float, str] | None = None,
) -> str:
    """The SVG document: `panels` stacked top to bottom over one x axis (`x_label`), the y
    axes from 0 (or below, for negative values) so that growth reads as a proportion, and a
    dashed vertical line at `marker`'s x with its text (e.g. a retention horizon)."""
    xs = [x for panel in panels for s in panel.series for x, y in s.points if y is not None]
    if not xs:
        raise ValueError("nothing to plot")
    x_ticks = nice_ticks(min(0.0, min(xs)), max(xs))
    x_low, x_high = x_ticks[0], x_ticks[-1]
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + len(panels) * (PANEL_HEIGHT + GAP) - GAP + BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_low) / (x_high - x_low) * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for index, panel in enumerate(panels):
        top = TOP + index * (PANEL_HEIGHT + GAP)
        bottom = top + PANEL_HEIGHT
        ys = [y for s in panel.series for _, y in s.points if y is not None]
        y_ticks = nice_ticks(min([0.0, *ys]), max([0.0, *ys]))
        y_low, y_high = y_ticks[0], y_ticks[-1]

        def py(y: float, top: float = top, y_low: float = y_low, y_high: float = y_high) -> float:
            return top + PANEL_HEIGHT - (y - y_low) / (y_high - y_low) * PANEL_HEIGHT

        out.append(f'<g class="panel" data-label={quoteattr(panel.label)}>')
        out.append(
            f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" '
            'fill="none" stroke="#999"/>'
        )
        for tick in y_ticks:
            y = py(tick)
            out.append(
                f'<line class="ytick" data-value="{tick!r}" x1="{LEFT}" x2="{LEFT + plot_w}" '
                f'y1="{y:.2f}" y2="{y:.2f}" stroke="#e5e5e5"/>'
            )
            out.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">{_label(tick)}</text>'
            )
        for tick in x_ticks:
            x = px(tick)
            out.append(
                f'<line class="xtick" data-value="{tick!r}" x1="{x:.2f}" x2="{x:.2f}" '
                f'y1="{top}" y2="{bottom}" stroke="#e5e5e5"/>'
            )
            out.append(
                f'<text x="{x:.2f}" y="{bottom + 15}" text-anchor="middle">{_label(tick)}</text>'
            )
        middle = top + PANEL_HEIGHT / 2
        out.append(
            f'<text x="16" y="{middle:.2f}" text-anchor="middle" '
            f'transform="rotate(-90 16 {middle:.2f})">{escape(panel.label)}</text>'
        )
        if marker is not None and x_low <= marker[0] <= x_high:
            x = px(marker[0])
            out.append(
                f'<line class="marker" data-value="{marker[0]!r}" x1="{x:.2f}" x2="{x:.2f}" '
                f'y1="{top}" y2="{bottom}" stroke="#444" stroke-dasharray="5,4"/>'
            )
            if index == 0:
                out.append(f'<text x="{x + 4:.2f}" y="{top + 13}">{escape(marker[1])}</text>')
        for number, series in enumerate(panel.series):
            colour = PALETTE[number % len(PALETTE)]
            points = [(x, y) for x, y in series.points if y is not None]
            coords = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in points)
            out.append(
                f'<polyline class="series" data-name={quoteattr(series.name)} '
                f'points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            for x, y in points:
                out.append(
                    f'<circle cx="{px(x):.2f}" cy="{py(y):.2f}" r="2.5" fill="{colour}">'
                    f"<title>{escape(series.name)}: {_label(x)}, {_label(y)}</title></circle>"
                )
            legend_y = top + 14 + 16 * number
            out.append(
                f'<line x1="{LEFT + plot_w + 10}" x2="{LEFT + plot_w + 28}" y1="{legend_y - 4}" '
                f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"/>'
            )
            out.append(
                f'<text x="{LEFT + plot_w + 32}" y="{legend_y}">{escape(series.name)}</text>'
            )
        out.append("</g>")
    out.append(
        f'<text x="{LEFT + plot_w / 2:.2f}" y="{height - 10}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
