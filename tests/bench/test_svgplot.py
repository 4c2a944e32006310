"""`bench.svgplot`: the SVG read back (tick values -> pixels, inverted) gives the plotted data."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from bench.svgplot import Panel, Series, nice_ticks, render

SVG = "{http://www.w3.org/2000/svg}"


def _scale(ticks: list[ET.Element], attribute: str) -> tuple[float, float]:
    """(value per pixel, value at pixel 0) from the first and last tick lines."""
    (v0, p0), (v1, p1) = (
        (float(t.get("data-value", "")), float(t.get(attribute, ""))) for t in (ticks[0], ticks[-1])
    )
    slope = (v1 - v0) / (p1 - p0)
    return slope, v0 - slope * p0


def read_back(svg: str) -> dict[str, Any]:
    """Per panel label, per series name, the (x, y) data its polyline draws; and the marker's
    x value (from its pixel position) per panel."""
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    panels: dict[str, Any] = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "panel":
            continue
        lines = list(group.iter(f"{SVG}line"))
        x_slope, x_zero = _scale([t for t in lines if t.get("class") == "xtick"], "x1")
        y_slope, y_zero = _scale([t for t in lines if t.get("class") == "ytick"], "y1")
        series = {}
        for line in group.iter(f"{SVG}polyline"):
            points = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
            series[line.get("data-name")] = [
                (x_slope * x + x_zero, y_slope * y + y_zero) for x, y in points
            ]
        markers = [
            x_slope * float(t.get("x1", "")) + x_zero for t in lines if t.get("class") == "marker"
        ]
        panels[group.get("data-label", "")] = {"series": series, "markers": markers}
    return panels


def _close(got: list[tuple[float, float]], want: list[tuple[float, float]], span: float) -> bool:
    return len(got) == len(want) and all(
        math.isclose(gx, wx, abs_tol=0.002 * span) and math.isclose(gy, wy, abs_tol=0.002 * span)
        for (gx, gy), (wx, wy) in zip(got, want, strict=True)
    )


def test_each_series_reads_back_as_its_points() -> None:
    """Two panels with their own scales, two series (one with a gap, one negative): each
    polyline, mapped back through its panel's tick values, is its points (to 0.2% of the
    axis), a None leaves the point out, and the marker sits at its x."""
    rss = [(0.0, 110.0), (12.5, 131.0), (40.0, 144.0), (150.0, 208.0)]
    before = [(0.0, 100.0), (12.5, None), (40.0, 150.0), (150.0, 260.0)]
    change = [(0.0, -3.0), (75.0, 2.5), (150.0, 0.0)]
    svg = render(
        [
            Panel("RSS (MB)", [Series("now", rss), Series("before <old>", before)]),
            Panel("change (%)", [Series("now", change)]),
        ],
        title="a & b",
        x_label="days",
        marker=(40.0, "longest horizon"),
    )
    panels = read_back(svg)
    assert set(panels) == {"RSS (MB)", "change (%)"}
    top = panels["RSS (MB)"]["series"]
    assert _close(top["now"], rss, 300)
    assert _close(top["before <old>"], [(x, y) for x, y in before if y is not None], 300)
    assert _close(panels["change (%)"]["series"]["now"], change, 150)
    for panel in panels.values():
        assert len(panel["markers"]) == 1 and math.isclose(panel["markers"][0], 40.0, abs_tol=0.3)


@pytest.mark.parametrize(
    ("low", "high"), [(0, 208.3), (0, 0.0034), (-3, 2.5), (0, 150), (5, 5), (0, 1e6)]
)
def test_ticks_cover_the_range_in_round_steps(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 3 <= len(ticks) <= 8
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    mantissa = steps.pop() / 10 ** math.floor(math.log10(ticks[1] - ticks[0]))
    assert round(mantissa, 6) in (1, 2, 5)


def test_nothing_to_plot_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to plot"):
        render([Panel("y", [Series("s", [(1.0, None)])])], title="t", x_label="x")
