"""The HTML page, read back with an HTML parser: plots present and drawn to the data, escaping."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from agents.core import Ledger, build_report
from agents.core.html import ROOM_COLUMNS, nice_ticks, products_table, render_html, sources_table
from schemas import event_adapter

T0 = 1_721_800_800_000
MIN = 60_000
PLOTS = ("plot-orders-by-minute", "plot-conversion", "plot-watch-price-tier", "plot-watch-members")
HOSTILE = '<img src=x onerror="alert(1)">'
_ids = itertools.count()


class Page(HTMLParser):
    """Every element with its attributes and the ids of the figures it sits in; all text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self.text: list[str] = []
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        figures = tuple(fid for t, fid in self._open if t == "figure" and fid)
        self.elements.append((tag, attributes, figures))
        if tag not in ("meta", "br", "img", "link", "input", "hr"):
            self._open.append((tag, attributes.get("id")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        figures = tuple(fid for t, fid in self._open if t == "figure" and fid)
        self.elements.append((tag, {k: v or "" for k, v in attrs}, figures))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def inside(self, figure_id: str) -> list[tuple[str, dict[str, str]]]:
        return [(tag, attrs) for tag, attrs, figs in self.elements if figure_id in figs]

    def ids(self) -> set[str]:
        return {attrs["id"] for _tag, attrs, _f in self.elements if "id" in attrs}


def ev(type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"h{next(_ids)}", "type": type_, "ts": ts, **fields}


def order(ts: int, user: str, price: int) -> dict[str, Any]:
    item = {"sku_id": "k1", "category": "apparel", "unit_price_cents": price, "quantity": 1}
    return ev(
        "order_paid",
        ts,
        order_id=f"o{next(_ids)}",
        session_id="s1",
        merchant_id="m1",
        user_id=user,
        items=[item],
        amount_cents=price,
    )


def small_report() -> dict[str, Any]:
    """A report of a hand-built stream: 3 interacting viewers (2 buy), 4 others (1 buys)."""
    events = [
        ev("session_started", T0, session_id="s1", room_id="r1", merchant_id="m1"),
        ev("session_ended", T0 + 60 * MIN, session_id="s1"),
        ev("group_joined", T0 - MIN, merchant_id="m1", group_id="g1", user_id="u0"),
    ]
    for i in range(7):
        events.append(ev("viewer_joined", T0 + i * MIN, session_id="s1", user_id=f"u{i}"))
        events.append(ev("viewer_left", T0 + (10 + 5 * i) * MIN, session_id="s1", user_id=f"u{i}"))
    for i in range(3):
        events.append(
            ev("interaction", T0 + 8 * MIN, session_id="s1", user_id=f"u{i}", kind="like")
        )
    events += [
        order(T0 + 2 * MIN, "u0", 150_00),
        order(T0 + 9 * MIN, "u1", 800_00),
        order(T0 + 30 * MIN, "u6", 1200_00),
    ]
    ledger = Ledger()
    for raw in events:
        ledger.apply(event_adapter.validate_python(raw))
    return build_report(ledger)


ROOMS: dict[str, Any] = {
    "room-small": {"entries": 10, "orders": 1, "gmv_cny": 99.0, "conversion": 0.1},
    "room-big": {
        "entries": 5120,
        "unique_viewers": 3011,
        "conversion": 0.0398,
        "orders": 131,
        "gmv_cny": 80123.5,
        "avg_watch_minutes": 12.34,
        "new_figure_share": 0.3,
        "label": "not a number",
        "flagged": True,
        "nested": {"a": 1},
    },
    HOSTILE: {"entries": 1, "gmv_cny": 5.0},
}


def render(report: dict[str, Any]) -> str:
    return render_html(report, generated_at=datetime(2024, 7, 24, 6, 0, tzinfo=UTC))


def test_every_plot_is_an_svg_drawn_from_the_data() -> None:
    report = small_report()
    page = Page(render(report))
    for plot in PLOTS:
        inside = page.inside(plot)
        assert any(tag == "svg" for tag, _a in inside), plot
        assert any(tag == "figcaption" for tag, _a in inside), plot
    bars = [a for tag, a in page.inside("plot-orders-by-minute") if a.get("class") == "bar"]
    # Orders in minutes 2, 9 and 30: one bar each.
    assert len(bars) == 3
    heights = {round(float(a["height"]), 1) for a in bars}
    assert len(heights) == 1  # one order per minute: equal bars
    # Conversion bars: 2/3 and 1/4, so their heights stand in that ratio.
    conversion = [a for tag, a in page.inside("plot-conversion") if a.get("class") == "bar"]
    assert len(conversion) == 2
    ratio = float(conversion[0]["height"]) / float(conversion[1]["height"])
    assert ratio == pytest.approx((2 / 3) / (1 / 4), rel=0.02)
    # One box per price tier with orders (<200, 500-1000, >=1000), none for 200-500.
    boxes = [a for tag, a in page.inside("plot-watch-price-tier") if a.get("class") == "box"]
    assert len(boxes) == 3
    members = page.inside("plot-watch-members")
    assert sum(a.get("class") == "box" for _t, a in members) == 2
    assert sum(a.get("class") == "bar" for _t, a in members) >= 2
    text = " ".join(page.text)
    assert "66.7%" in text and "25.0%" in text and "2.7× as often" in text


def test_claims_table_has_every_claim_and_group_and_the_context() -> None:
    report = small_report()
    report["extended"] = {
        "return_rate": {"observed": 0.08, "unit": "ratio", "n": 40, "verdict": None},
        HOSTILE: {"observed": 1.0, "unit": "x", "n": 3, "verdict": "supported"},
    }
    report["context"] = ["KS (2024): monthly active buyers +22.9%", {"figure": HOSTILE}]
    page = Page(render(report))
    text = " ".join(page.text)
    for claim_id in report["claims"]:
        assert claim_id in text
    assert "Core claims" in text and "Extended claims" in text
    assert "report only" in text and "8.0%" in text
    assert "monthly active buyers +22.9%" in text
    verdicts = [a["class"] for tag, a, _f in page.elements if "verdict" in a.get("class", "")]
    assert len(verdicts) == len(report["claims"]) + 2


def test_text_from_the_data_is_escaped() -> None:
    report = small_report()
    report["operator"] = {"rooms": ROOMS}
    report["claims"][HOSTILE] = {"observed": 0.5, "unit": "ratio", "verdict": '"><script>'}
    report["context"] = [HOSTILE]
    html = render(report)
    page = Page(html)
    tags = {tag for tag, _a, _f in page.elements}
    assert "img" not in tags and "script" not in tags
    assert HOSTILE not in html
    assert HOSTILE in " ".join(page.text)  # shown, as text


def test_no_external_references_and_no_scripts() -> None:
    report = small_report()
    report["operator"] = {"rooms": ROOMS}
    html = render(report)
    page = Page(html)
    for tag, attrs, _f in page.elements:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for name in ("src", "href", "xlink:href", "srcset", "action", "data"):
            value = attrs.get(name, "")
            assert "://" not in value and not value.startswith("//"), (tag, name, value)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    lowered = html.lower()
    assert "<script" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert "url(" not in lowered and "@import" not in lowered


class TableText(HTMLParser):
    """The text of each cell of the table inside `#<figure_id>`, row by row."""

    def __init__(self, text: str, figure_id: str = "table-rooms") -> None:
        super().__init__(convert_charrefs=True)
        self.figure_id = figure_id
        self.rows: list[list[str]] = []
        self._in_rooms = 0
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "figure" and ("id", self.figure_id) in attrs:
            self._in_rooms = 1
        elif self._in_rooms and tag == "tr":
            self.rows.append([])
        elif self._in_rooms and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._in_rooms = 0
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_rooms_table_shows_every_numeric_figure_known_ones_first() -> None:
    report = small_report()
    report["operator"] = {"rooms": ROOMS}
    rows = TableText(render(report)).rows
    header, body = rows[0], rows[1:]
    titles = {key: title for key, title, _kind in ROOM_COLUMNS}
    known = [
        titles[k]
        for k, _t, _f in ROOM_COLUMNS
        if k
        in {"entries", "unique_viewers", "conversion", "orders", "gmv_cny", "avg_watch_minutes"}
    ]
    # Known columns in their fixed order, then the unknown numeric one; no text/bool/nested.
    assert header == ["room", *known, "new figure share"]
    # Rooms by GMV, largest first.
    assert [row[0] for row in body] == ["room-big", "room-small", HOSTILE]
    big = dict(zip(header, body[0], strict=True))
    assert big["Entries"] == "5,120"
    assert big["Conversion"] == "4.0%"
    assert big["GMV (CNY)"] == "80,124"
    assert big["Avg watch (min)"] == "12.3"
    assert big["new figure share"] == "30.0%"
    small = dict(zip(header, body[1], strict=True))
    assert small["GMV (CNY)"] == "99.00" and small["Unique viewers"] == "–"


def test_sources_and_products_tables_put_each_figure_under_its_column() -> None:
    feed = {"entries": 1200, "viewers": 900, "buyers": 45, "conversion": 0.05, "gmv_cny": 12345.6}
    top = {
        "sku_id": "k-9",
        "clicks": 40,
        "clickers": 30,
        "orders": 6,
        "units": 7,
        "gmv_cny": 840.5,
        "click_to_order": 0.2,
    }
    products = {"skus": 3, "top": [top, "not a line"], "other": {"clicks": 2, "units": 1}}
    report = {
        "screen": {
            "sources": {"overall": {"feed": feed, HOSTILE: {"entries": 3}}},
            "products": {"overall": products, "rooms": {"r-1": {"top": [top]}}},
        }
    }
    sources = TableText(sources_table(report), "table-sources").rows
    assert sources == [
        ["Source", "Entries", "Viewers", "Buyers", "Conversion", "GMV (CNY)"],
        ["Feed", "1,200", "900", "45", "5.0%", "12,346"],
        [HOSTILE, "3", "–", "–", "–", "–"],
    ]
    header = ["sku_id", "Clicks", "Clickers", "Orders", "Units", "GMV (CNY)", "Click to order"]
    overall = products_table(report)
    assert TableText(overall, "table-products").rows == [
        header,
        ["k-9", "40", "30", "6", "7", "840.50", "20.0%"],
        ["(other)", "2", "–", "–", "1", "–", "–"],
    ]
    assert "the top 2 by GMV" in overall and "3 products" in overall
    room = products_table(report, "r-1")
    assert TableText(room, "table-products-r-1").rows == [
        header,
        ["k-9", "40", "30", "6", "7", "840.50", "20.0%"],
        ["(other)", "–", "–", "–", "–", "–", "–"],
    ]
    # The products tables scroll sideways; the sources table does not.
    assert '<div class="scroll"><table>' in overall and "scroll" not in sources_table(report)
    assert HOSTILE not in sources_table(report)  # escaped
    assert "No entry sources" in sources_table({}) and "No products" in products_table({})


def test_without_an_operator_section_the_page_says_so() -> None:
    page = render(small_report())
    assert "No per-room figures in this report" in page
    assert TableText(page).rows == []


def test_a_report_without_distributions_still_renders_its_tables() -> None:
    report = small_report()
    del report["distributions"]
    page = Page(render(report))
    assert set(PLOTS) <= page.ids()
    assert not any(tag == "svg" for tag, _a, _f in page.elements)
    assert "orders_after_minute_5" in " ".join(page.text)


@pytest.mark.parametrize(
    ("low", "high"), [(0, 1), (0, 0.234), (0, 55.08), (0, 1340), (-3, 17), (0, 7e-4)]
)
def test_nice_ticks_cover_the_range_in_round_steps(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    assert 3 <= len(ticks) <= 12
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5)


def test_plotted_intervals_are_the_claims_or_say_what_they_are() -> None:
    from pathlib import Path

    from agents.core.claims import INTERVAL_SCOPE
    from streams.tools.analyze import analyze_file

    fixture = Path(__file__).resolve().parents[3] / "fixtures" / "xhs.jsonl"
    report = analyze_file(fixture)
    text = " ".join(Page(render(report)).text)
    claim = report["claims"]["orders_after_minute_5"]
    # The headline shows the claim's (clustered) interval, the one in the claims table.
    shown = f"95% CI {claim['ci_low']:.1%}–{claim['ci_high']:.1%}, clustered"
    assert shown in text
    # The conversion whiskers say they are not the claim's interval.
    assert "not the claim's interval" in text and "clustered by session" in text
    # live_aov's verdict also reads its judged days' intervals: the table says how they came out.
    days = report["claims"]["live_aov"]["detail"]["judged_days"]
    assert f"{len(days)} judged days, each at 98.75%: 0 wholly at or above the bar" in text
    # What the intervals speak for, under the claims table.
    assert INTERVAL_SCOPE in text
    assert report["interval_scope"] == INTERVAL_SCOPE
