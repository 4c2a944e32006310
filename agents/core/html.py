"""The claims report as one self-contained HTML page: tables and inline SVG plots, no scripts."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from agents.core.claims import CLAIMS_BY_ID, INTERVAL_SCOPE
from agents.core.report import simulated_note

# One palette for the page; the HTML test looks for these colours in the screenshot.
BEFORE_COLOUR: Final = "#9aa9bd"
AFTER_COLOUR: Final = "#2563eb"
MEMBER_COLOUR: Final = "#e8590c"
OTHER_COLOUR: Final = "#2563eb"
TIER_COLOUR: Final = "#7c3aed"
MARKER_COLOUR: Final = "#c2255c"
INK: Final = "#1f2937"
MUTED: Final = "#6b7280"
GRID: Final = "#e5e7eb"

GROUP_TITLES: Final[dict[str, str]] = {
    "claims": "Core claims",
    "extended": "Extended claims",
    "extended_claims": "Extended claims",
}
VERDICTS: Final = frozenset({"supported", "contradicted", "inconclusive"})

# Per-room figures the operator section is known to carry: (key, column title, format).
ROOM_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("entries", "Entries", "int"),
    ("unique_viewers", "Unique viewers", "int"),
    ("viewers_peak", "Peak viewers", "int"),
    # Only a room whose peak merged over partitions is a lower bound has one (the column is
    # left out when no room has).
    ("viewers_peak_ceiling", "Peak at most", "int"),
    ("avg_watch_minutes", "Avg watch (min)", "min"),
    ("buyers", "Buyers", "int"),
    ("conversion", "Conversion", "pct"),
    ("orders", "Orders", "int"),
    ("gmv_cny", "GMV (CNY)", "cny"),
    ("aov_cny", "AOV (CNY)", "cny"),
    ("gpm_cny", "GPM (CNY)", "cny"),
    ("uv_value_cny", "UV value (CNY)", "cny"),
    ("product_clicks", "Product clicks", "int"),
    ("click_through_rate", "Click-through", "pct"),
    ("click_to_order_rate", "Click to order", "pct"),
    ("refunds", "Refunds", "int"),
    ("net_gmv_cny", "Net GMV (CNY)", "cny"),
)

STYLE: Final = f"""
:root {{ color-scheme: light; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: #f6f7f9; color: {INK};
  font: 14px/1.45 "Liberation Sans", "DejaVu Sans", Arial, Helvetica, sans-serif; }}
main {{ max-width: 1240px; margin: 0 auto; padding: 24px 28px 40px; }}
h1 {{ font-size: 26px; margin: 0 0 4px; }}
h2 {{ font-size: 19px; margin: 28px 0 10px; }}
.meta {{ color: {MUTED}; margin: 0; }}
.simulated {{ background: #fff4d6; border: 1px solid #e0b44c; border-radius: 6px;
  padding: 8px 12px; margin: 14px 0 0; font-weight: 600; }}
