"""bench.whole_stream_parts: the whole-stream parts' keys counted, against a ledger filled by
hand (each count known beforehand)."""

from __future__ import annotations

from agents.core import Ledger
from agents.core.sketch import QuantileSketch, watch_bin
from bench.whole_stream_parts import DAY_MS, whole_stream_parts


def test_counts_what_each_part_is_keyed_by() -> None:
    ledger = Ledger()
    folded = ledger.folded_figures
    # Three cells over two prices and two watch bins (10.0 twice: one cell counted twice).
    for price, watch in ((19_900, 10.0), (19_900, 10.0), (19_900, 30.0), (59_900, 30.0)):
        folded.fold_order("< 200", price, watch)
    for since_start_ms in (-5, 0, 61_000, 61_500, 7_200_000):
        folded.fold_order_minute(since_start_ms)
    folded.fold_watch("members", [60_000, 90_000, 180_000])
    folded.fold_watch("others", [0])
    ledger.retired_aov_days = {0: [1] * 6, DAY_MS: [2] * 6, 5 * DAY_MS: [3] * 6}
    ledger.retired_order_minutes = {("overall", ""): {0: 1, 3: 2}, ("rooms", "r-1"): {7: 1}}
    ledger.folded_watch = {("overall", ""): QuantileSketch([1.0, 2.0])}
    ledger.first_orders = {("m-1", "u-1"): (0, None), ("m-1", "u-2"): (5, 9)}
    ledger.bought_before[("m-1", "u-3")] = 4

    parts = whole_stream_parts(ledger)

    assert watch_bin(10.0) != watch_bin(30.0)
    assert parts["folded_figures.price_watch cells"] == 3
    assert parts["folded_figures.price_watch prices"] == 2
    assert parts["folded_figures.price_watch watch bins"] == 2
    assert parts["folded_figures.order_minutes keys"] == 4  # -1, 0, 1 and 120
    assert parts["folded_figures.order_minutes max key"] == 120
    assert parts["folded_figures.watch_minute_counts keys"] == 3  # members 1, 3; others 0
    assert parts["retired_aov_days days"] == 3
    assert parts["retired_order_minutes levels"] == 2
    assert parts["retired_order_minutes keys"] == 3
    assert parts["retired_order_minutes max key"] == 7
    assert parts["folded_watch levels"] == 1
    assert parts["first_orders pairs"] == 2
    assert parts["bought_before pairs"] == 1