.card {{ background: #fff; border: 1px solid #e3e6ea; border-radius: 8px; padding: 14px 16px; }}
table {{ border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }}
th, td {{ padding: 6px 9px; border-bottom: 1px solid #eceef1; text-align: right;
  vertical-align: top; }}
th {{ font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: {MUTED};
  font-weight: 600; background: #fafbfc; }}
th:first-child, td:first-child {{ text-align: left; }}
tbody tr:nth-child(even) {{ background: #fbfbfd; }}
td.id {{ font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }}
.what {{ display: block; font-family: "Liberation Sans", "DejaVu Sans", Arial, sans-serif;
  color: {MUTED}; font-size: 12px; max-width: 460px; }}
.verdict {{ display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
  font-weight: 700; color: #fff; background: {MUTED}; }}
.verdict.supported {{ background: #15803d; }}
.verdict.contradicted {{ background: #b91c1c; }}
.verdict.inconclusive {{ background: #b7791f; }}
.plots {{ display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }}
figure {{ margin: 0; background: #fff; border: 1px solid #e3e6ea; border-radius: 8px;
  padding: 12px 14px 10px; }}
figure.wide {{ grid-column: 1 / -1; }}
figure svg {{ display: block; width: 100%; height: auto; }}
figcaption {{ color: #374151; font-size: 13px; margin-top: 6px; }}
figcaption b {{ color: {INK}; }}
.empty {{ color: {MUTED}; font-style: italic; padding: 24px 0; margin: 0; }}
.scroll {{ overflow-x: auto; }}
#table-rooms th, #table-rooms td {{ padding: 4px 5px; font-size: 12px; }}
#table-rooms th {{ font-size: 11px; }}
ul.context {{ margin: 0; padding-left: 20px; color: #374151; }}
"""


def _e(value: object) -> str:
    """Any text from the data, escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def _fmt(value: object, unit: str) -> str:
    """A claim figure in its unit, as the terminal table shows it."""
    if value is None:
        return "–"
    if not _is_number(value):
        return str(value)
    assert isinstance(value, int | float)
    if unit == "ratio":
        return _pct(value)
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "CNY":
        return f"{value:,.2f} CNY"
    if unit == "min":
        return f"{value:.1f} min"
    if unit in ("s", "seconds"):
        return f"{value:.2f} s"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}"


def _fmt_room(value: float, kind: str) -> str:
    if kind == "pct":
        return _pct(value)
    if kind == "cny":
        # Whole yuan once the cents no longer matter to the eye.
        return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:,.2f}"
    if kind == "min":
        return f"{value:.1f}"
    if isinstance(value, int) or (kind == "int" and float(value).is_integer()):
        return f"{int(value):,}"
    return f"{value:,.3f}"


def _room_kind(key: str) -> str:
    """The format of a per-room figure this page does not know, guessed from its name."""
    if key.endswith("_cny"):
        return "cny"
    if key.endswith(("_rate", "_share", "conversion")):
        return "pct"
    if key.endswith("_minutes"):
        return "min"
    return "num"


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round ticks (1, 2, 2.5 or 5 times a power of ten) from `low` up to at least `high`."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low, low + 1]
    raw = (high - low) / max(target, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _tick_label(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


@dataclass(frozen=True, slots=True)
class _Frame:
    """A plotting area inside an SVG: data ranges mapped onto pixel boxes."""

    left: float
    top: float
    width: float
    height: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def x(self, value: float) -> float:
        span = self.x_hi - self.x_lo or 1.0
        return self.left + (value - self.x_lo) / span * self.width

    def y(self, value: float) -> float:
        span = self.y_hi - self.y_lo or 1.0
        return self.top + self.height - (value - self.y_lo) / span * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def right(self) -> float:
        return self.left + self.width


def _svg(width: int, height: int, label: str, body: Iterable[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(label)}" '
        f'font-family="Liberation Sans, DejaVu Sans, Arial, sans-serif" font-size="12" '
        f'fill="{INK}">' + "".join(body) + "</svg>"
    )


def _attrs(attrs: Mapping[str, str | float]) -> str:
    """SVG attributes from keyword names: `font_size` is font-size, `class_` is class."""
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())


def _text(x: float, y: float, content: str, **attrs: str | float) -> str:
    extra = _attrs(attrs)
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{_e(content)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, **attrs: str | float) -> str:
    extra = _attrs(attrs)
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{extra}/>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, **attrs: str | float) -> str:
    extra = _attrs(attrs)
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
        f'fill="{fill}"{extra}/>'
    )


def _y_axis(frame: _Frame, ticks: Sequence[float], label: str, fmt: Callable[[float], str]) -> str:
    parts = []
    for tick in ticks:
        y = frame.y(tick)
        parts.append(_line(frame.left, y, frame.right, y, GRID))
        parts.append(_text(frame.left - 6, y + 4, fmt(tick), text_anchor="end", fill=MUTED))
    parts.append(_line(frame.left, frame.top, frame.left, frame.bottom, "#9ca3af"))
    cy = frame.top + frame.height / 2
    parts.append(
        _text(
            14,
            cy,
            label,
            transform=f"rotate(-90 14 {cy:.1f})",
            text_anchor="middle",
            font_size=12.5,
            fill="#374151",
        )
    )
    return "".join(parts)


def _x_axis(frame: _Frame, ticks: Iterable[tuple[float, str]], label: str) -> str:
    parts = [_line(frame.left, frame.bottom, frame.right, frame.bottom, "#9ca3af")]
    for value, text in ticks:
        x = frame.x(value)
        parts.append(_line(x, frame.bottom, x, frame.bottom + 4, "#9ca3af"))
        parts.append(_text(x, frame.bottom + 17, text, text_anchor="middle", fill=MUTED))
    parts.append(
        _text(
            frame.left + frame.width / 2,
            frame.bottom + 36,
            label,
            text_anchor="middle",
            font_size=12.5,
            fill="#374151",
        )
    )
    return "".join(parts)


def _legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> str:
    parts = []
    for colour, label in entries:
        parts.append(_rect(x, y - 10, 12, 12, colour, rx=2))
        parts.append(_text(x + 17, y, label))
        x += 30 + 6.6 * len(label)
    return "".join(parts)


def _figure(fig_id: str, title: str, body: str, caption: str, *, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure id="{_e(fig_id)}"{cls}><h3 style="margin:0 0 6px;font-size:15px">{_e(title)}'
        f"</h3>{body}<figcaption>{caption}</figcaption></figure>"
    )


def _empty(message: str) -> str:
    return f'<p class="empty">{_e(message)}</p>'


def _num(value: object) -> float | None:
    return float(value) if _is_number(value) else None  # type: ignore[arg-type]


def _claimed(report: Mapping[str, Any], claim_id: str) -> float | None:
    entry = report.get("claims", {}).get(claim_id)
    return _num(entry.get("claimed")) if isinstance(entry, Mapping) else None


# ---------------------------------------------------------------- plots


def plot_orders_by_minute(data: Mapping[str, Any] | None, claimed: float | None) -> str:
    """Bars of session orders per minute since the start, the 5-minute line and its share."""
    title = "Orders by minute since the session started"
    counts = [c for c in (data or {}).get("counts", []) if _is_number(c)]
    total = int((data or {}).get("session_orders") or 0)
    if data is None or not counts or total == 0:
        return _figure(
            "plot-orders-by-minute",
            title,
            _empty("No session orders in this report."),
            "",
            wide=True,
        )
    cap = len(counts)
    overflow = int(data.get("overflow") or 0)
    before = int(data.get("before_start") or 0)
    width, height = 1180, 380
    x_lo = -3.0 if before else 0.0
    frame = _Frame(66, 56, width - 66 - 20, height - 56 - 52, x_lo, cap + 4.0, 0, 1)
    y_max = max([*counts, overflow, before, 1])
    y_ticks = nice_ticks(0, y_max * 1.08)
    frame = _Frame(
        frame.left, frame.top, frame.width, frame.height, x_lo, cap + 4.0, 0, max(y_ticks)
    )
    parts = [_y_axis(frame, y_ticks, "session orders", _tick_label)]
    # The shaded region: at or after the 5-minute line.
    parts.append(
        _rect(frame.x(5), frame.top, frame.right - frame.x(5), frame.height, "#eef3ff", opacity=0.7)
    )
    bar_w = frame.x(1) - frame.x(0)
    gap = 0.12 * bar_w if bar_w > 3 else 0.0

    def bar(start: float, count: int, colour: str) -> None:
        y = frame.y(count)
        parts.append(
            _rect(frame.x(start) + gap / 2, y, bar_w - gap, frame.bottom - y, colour, class_="bar")
        )

    for minute, count in enumerate(counts):
        if count:
            bar(minute, int(count), BEFORE_COLOUR if minute < 5 else AFTER_COLOUR)
    if overflow:
        bar(cap + 2, overflow, AFTER_COLOUR)
    if before:
        bar(-2, before, BEFORE_COLOUR)
    x_ticks = [(t, _tick_label(t)) for t in nice_ticks(0, cap, 12) if t <= cap * 0.96]
    x_ticks.append((cap + 2.5, f"≥{cap}"))
    if before:
        x_ticks.append((-1.5, "<0"))
    parts.append(_x_axis(frame, x_ticks, "minutes since the session started"))
    x5 = frame.x(5)
    parts.append(
        _line(
            x5,
            frame.top - 8,
            x5,
            frame.bottom,
            MARKER_COLOUR,
            stroke_width=2,
            stroke_dasharray="6 4",
        )
    )
    parts.append(_text(x5 + 6, frame.top - 2, "5 min", fill=MARKER_COLOUR, font_weight="bold"))
    share = _num(data.get("share_after_5min"))
    low, high = _num(data.get("ci_low")), _num(data.get("ci_high"))
    after = int(data.get("after_5min") or 0)
    headline = f"{_pct(share)} at ≥ 5 min" if share is not None else "no share"
    if low is not None and high is not None:
        # The claim's interval: orders clustered by session and buyer, as in the claims table.
        headline += f"  (95% CI {_pct(low)}–{_pct(high)}, clustered)"
    parts.append(
        _text(
            frame.right,
            22,
            headline,
            text_anchor="end",
            font_size=16,
            font_weight="bold",
            fill=AFTER_COLOUR,
        )
    )
    detail = f"{after:,} of {total:,} session orders"
    if claimed is not None:
        detail += f"; claimed {_pct(claimed, 0)}"
    parts.append(_text(frame.right, 40, detail, text_anchor="end", fill=MUTED))
    parts.append(
        _legend(
            frame.left, 22, [(BEFORE_COLOUR, "before 5 min"), (AFTER_COLOUR, "at or after 5 min")]
        )
    )
    caption = (
        f"Session orders (paid orders of a session with a start) by whole minutes since the "
        f"session started, one bar per minute up to {cap} min; later orders share the "
        f"<b>≥{cap}</b> bar"
        + (", orders paid before the start the <b>&lt;0</b> bar" if before else "")
        + ". The dashed line is minute 5: the claim is that 75% of orders come after it. "
        "The headline's 95% interval is the claim's (<code>orders_after_minute_5</code>): "
        "Wilson on the effective number of orders, clustered by session and by buyer; none "
        "from a single session."
    )
    return _figure(
        "plot-orders-by-minute", title, _svg(width, height, title, parts), caption, wide=True
    )


def plot_conversion(data: Mapping[str, Any] | None, claimed: float | None) -> str:
    """Conversion of interacting vs other (session, viewer) pairs, with session-clustered
    intervals."""
    title = "Conversion: interacting vs other viewers"
    groups = [
        ("interacting", "interacting viewers", AFTER_COLOUR),
        ("other", "other viewers", BEFORE_COLOUR),
    ]
    rows = [(data or {}).get(key) or {} for key, _l, _c in groups]
    if data is None or not any(int(r.get("pairs") or 0) for r in rows):
        return _figure("plot-conversion", title, _empty("No viewers in this report."), "")
    width, height = 580, 360
    tops = [v for r in rows for v in (_num(r.get("ci_high")), _num(r.get("rate"))) if v is not None]
    y_ticks = nice_ticks(0, max([*tops, 0.01]) * 1.15)
    frame = _Frame(64, 58, width - 64 - 16, height - 58 - 62, 0, 2, 0, max(y_ticks))
    decimals = 0 if y_ticks[1] - y_ticks[0] >= 0.01 else 1
    parts = [_y_axis(frame, y_ticks, "purchase conversion", lambda v: _pct(v, decimals))]
    for i, ((_key, label, colour), row) in enumerate(zip(groups, rows, strict=True)):
        rate = _num(row.get("rate"))
        centre = frame.x(i + 0.5)
        half = frame.width / 2 * 0.28
        pairs, buyers = int(row.get("pairs") or 0), int(row.get("buyers") or 0)
        parts.append(
            _text(centre, frame.bottom + 18, label, text_anchor="middle", font_weight="bold")
        )
        parts.append(
            _text(
                centre,
                frame.bottom + 34,
                f"{buyers:,} buyers / {pairs:,} pairs",
                text_anchor="middle",
                fill=MUTED,
            )
        )
        if rate is None:
            parts.append(
                _text(centre, frame.bottom - 8, "no pairs", text_anchor="middle", fill=MUTED)
            )
            continue
        y = frame.y(rate)
        parts.append(
            _rect(centre - half, y, 2 * half, frame.bottom - y, colour, rx=2, class_="bar")
        )
        low, high = _num(row.get("ci_low")), _num(row.get("ci_high"))
        label_y = y
        if low is not None and high is not None:
            yl, yh = frame.y(low), frame.y(high)
            parts.append(_line(centre, yl, centre, yh, INK, stroke_width=1.6))
            parts.append(_line(centre - 10, yl, centre + 10, yl, INK, stroke_width=1.6))
            parts.append(_line(centre - 10, yh, centre + 10, yh, INK, stroke_width=1.6))
            label_y = yh
        parts.append(
            _text(
                centre + 14,
                label_y + 4 if label_y < y - 8 else y - 6,
                _pct(rate),
                font_weight="bold",
            )
        )
    multiple = _num(data.get("multiple"))
    headline = (
        f"interacting viewers convert {multiple:.1f}× as often" if multiple else "no multiple"
    )
    parts.append(
        _text(frame.left, 22, headline, font_size=16, font_weight="bold", fill=AFTER_COLOUR)
    )
    if claimed is not None:
        parts.append(_text(frame.left, 40, f"claimed {claimed:g}×", fill=MUTED))
    caption = (
        "Share of (session, viewer) pairs with an order, for pairs with a viewer interaction "
        "(comment, like, share, follow, gift, question) and for the others; whiskers are 95% "
        "intervals of each rate (Wilson on the effective number of pairs, clustered by "
        "session), not the claim's interval: the claim's multiple is the first rate over the "
        "second, and its own interval (a bootstrap over sessions) is in the claims table."
    )
    return _figure("plot-conversion", title, _svg(width, height, title, parts), caption)


def _box(
    frame: _Frame,
    summary: Mapping[str, Any],
    at: float,
    half: float,
    colour: str,
    *,
    horizontal: bool,
) -> list[str]:
    """A box plot: box p25-p75, median line, whiskers p10-p90, a diamond at the mean."""
    q = {k: _num(summary.get(k)) for k in ("p10", "p25", "p50", "p75", "p90", "mean")}
    if any(q[k] is None for k in ("p10", "p25", "p50", "p75", "p90")):
        return []
    p10, p25, p50, p75, p90 = (float(q[k] or 0.0) for k in ("p10", "p25", "p50", "p75", "p90"))
    mean = q["mean"]
    parts: list[str] = []
    if horizontal:
        x10, x25, x50, x75, x90 = (frame.x(v) for v in (p10, p25, p50, p75, p90))
        parts.append(_line(x10, at, x25, at, INK, stroke_width=1.4))
        parts.append(_line(x75, at, x90, at, INK, stroke_width=1.4))
        for x in (x10, x90):
            parts.append(_line(x, at - half / 2, x, at + half / 2, INK, stroke_width=1.4))
        parts.append(
            _rect(
                x25,
                at - half,
                x75 - x25,
                2 * half,
                colour,
                fill_opacity=0.35,
                stroke=colour,
                stroke_width=1.5,
                class_="box",
            )
        )
        parts.append(_line(x50, at - half, x50, at + half, colour, stroke_width=3))
        if mean is not None:
            xm = frame.x(mean)
            parts.append(
                f'<path d="M{xm:.1f},{at - 6:.1f} L{xm + 6:.1f},{at:.1f} L{xm:.1f},{at + 6:.1f} '
                f'L{xm - 6:.1f},{at:.1f} Z" fill="#fff" stroke="{INK}" stroke-width="1.4"/>'
            )
    else:
        y10, y25, y50, y75, y90 = (frame.y(v) for v in (p10, p25, p50, p75, p90))
        parts.append(_line(at, y10, at, y25, INK, stroke_width=1.4))
        parts.append(_line(at, y75, at, y90, INK, stroke_width=1.4))
        for y in (y10, y90):
            parts.append(_line(at - half / 2, y, at + half / 2, y, INK, stroke_width=1.4))
        parts.append(
            _rect(
                at - half,
                y75,
                2 * half,
                y25 - y75,
                colour,
                fill_opacity=0.35,
                stroke=colour,
                stroke_width=1.5,
                class_="box",
            )
        )
        parts.append(_line(at - half, y50, at + half, y50, colour, stroke_width=3))
        if mean is not None:
            ym = frame.y(mean)
            parts.append(
                f'<path d="M{at:.1f},{ym - 6:.1f} L{at + 6:.1f},{ym:.1f} L{at:.1f},{ym + 6:.1f} '
                f'L{at - 6:.1f},{ym:.1f} Z" fill="#fff" stroke="{INK}" stroke-width="1.4"/>'
            )
    return parts


BOX_KEY: Final = "box: p25–p75 · line: median · whiskers: p10–p90 · ◇ mean"


def plot_watch_by_membership(data: Mapping[str, Any] | None, claimed: float | None) -> str:
    """Watch time per (session, viewer) of group members vs others: box plots and histograms."""
    title = "Watch time per session: group members vs other viewers"
    groups_data = (data or {}).get("groups") or {}
    series = [
        ("members", "group members", MEMBER_COLOUR),
        ("others", "other viewers", OTHER_COLOUR),
    ]
    summaries = [groups_data.get(key) or {} for key, _l, _c in series]
    bin_minutes = _num((data or {}).get("bin_minutes"))
    if data is None or not bin_minutes or not any(int(s.get("n") or 0) for s in summaries):
        return _figure(
            "plot-watch-members", title, _empty("No viewer joins in this report."), "", wide=True
        )
    bins = max(len((s.get("histogram") or {}).get("counts") or []) for s in summaries)
    span = bins * bin_minutes
    width, height = 1180, 470
    x_hi = span + 1.5 * bin_minutes
    box_frame = _Frame(110, 64, width - 110 - 20, 96, 0, x_hi, 0, 1)
    hist_top = box_frame.bottom + 26
    shares: list[list[float]] = []
    for s in summaries:
        hist = s.get("histogram") or {}
        counts = [float(c) for c in hist.get("counts") or []] + [0.0] * bins
        counts = counts[:bins] + [float(hist.get("overflow") or 0)]
        n = sum(counts)
        shares.append([c / n if n else 0.0 for c in counts])
    y_ticks = nice_ticks(0, max(max(sh) for sh in shares) * 1.1 or 0.01)
    frame = _Frame(110, hist_top, box_frame.width, height - hist_top - 52, 0, x_hi, 0, max(y_ticks))
    parts = [_y_axis(frame, y_ticks, "share of the group's viewers", lambda v: _pct(v, 0))]
    bar_w = frame.x(bin_minutes) - frame.x(0)
    for index, ((_key, _label, colour), share) in enumerate(zip(series, shares, strict=True)):
        for b, value in enumerate(share):
            if not value:
                continue
            start = b * bin_minutes if b < bins else span + 0.5 * bin_minutes
            x = frame.x(start) + bar_w * (0.08 + 0.42 * index)
            y = frame.y(value)
            parts.append(_rect(x, y, bar_w * 0.42, frame.bottom - y, colour, class_="bar"))
    x_ticks = [(t, _tick_label(t)) for t in nice_ticks(0, span, 12) if t <= span]
    x_ticks.append((span + bin_minutes, f"≥{_tick_label(span)}"))
    parts.append(
        _x_axis(
            frame,
            x_ticks,
            f"watch time in the session (minutes; {bin_minutes:g}-minute bins)",
        )
    )
    # Box plots on the same minute axis, above the histogram.
    for t, _label in x_ticks[:-1]:
        parts.append(_line(box_frame.x(t), box_frame.top, box_frame.x(t), box_frame.bottom, GRID))
    for row, ((_key, label, colour), s) in enumerate(zip(series, summaries, strict=True)):
        at = box_frame.top + box_frame.height * (0.27 + 0.5 * row)
        n = int(s.get("n") or 0)
        parts.append(
            _text(
                box_frame.left - 8,
                at - 2,
                label,
                text_anchor="end",
                font_weight="bold",
                fill=colour,
            )
        )
        parts.append(
            _text(box_frame.left - 8, at + 12, f"n = {n:,}", text_anchor="end", fill=MUTED)
        )
        parts.extend(_box(box_frame, s, at, 13, colour, horizontal=True))
    if claimed is not None and claimed > span:
        parts.append(
            _text(
                box_frame.right,
                box_frame.top - 2,
                f"claimed member mean {claimed:g} min: beyond the axis →",
                text_anchor="end",
                fill=MARKER_COLOUR,
                font_weight="bold",
            )
        )
    elif claimed is not None and claimed > 0:
        xc = frame.x(claimed)
        parts.append(
            _line(
                xc,
                box_frame.top - 6,
                xc,
                frame.bottom,
                MARKER_COLOUR,
                stroke_width=2,
                stroke_dasharray="6 4",
            )
        )
        parts.append(
            _text(
                xc + 6,
                box_frame.top - 2,
                f"claimed member mean {claimed:g} min",
                fill=MARKER_COLOUR,
                font_weight="bold",
            )
        )
    means = [
        f"{label} mean {_num(s.get('mean')):.1f} min" if _num(s.get("mean")) is not None else ""
        for (_k, label, _c), s in zip(series, summaries, strict=True)
    ]
    parts.append(
        _legend(box_frame.left, 22, [(c, m) for (_k, _l, c), m in zip(series, means, strict=True)])
    )
    parts.append(_text(box_frame.right, 22, BOX_KEY, text_anchor="end", fill=MUTED))
    caption = (
        "Total watch time of each (session, viewer) pair with a join, for members of the "
        "session's merchant's group at their first join and for the other viewers. Box plots "
        "above; below, the share of each group in each bin (so groups of different size "
        "compare), the last bar holding everything past the histogram's range."
    )
    return _figure(
        "plot-watch-members", title, _svg(width, height, title, parts), caption, wide=True
    )


def plot_watch_by_price_tier(data: Mapping[str, Any] | None, rho: Mapping[str, Any] | None) -> str:
    """Box plots of the buyer's watch time up to the order, per price tier of the order."""
    title = "Watch time before the order, by price tier"
    tiers = (data or {}).get("tiers") or {}
    if data is None or not any(int((s or {}).get("n") or 0) for s in tiers.values()):
        return _figure(
            "plot-watch-price-tier", title, _empty("No session orders in this report."), ""
        )
    width, height = 580, 360
    top = max(
        [
            v
            for s in tiers.values()
            for v in (_num((s or {}).get("p90")), _num((s or {}).get("mean")))
            if v is not None
        ]
        + [1.0]
    )
    y_ticks = nice_ticks(0, top * 1.1)
    frame = _Frame(64, 58, width - 64 - 16, height - 58 - 62, 0, len(tiers), 0, max(y_ticks))
    parts = [_y_axis(frame, y_ticks, "watch time up to the order (minutes)", _tick_label)]
    for i, (tier, summary) in enumerate(tiers.items()):
        centre = frame.x(i + 0.5)
        summary = summary or {}
        n = int(summary.get("n") or 0)
        parts.append(
            _text(
                centre, frame.bottom + 18, f"{tier} CNY", text_anchor="middle", font_weight="bold"
            )
        )
        parts.append(
            _text(centre, frame.bottom + 34, f"n = {n:,}", text_anchor="middle", fill=MUTED)
        )
        if n == 0:
            parts.append(
                _text(centre, frame.bottom - 8, "no orders", text_anchor="middle", fill=MUTED)
            )
            continue
        parts.extend(
            _box(
                frame,
                summary,
                centre,
                frame.width / len(tiers) * 0.22,
                TIER_COLOUR,
                horizontal=False,
            )
        )
        median = _num(summary.get("p50"))
        if median is not None:
            parts.append(
                _text(
                    centre + frame.width / len(tiers) * 0.25,
                    frame.y(median) + 4,
                    f"{median:.1f}",
                    font_size=11,
                    fill=MUTED,
                )
            )
    value = _num((rho or {}).get("observed"))
    if value is not None:
        headline = f"Spearman's ρ (price, watch time) = {value:.2f}"
        low, high = _num((rho or {}).get("ci_low")), _num((rho or {}).get("ci_high"))
        parts.append(
            _text(frame.left, 22, headline, font_size=16, font_weight="bold", fill=TIER_COLOUR)
        )
        if low is not None and high is not None:
            parts.append(
                _text(
                    frame.left, 40, f"95% CI {low:.2f} to {high:.2f}; claimed positive", fill=MUTED
                )
            )
    parts.append(
        _text(
            frame.right, 40, BOX_KEY.split(" · ◇")[0], text_anchor="end", fill=MUTED, font_size=10.5
        )
    )
    caption = (
        "For each session order: the buyer's watch time in that session up to the order, "
        "grouped by the order's highest unit price (CNY). The claim is that dearer goods "
        "come with longer watching. ◇ marks the mean."
    )
    return _figure("plot-watch-price-tier", title, _svg(width, height, title, parts), caption)


# ---------------------------------------------------------------- tables


def _claim_groups(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Every mapping of claim entries in the report: core first, then any other group."""
    groups: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in report.items():
        if not isinstance(value, Mapping) or not value:
            continue
        entries = list(value.values())
        if all(isinstance(e, Mapping) and ("verdict" in e or "observed" in e) for e in entries):
            groups.append((key, value))
    groups.sort(key=lambda kv: kv[0] != "claims")
    return groups


def _judged_days_note(detail: Any) -> str:
    """For `live_aov`: how its judged days' own intervals (which decide "stable") came out."""
    if not isinstance(detail, Mapping) or not isinstance(detail.get("day_intervals"), Mapping):
        return ""
    days = detail["day_intervals"]
    level = detail.get("day_level")
    if not days or not isinstance(level, int | float):
        return ""
    below = len(detail.get("days_below") or [])
    above = len(detail.get("days_at_or_above") or [])
    return (
        f"{len(days)} judged days, each at {float(level):.2%}: {above} wholly at or above the "
        f"bar, {below} wholly below"
    )


def _claims_table(entries: Mapping[str, Any]) -> str:
    rows = []
    for claim_id, entry in entries.items():
        registered = CLAIMS_BY_ID.get(str(claim_id))
        unit = str(entry.get("unit") or (registered.unit if registered else ""))
        what = entry.get("metric") or (registered.metric if registered else "")
        wording = entry.get("wording") or (registered.wording if registered else "")
        low, high = entry.get("ci_low"), entry.get("ci_high")
        ci = (
            f"{_fmt(low, unit)} to {_fmt(high, unit)}"
            if low is not None and high is not None
            else "–"
        )
        days_note = _judged_days_note(entry.get("detail"))
        if days_note:
            ci += f" · {days_note}"
        verdict = entry.get("verdict")
        verdict_text = str(verdict) if verdict else "report only"
        verdict_class = verdict_text if verdict_text in VERDICTS else "other"
        n = entry.get("n")
        rows.append(
            f'<tr><td class="id" title="{_e(wording)}">{_e(claim_id)}'
            f'<span class="what">{_e(what)}</span></td>'
            f"<td>{_e(_fmt(entry.get('claimed'), unit))}</td>"
            f"<td><b>{_e(_fmt(entry.get('observed'), unit))}</b></td>"
            f"<td>{_e(ci)}</td>"
            f"<td>{_e(f'{n:,}' if _is_number(n) else (n or '–'))}</td>"
            f'<td><span class="verdict {verdict_class}">{_e(verdict_text)}</span></td></tr>'
        )
    return (
        '<div class="card scroll"><table><thead><tr><th>claim</th><th>claimed</th>'
        "<th>observed</th><th>95% CI</th><th>n</th><th>verdict</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def plot_claim_by_day(claim_id: str, days: Sequence[Any], unit: str) -> str:
    """A small line of a claim's observed value by CST day with each day's 95% interval as a
    band (docs/metrics.md, "Claims by period"); a day with no figure is skipped."""
    points = [
        (i, _num(d.get("observed")), _num(d.get("ci_low")), _num(d.get("ci_high")))
        for i, d in enumerate(days)
        if isinstance(d, Mapping)
    ]
    values = [o for _i, o, _l, _h in points if o is not None]
    if not values:
        return _empty("No figure by day yet.")
    # The axis follows the observed values (a day with few cases has a very wide interval,
    # which would flatten the line): the band is clipped to it.
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    ticks = nice_ticks(lo - pad, hi + pad, 4)
    frame = _Frame(90, 10, 360, 110, 0, max(len(days) - 1, 1), ticks[0], ticks[-1])

    def clip(value: float) -> float:
        return frame.y(min(max(value, ticks[0]), ticks[-1]))

    band_top = [(frame.x(i), clip(h)) for i, _o, _l, h in points if h is not None]
    band_bottom = [(frame.x(i), clip(low)) for i, _o, low, _h in points if low is not None]
    parts = [_y_axis(frame, ticks, "", lambda v: _fmt(v, unit))]
    if band_top and band_bottom:
        outline = band_top + list(reversed(band_bottom))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in outline)
        parts.append(f'<polygon points="{path}" fill="{TIER_COLOUR}" fill-opacity="0.18"/>')
    line = " ".join(
        f"{frame.x(i):.1f},{frame.y(o):.1f}" for i, o, _l, _h in points if o is not None
    )
    parts.append(
        f'<polyline points="{line}" fill="none" stroke="{TIER_COLOUR}" stroke-width="1.5"/>'
    )
    first, last = days[0].get("period", ""), days[-1].get("period", "")
    parts.append(_x_axis(frame, [(0, str(first)), (len(days) - 1, str(last))], ""))
    return _svg(500, 150, f"{claim_id} by day", parts)


def claims_by_period(report: Mapping[str, Any]) -> str:
    """Per claim: its observed value by CST day (a line with its interval) and a table by
    month and over the rolling horizon; empty when the report has no `periods`."""
    periods = report.get("periods")
    if not isinstance(periods, Mapping) or not isinstance(periods.get("claims"), Mapping):
        return ""
    horizon = periods.get("horizon_days")
    parts = [
        '<h2 id="periods">Claims by period</h2>',
        f'<p class="meta">Each claim computed on the sessions started in the CST day or month '
        f"(and over the last {_e(horizon)} days of event time); frozen once closed. "
        f"{_e(INTERVAL_SCOPE)}</p>",
        '<div class="plots">',
    ]
    for claim_id, figures in periods["claims"].items():
        registered = CLAIMS_BY_ID.get(str(claim_id))
        unit = registered.unit if registered else ""
        rows = [
            (str(entry.get("period")), entry)
            for entry in figures.get("month") or []
            if isinstance(entry, Mapping)
        ]
        rolling = figures.get("rolling")
        if isinstance(rolling, Mapping):
            rows.append((f"last {horizon} days", rolling))
        cells = []
        for name, entry in rows:
            low, high = entry.get("ci_low"), entry.get("ci_high")
            ci = f"{_fmt(low, unit)} to {_fmt(high, unit)}" if low is not None else "–"
            cells.append(
                f"<tr><td>{_e(name)}</td><td><b>{_e(_fmt(entry.get('observed'), unit))}</b></td>"
                f"<td>{_e(ci)}</td><td>{_e(entry.get('verdict') or '–')}</td></tr>"
            )
        table = (
            "<table><thead><tr><th>period</th><th>observed</th><th>95% CI</th><th>verdict</th>"
            "</tr></thead><tbody>" + "".join(cells) + "</tbody></table>"
        )
        chart = plot_claim_by_day(str(claim_id), figures.get("day") or [], unit)
        parts.append(f'<div id="period-{_e(claim_id)}"><h3>{_e(claim_id)}</h3>{chart}{table}</div>')
    parts.append("</div>")
    return "".join(parts)


def _context_list(context: Sequence[Any]) -> str:
    items = []
    for item in context:
        if isinstance(item, Mapping):
            text = "; ".join(f"{k}: {v}" for k, v in item.items())
        else:
            text = str(item)
        items.append(f"<li>{_e(text)}</li>")
    return f'<div class="card"><ul class="context">{"".join(items)}</ul></div>'


def rooms_table(report: Mapping[str, Any]) -> str:
    """The per-room table from `operator.rooms`, or a note saying the report has none."""
    operator = report.get("operator")
    rooms = operator.get("rooms") if isinstance(operator, Mapping) else None
    if not isinstance(rooms, Mapping) or not rooms:
        body = _empty("No per-room figures in this report (it has no operator section).")
        return f'<figure id="table-rooms" class="wide">{body}</figure>'
    numeric: set[str] = set()
    for figures in rooms.values():
        if isinstance(figures, Mapping):
            numeric.update(str(k) for k, v in figures.items() if _is_number(v))
    known = [(k, title, kind) for k, title, kind in ROOM_COLUMNS if k in numeric]
    known_keys = {k for k, _t, _k in known}
    extra = [
        (k, k.replace("_", " "), _room_kind(k)) for k in sorted(numeric) if k not in known_keys
    ]
    columns = known + extra

    def sort_key(item: tuple[Any, Any]) -> tuple[float, str]:
        figures = item[1] if isinstance(item[1], Mapping) else {}
        gmv = _num(figures.get("gmv_cny"))
        return (-(gmv or 0.0), str(item[0]))

    head = "<th>room</th>" + "".join(f"<th>{_e(title)}</th>" for _k, title, _kind in columns)
    rows = []
    for room_id, figures in sorted(rooms.items(), key=sort_key):
        figures = figures if isinstance(figures, Mapping) else {}
        cells = []
        for key, _title, kind in columns:
            value = figures.get(key)
            shown = _fmt_room(value, kind) if _is_number(value) and value is not None else "–"
            cells.append(f"<td>{_e(shown)}</td>")
        rows.append(f'<tr><td class="id">{_e(room_id)}</td>{"".join(cells)}</tr>')
    caption = (
        f"{len(rooms):,} rooms, by GMV. Figures from the report's operator section; "
        "amounts in CNY, rates as shares of the room's viewers or clicks."
        + _bounded_peaks_note(operator if isinstance(operator, Mapping) else {})
    )
    return (
        '<figure id="table-rooms" class="wide"><div class="scroll"><table><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + f"</tbody></table></div><figcaption>{_e(caption)}</figcaption></figure>"
    )


def _bounded_peaks_note(operator: Mapping[str, Any]) -> str:
    """A sentence naming each level whose peak viewers is a lower bound (merged over
    partitions) with its ceiling (`viewers_peak_ceiling`), or "" when every peak is exact."""
    levels: list[tuple[str, Any]] = [("overall", operator.get("overall"))]
    for kind, title in (("merchants", "merchant"), ("rooms", "room")):
        by_id = operator.get(kind)
        if isinstance(by_id, Mapping):
            levels += [(f"{title} {level_id}", by_id[level_id]) for level_id in sorted(by_id)]
    bounded = []
    for name, figures in levels:
        if not isinstance(figures, Mapping):
            continue
        peak, ceiling = _num(figures.get("viewers_peak")), _num(figures.get("viewers_peak_ceiling"))
        if peak is not None and ceiling is not None:
            bounded.append(f"{name} {_fmt_room(peak, 'int')} to {_fmt_room(ceiling, 'int')}")
    if not bounded:
        return ""
    return (
        " Peak viewers merged over partitions is a lower bound, the true peak between it and "
        "its ceiling (minutes a partition dropped from its kept runs), for: "
        + "; ".join(bounded)
        + "."
    )


SOURCE_TITLES: Final[dict[str, str]] = {
    "feed": "Feed",
    "search": "Search",
    "follow": "Follow",
    "short_video": "Short video",
    "group": "Group",
    "note": "Note",
    "other": "Other",
    "unspecified": "Not given",
}


def _cell(value: object, kind: str) -> str:
    shown = _fmt_room(value, kind) if _is_number(value) else "–"  # type: ignore[arg-type]
    return f"<td>{_e(shown)}</td>"


def _figures_table(
    fig_id: str,
    key_title: str,
    columns: Sequence[tuple[str, str, str]],
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    caption: str,
    *,
    scroll: bool = False,
) -> str:
    """A figure with a table of one row per key: the key's cell (HTML), then one cell per
    column `(title, field, kind)` with the row's figure for `field` shown as `kind`."""
    head = f"<th>{_e(key_title)}</th>" + "".join(f"<th>{_e(title)}</th>" for title, _, _ in columns)
    body = "".join(
        f"<tr>{key_cell}"
        + "".join(_cell(figures.get(field), kind) for _, field, kind in columns)
        + "</tr>"
        for key_cell, figures in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if scroll:
        table = f'<div class="scroll">{table}</div>'
    return f'<figure id="{_e(fig_id)}">{table}<figcaption>{_e(caption)}</figcaption></figure>'


def sources_table(report: Mapping[str, Any]) -> str:
    """Where the viewers came from (`screen.sources.overall`), or a note that it is missing."""
    screen = report.get("screen")
    sources = screen.get("sources", {}).get("overall") if isinstance(screen, Mapping) else None
    if not isinstance(sources, Mapping) or not sources:
        body = _empty("No entry sources in this report (a worker older than the live screen?).")
        return f'<figure id="table-sources">{body}</figure>'
    rows = [
        (
            f"<td>{_e(SOURCE_TITLES.get(str(source), source))}</td>",
            figures if isinstance(figures, Mapping) else {},
        )
        for source, figures in sources.items()
    ]
    columns = (
        ("Entries", "entries", "int"),
        ("Viewers", "viewers", "int"),
        ("Buyers", "buyers", "int"),
        ("Conversion", "conversion", "pct"),
        ("GMV (CNY)", "gmv_cny", "cny"),
    )
    caption = (
        "viewer_joined.source: entries, viewers by their first entry in a session, those "
        "viewers' buyers, conversion and GMV (CNY)."
    )
    return _figures_table("table-sources", "Source", columns, rows, caption)


def products_table(report: Mapping[str, Any], room_id: str | None = None) -> str:
    """The top products by GMV of all rooms (`screen.products.overall`) or of one room, or a
    note that they are missing."""
    screen = report.get("screen")
    by_level = screen.get("products", {}) if isinstance(screen, Mapping) else {}
    products = (
        by_level.get("overall") if room_id is None else by_level.get("rooms", {}).get(room_id)
    )
    fig_id = "table-products" if room_id is None else f"table-products-{room_id}"
    if not isinstance(products, Mapping):
        body = _empty("No products table in this report (a worker older than the live screen?).")
        return f'<figure id="{_e(fig_id)}">{body}</figure>'
    lines = [*products.get("top", []), {"sku_id": "(other)", **(products.get("other") or {})}]
    rows = [
        (f'<td class="id">{_e(line.get("sku_id", ""))}</td>', line)
        for line in lines
        if isinstance(line, Mapping)
    ]
    columns = (
        ("Clicks", "clicks", "int"),
        ("Clickers", "clickers", "int"),
        ("Orders", "orders", "int"),
        ("Units", "units", "int"),
        ("GMV (CNY)", "gmv_cny", "cny"),
        ("Click to order", "click_to_order", "pct"),
    )
    caption = (
        f"{int(products.get('skus') or 0):,} products in session orders or clicks, the top "
        f"{len(lines) - 1} by GMV (unit price x quantity of their order lines, CNY); click to "
        "order = clickers who ordered the product / its clickers."
    )
    return _figures_table(fig_id, "sku_id", columns, rows, caption, scroll=True)


# ---------------------------------------------------------------- page


def render_html(
    report: Mapping[str, Any], *, generated_at: datetime | None = None, source: str | None = None
) -> str:
    """One self-contained HTML page of a report: claims tables, plots and the per-room table."""
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    events = report.get("events") or {}
    counts = ", ".join(
        f"{int(events.get(k) or 0):,} {k}" for k in ("valid", "rejected", "duplicates")
    )
    meta = f"Generated {when}" + (f" from {source}" if source else "") + f" · events: {counts}"
    distributions = report.get("distributions") or {}
    claims = report.get("claims") or {}
    sections = [
        "<h1>livepulse · claims report</h1>",
        f'<p class="meta">{_e(meta)}</p>',
    ]
    note = simulated_note(report)
    if note:
        sections.append(f'<p class="simulated" role="note">{_e(note)}</p>')
    for key, entries in _claim_groups(report):
        title = GROUP_TITLES.get(key, key.replace("_", " ").capitalize())
        sections.append(f'<h2 id="{_e("group-" + key)}">{_e(title)}</h2>')
        sections.append(_claims_table(entries))
        if key == "claims":
            sections.append(f'<p class="meta">{_e(INTERVAL_SCOPE)}</p>')
    by_period = claims_by_period(report)
    if by_period:
        sections.append(by_period)
    context = report.get("context")
    if isinstance(context, list | tuple) and context:
        sections.append("<h2>Context (not checkable from the stream)</h2>")
        sections.append(_context_list(context))
    if not distributions:
        sections.append(
            '<p class="empty">This report carries no distributions (a worker older than the '
            "plots?): only the tables are shown.</p>"
        )
    sections.append('<h2 id="plots">What the figures rest on</h2><div class="plots">')
    sections.append(
        plot_orders_by_minute(
            distributions.get("orders_by_minute"), _claimed(report, "orders_after_minute_5")
        )
    )
    sections.append(
        plot_conversion(
            distributions.get("conversion_by_interaction"), _claimed(report, "interaction_uplift")
        )
    )
    sections.append(
        plot_watch_by_price_tier(
            distributions.get("watch_minutes_to_order_by_price_tier"),
            claims.get("price_dwell_association"),
        )
    )
    sections.append(
        plot_watch_by_membership(
            distributions.get("watch_minutes_by_membership"), _claimed(report, "group_member_dwell")
        )
    )
    sections.append("</div>")
    sections.append('<h2 id="rooms">Rooms</h2><div class="plots">')
    sections.append(rooms_table(report))
    sections.append("</div>")
    sections.append('<h2 id="sources-products">Sources and products</h2><div class="plots">')
    sections.append(sources_table(report))
    sections.append(products_table(report))
    sections.append("</div>")
    rooms = (report.get("operator") or {}).get("rooms") or {}
    if isinstance(rooms, Mapping) and rooms:
        sections.append('<h2 id="room-products">Products by room</h2><div class="plots">')
        by_gmv = sorted(rooms, key=lambda r: (-(_num((rooms[r] or {}).get("gmv_cny")) or 0), r))
        for room_id in by_gmv:
            table = products_table(report, str(room_id))
            sections.append(f"<div><h3>Room {_e(room_id)}</h3>{table}</div>")
        sections.append("</div>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>livepulse claims report</title>"
        f"<style>{STYLE}</style></head><body><main>"
        + "\n".join(sections)
        + "</main></body></html>\n"
    )
