"""Mergeable sketches for the figures that cannot be exact from bounded state (percentiles, a
rank correlation), and the rule that keeps them exact until something is folded into them.

A figure over values some of which are folded (final, their raw values dropped) and some still
live (raw, may still change) is `quantile(q, folded, live)`: with nothing folded it is the
exact percentile of the live values (claims.md's rule, numpy's linear interpolation), the same
number as before any folding; once values are folded, it is read from the folded sketch merged
with the live values. So a stream shorter than the retention horizons gives today's figures.

The quantile sketch is DataDog's DDSketch (`ddsketch`, Masson, Rim and Lee, "DDSketch: a fast
and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019), chosen over
a KLL or a t-digest because its error is stated on the value, which is what an operator reads
(a median of 12.4 minutes is off by at most 1%, whatever the distribution), because merging is
exact (bin counts add: the merge of two partitions' sketches is the sketch of the union,
whichever the order), and because it is pure Python (one small dependency, `six`). KLL's
guarantee is on the rank (Apache DataSketches' `kll_floats_sketch`, ~1.65% normalized rank
error at k=200), which on a long-tailed watch time can be many minutes; t-digest has no
worst-case bound.

**Error bound (quantiles).** With `RELATIVE_ACCURACY` = alpha = 0.01: DDSketch gives every
order statistic x_(k) of the folded and live values together within alpha |x_(k)| (zero
exactly); the figure interpolates the two around h = q (n - 1) as the exact one does, so
|v - exact| <= alpha max(|x_(i)|, |x_(i+1)|), i = floor(h): for values of one sign (watch
times, latencies) within 1% of the exact figure. It holds while the sketch has at most
`BIN_LIMIT` bins (values spanning a ratio of up to gamma^2048 ~ e^41 between
the largest and the smallest non-zero magnitude; beyond that the smallest bins are collapsed).

**Spearman's rho** (`RankTable`): the rank correlation of (price, watch time) pairs from counts
per (price in cents, watch-time bin of the same mapping): prices are ranked exactly (a price is
an integer number of cents, and a catalogue has few distinct ones), watch times by bin, tied
within a bin (average ranks). The table holds at most `limit` cells (`RANK_CELL_LIMIT`, 8,192,
~33 kB pickled): past it, it coarsens, merging watch bins, then price bins (on the same
mapping), two at a time in turn, so its size is bounded whatever the stream's length and
catalogue; under it, it is the 2%-wide grid (the same rho as before the limit).

**Error bound (rho).** `RankTable.bound`, computed from the table: a bin of c pairs replaces c
consecutive exact ranks by their mean, a sum of squares of at most (c^3 - c) / 12 lost; with d
an axis' share of the exact ranks' variance so lost (at most W / (S + W), W those summed, S the
binned ranks' sum of squares), |rho - exact rho| <= sqrt(2 (1 - sqrt(1 - d_x))) +
sqrt(2 (1 - sqrt(1 - d_y))) (~ sqrt(d_x) + sqrt(d_y); d_x = 0 while prices are exact). It is a
worst case (the ranks within every bin ordered as the other axis); measured errors are 15-400
times smaller (docs/metrics.md, "Sketched figures").
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.mapping import LogarithmicMapping

from agents.core.stats import percentile

#: alpha: a sketched quantile is within this relative distance of the exact order statistic.
RELATIVE_ACCURACY: Final[float] = 0.01
#: Most bins per sign: bounds the sketch's size whatever the values (~2 x 2048 floats).
BIN_LIMIT: Final[int] = 2048

_MAPPING: Final[LogarithmicMapping] = LogarithmicMapping(RELATIVE_ACCURACY)


class QuantileSketch:
    """A mergeable quantile sketch (DDSketch, relative accuracy `RELATIVE_ACCURACY`).

    Pickled as plain numbers (bins per key), so a state holding one needs no library class
    admitted by `agents.core.persist`'s unpickler, only this one."""

    __slots__ = ("_sketch",)

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)
        for value in values:
            self._sketch.add(value)

    def add(self, value: float, count: int = 1) -> None:
        """Fold `count` copies of `value` in."""
        self._sketch.add(value, count)

    def add_many(self, values: Iterable[float]) -> None:
        """Fold every value in: the state `add` one value at a time leaves, with each bin's
        count added once (the store's indexing is most of an `add`'s cost)."""
        sketch = self._sketch
        mapping = sketch._mapping
        floor = mapping.min_possible
        by_key: dict[int, int] = {}
        for value in values:
            if value > floor:
                key = int(mapping.key(value))
                by_key[key] = by_key.get(key, 0) + 1
            elif value < -floor:
                sketch._negative_store.add(mapping.key(-value), 1.0)
            else:
                sketch._zero_count += 1.0
            sketch._count += 1.0
            sketch._sum += value
            if value < sketch._min:
                sketch._min = value
            if value > sketch._max:
                sketch._max = value
        for key, count in by_key.items():
            sketch._store.add(key, float(count))

    def merge(self, other: QuantileSketch) -> None:
        """Fold every value of `other` in (exact: bin counts add)."""
        self._sketch.merge(other._sketch)

    def copy(self) -> QuantileSketch:
        twin = QuantileSketch()
        twin.merge(self)
        return twin

    @property
    def count(self) -> int:
        return round(float(self._sketch.count))

    @property
    def sum(self) -> float:
        """The exact sum of the values folded in (kept beside the bins)."""
        return float(self._sketch._sum)

    @property
    def max(self) -> float | None:
        """The exact largest value folded in; None when empty."""
        return float(self._sketch._max) if self.count else None

    def quantile(self, q: float) -> float | None:
        """The value at quantile `q` by claims.md's rule (linear interpolation between the
        order statistics at ranks floor(h) and floor(h) + 1, h = q (n - 1)), each read from the
        sketch (within the module's error bound); None when empty."""
        n = self.count
        if n == 0 or not 0 <= q <= 1:
            return None
        h = (n - 1) * q
        i = math.floor(h)
        fraction = h - i
        # Half a rank in: the store reads the element at floor(rank), safe from float edges.
        low = self._value_at_rank(i + 0.5)
        if fraction == 0 or i + 1 >= n:
            return low
        return low + fraction * (self._value_at_rank(i + 1.5) - low)

    def quantile_adding(
        self, q: float, added: int, count_at_most: Callable[[int], int], most: int
    ) -> float | None:
        """`quantile(q)` of a copy of this sketch with `added` more values added, each a
        non-negative int, known by `count_at_most(x)` (how many of them are <= x) and an
        upper bound `most`: the same number, read at the same ranks from the same bins, with
        no value added (the live screen's levels, agents/core/page.py). None when the copy
        would be empty, or when it could not be read so (`can_add_without_collapse` false).

        The bin of a rank is found by bisection over the keys: a key's count is this sketch's
        bins up to it plus the values <= the largest int of that key (`_largest_int_of_key`)."""
        sketch = self._sketch
        n = self.count + added
        if n == 0 or not 0 <= q <= 1 or not self.can_add_without_collapse(most):
            return None
        store = sketch._store
        cumulative: list[float] = []  # this sketch's positive values up to each key
        running = 0.0
        for count in store.bins if store.count else ():
            running += count
            cumulative.append(running)
        offset = store.offset
        live_zeros = count_at_most(0)
        zeros = round(sketch._zero_count) + live_zeros
        low_key, high_key = _MAPPING.key(1), _MAPPING.key(max(most, 1))
        if store.count:
            low_key, high_key = min(low_key, store.min_key), max(high_key, store.max_key)

        def positives_up_to(key: int) -> float:
            index = key - offset
            folded = cumulative[min(index, len(cumulative) - 1)] if index >= 0 and cumulative else 0
            return folded + count_at_most(_largest_int_of_key(key)) - live_zeros

        def at_rank(rank: int) -> float:
            if rank < zeros:
                return 0.0
            wanted = rank - zeros  # the first key with more positive values up to it
            low, high = low_key, high_key
            while low < high:
                key = (low + high) // 2
                if positives_up_to(key) > wanted:
                    high = key
                else:
                    low = key + 1
            return float(_MAPPING.value(low))

        h = (n - 1) * q
        i = math.floor(h)
        fraction = h - i
        low_value = at_rank(i)
        if fraction == 0 or i + 1 >= n:
            return low_value
        return low_value + fraction * (at_rank(i + 1) - low_value)

    def can_add_without_collapse(self, most: int) -> bool:
        """Whether adding non-negative ints up to `most` keeps every bin (no value below
        zero held, and the keys from 1 to the largest within `BIN_LIMIT`)."""
        sketch = self._sketch
        if sketch._negative_store.count:
            return False
        store = sketch._store
        low = _MAPPING.key(1)
        high = _MAPPING.key(max(most, 1))
        if store.count:
            low, high = min(low, store.min_key), max(high, store.max_key)
        return high - low + 1 <= BIN_LIMIT

    def _value_at_rank(self, rank: float) -> float:
        """The sketch's value of the element at floor(`rank`) (0-based, ascending): the
        library's `get_quantile_value` at a rank rather than a quantile."""
        sketch = self._sketch
        negatives = sketch._negative_store.count
        if rank < negatives:
            key = sketch._negative_store.key_at_rank(negatives - rank - 1, lower=False)
            return -float(sketch._mapping.value(key))
        if rank < negatives + sketch._zero_count:
            return 0.0
        key = sketch._store.key_at_rank(rank - negatives - sketch._zero_count)
        return float(sketch._mapping.value(key))

    def __getstate__(self) -> dict[str, Any]:
        sketch = self._sketch
        return {
            "alpha": RELATIVE_ACCURACY,
            "positive": _bins(sketch._store),
            "negative": _bins(sketch._negative_store),
            "zeros": sketch._zero_count,
            "sum": sketch._sum,
            "min": sketch._min,
            "max": sketch._max,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state["alpha"] != RELATIVE_ACCURACY:
            raise ValueError(f"a sketch of accuracy {state['alpha']} cannot be restored")
        sketch = self._sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)
        for key, count in state["positive"]:
            sketch._store.add(key, count)
        for key, count in state["negative"]:
            sketch._negative_store.add(key, count)
        sketch._zero_count = state["zeros"]
        sketch._count = sketch._store.count + sketch._negative_store.count + state["zeros"]
        sketch._sum, sketch._min, sketch._max = state["sum"], state["min"], state["max"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuantileSketch) and self.__getstate__() == other.__getstate__()

    __hash__ = None  # type: ignore[assignment]


def _bins(store: Any) -> list[tuple[int, float]]:
    """A dense store's non-empty bins as (key, count)."""
    return [(index + store.offset, count) for index, count in enumerate(store.bins) if count != 0]


@functools.lru_cache(maxsize=BIN_LIMIT)
def _largest_int_of_key(key: int) -> int:
    """The largest int whose bin is `key` or below (0 when none above 0 is): the mapping's own
    `key` bisected, so exactly the values it would bin there."""
    if _MAPPING.key(1) > key:
        return 0
    low, high = 1, 1
    while _MAPPING.key(high) <= key:
        high *= 2
    while low + 1 < high:  # key(low) <= key < key(high)
        middle = (low + high) // 2
        if _MAPPING.key(middle) <= key:
            low = middle
        else:
            high = middle
    return low


def quantile(q: float, folded: QuantileSketch | None, live: Sequence[float]) -> float | None:
    """The figure at quantile `q` over the folded values and the `live` ones (sorted).

    Exact (claims.md's percentile) when nothing is folded; else from the folded sketch merged
    with the live values, within the module's error bound. None when there is no value."""
    if folded is None or folded.count == 0:
        return percentile(live, q)
    merged = folded.copy()
    for value in live:
        merged.add(value)
    return merged.quantile(q)


def watch_bin(value: float) -> int:
    """The bin of a non-negative value (`RankTable`'s y axis), ordered as the values: the
    sketch mapping's key (one bin spans a relative width of 2 alpha), zero below every key."""
    if value <= _MAPPING.min_possible:
        return _ZERO_BIN
    return int(_MAPPING.key(value))


_ZERO_BIN: Final[int] = int(_MAPPING.key(_MAPPING.min_possible)) - 1

#: `RankTable`'s default most cells (`LIVEPULSE_RANK_CELL_LIMIT`): ~33 kB pickled at most.
RANK_CELL_LIMIT: Final[int] = 8192
#: The fewest cells a limit may be: at the coarsest levels every key is 0 or -1 on each axis.
RANK_CELL_FLOOR: Final[int] = 4


class RankTable:
    """Counts of (x, y bin) pairs: Spearman's rho of pairs from bounded, mergeable state.

    x is kept exact (an int such as a price in cents), y (>= 0, e.g. watch minutes) by
    `watch_bin`, while at most `limit` cells are held (None: no limit). When an `add` or a
    `merge` would hold more, the table coarsens (`level` up by one until it fits): level L
    merges y's bins 2^ceil(L/2) at a time (`watch_bin` >> ceil(L/2): 4%, 8%, 16% ... wide)
    and, from L = 2, bins x too, by the same logarithmic mapping 2^(floor(L/2) - 1) bins at a
    time (2%, 4%, 8% ... wide). Each level's cells are unions of the level below's, so a
    table coarsens by re-keying its cells, and two tables merge at the coarser level of the
    two (the finer one re-keyed) under the smaller limit of the two (an empty table takes the
    other's). Its level is then always the least at which all its pairs fit in its limit, so
    the merge of partitions' tables is the table of the union, whatever the order.

    A table that never held more than `limit` cells is at level 0: its cells, and so its rho,
    are the 2%-wide grid's, as before the limit. `bound` states how far its rho can be from
    the exact rho of the pairs it counts."""

    __slots__ = ("cells", "level", "limit")

    def __init__(
        self, pairs: Iterable[tuple[int, float]] = (), limit: int | None = RANK_CELL_LIMIT
    ) -> None:
        self.cells: dict[tuple[int, int], int] = {}
        #: How coarse the cells are (0: x exact, y 2%-wide bins; see the class).
        self.level = 0
        #: The most cells held (None: no limit); at least `RANK_CELL_FLOOR`.
        self.limit = _checked_limit(limit)
        for x, y in pairs:
            self.add(x, y)

    def add(self, x: int, y: float, count: int = 1) -> None:
        level = self.level
        if level == 0:
            cell = (x, watch_bin(y))
        else:
            x_step, y_shift = _steps(level)
            cell = (_x_key(x, x_step), watch_bin(y) >> y_shift)
        cells = self.cells
        cells[cell] = cells.get(cell, 0) + count
        if self.limit is not None and len(cells) > self.limit:
            self._coarsen(level + 1)

    def merge(self, other: RankTable) -> None:
        """Add `other`'s pairs: at the coarser level of the two, under the smaller limit (an
        empty table's limit is not counted), coarser again if the union holds more cells."""
        if not other.cells:
            return
        if not self.cells:
            self.limit = other.limit
        elif other.limit is not None and (self.limit is None or other.limit < self.limit):
            self.limit = other.limit
        if other.level > self.level:
            self._coarsen(other.level)
        cells = self.cells
        for (x, y), count in other.cells.items():
            cell = _rekeyed(x, y, other.level, self.level)
            cells[cell] = cells.get(cell, 0) + count
        if self.limit is not None and len(cells) > self.limit:
            self._coarsen(self.level + 1)

    def set_limit(self, limit: int | None) -> None:
        """Hold at most `limit` cells from now on: coarsened at once if more are held (a
        coarsened table stays as coarse whatever the limit)."""
        self.limit = _checked_limit(limit)
        if limit is not None and len(self.cells) > limit:
            self._coarsen(self.level + 1)

    def _coarsen(self, level: int) -> None:
        """Re-key the cells at `level`, then at the next levels while they are over the limit."""
        while True:
            cells: dict[tuple[int, int], int] = {}
            for (x, y), count in self.cells.items():
                cell = _rekeyed(x, y, self.level, level)
                cells[cell] = cells.get(cell, 0) + count
            self.cells, self.level = cells, level
            if self.limit is None or len(cells) <= self.limit:
                return
            level += 1

    @property
    def count(self) -> int:
        return sum(self.cells.values())

    def rho(self) -> float | None:
        """Spearman's rho of the binned pairs (Pearson's r of average ranks, ties within a
        bin); None if undefined (fewer than two pairs, or one rank only on an axis)."""
        moments = self._moments()
        return None if moments is None else moments[0]

    def bound(self) -> float | None:
        """How far `rho` can be from the exact rho of the pairs counted (Spearman's, average
        ranks for exact ties), whatever they were; None when `rho` is.

        A bin of c pairs holds the c consecutive exact ranks it replaces by their mean, so the
        exact ranks' sum of squares about the bins' means is at most (c^3 - c) / 12 (that of c
        distinct ranks; exact ties only lower it); on x at level 0 a bin is one exact value
        (none). With S the binned ranks' sum of squares about their mean and W that bound
        summed over an axis' bins, the exact ranks' share of variance within the bins is
        d <= W / (S + W) (the binned ranks are the exact ones projected on the bins), so the
        unit vector of the centred exact ranks is within sqrt(2 (1 - sqrt(1 - d))) of the
        binned ones'; rho being their inner product, |rho - exact| is at most that distance
        on x plus that on y (capped at 2)."""
        moments = self._moments()
        if moments is None:
            return None
        _rho, sxx, syy, margin_x, margin_y = moments
        within_y = sum((c * c * c - c) / 12 for c in margin_y.values())
        within_x = (
            0.0
            if _steps(self.level)[0] == 0
            else sum((c * c * c - c) / 12 for c in margin_x.values())
        )
        return min(2.0, _unit_distance(sxx, within_x) + _unit_distance(syy, within_y))

    def _moments(
        self,
    ) -> tuple[float, float, float, dict[int, int], dict[int, int]] | None:
        """(rho, the binned ranks' sums of squares on x and y, the margins), None if rho is
        undefined."""
        n = self.count
        if n < 2:
            return None
        margin_x: dict[int, int] = {}
        margin_y: dict[int, int] = {}
        for (x, y), count in self.cells.items():
            margin_x[x] = margin_x.get(x, 0) + count
            margin_y[y] = margin_y.get(y, 0) + count
        rank_x, rank_y = _average_ranks(margin_x), _average_ranks(margin_y)
        mean = (n + 1) / 2
        sxy = sum(
            count * (rank_x[x] - mean) * (rank_y[y] - mean) for (x, y), count in self.cells.items()
        )
        sxx = sum(count * (rank_x[x] - mean) ** 2 for x, count in margin_x.items())
        syy = sum(count * (rank_y[y] - mean) ** 2 for y, count in margin_y.items())
        denom = math.sqrt(sxx * syy)
        if denom == 0:
            return None
        return sxy / denom, sxx, syy, margin_x, margin_y

    def __getstate__(self) -> dict[str, Any]:
        return {"cells": self.cells, "level": self.level, "limit": self.limit}

    def __setstate__(self, state: Any) -> None:
        # A table pickled before the limit (state version 14 or older: slots only, no
        # `__getstate__`, a (None, {"cells": ...}) pair) is a level-0 table: it takes the
        # default limit, coarsened now if it holds more cells (the worker's setting is applied
        # again at its install).
        if isinstance(state, tuple):
            state = state[1]
        self.cells = state["cells"]
        self.level = state.get("level", 0)
        self.limit = state.get("limit", RANK_CELL_LIMIT)
        if self.limit is not None and len(self.cells) > self.limit:
            self._coarsen(self.level + 1)


def _checked_limit(limit: int | None) -> int | None:
    if limit is not None and limit < RANK_CELL_FLOOR:
        raise ValueError(f"a rank table holds at least {RANK_CELL_FLOOR} cells, not {limit}")
    return limit


def _x_key(x: int, step: int) -> int:
    """x's key at x step `step` (a level's floor(L / 2)): x itself at 0, else its
    `watch_bin` >> (step - 1)."""
    return x if step == 0 else watch_bin(x) >> (step - 1)


def _rekeyed(x: int, y: int, level: int, to_level: int) -> tuple[int, int]:
    """A cell's key at level `to_level` (>= `level`) from its key at `level`."""
    if to_level == level:
        return x, y
    (step, shift), (to_step, to_shift) = _steps(level), _steps(to_level)
    if to_step != step:
        x = _x_key(x, to_step) if step == 0 else x >> (to_step - step)
    return x, y >> (to_shift - shift)


def _steps(level: int) -> tuple[int, int]:
    """A level's (x step, y shift): y first, then x and y in turn (on the soak stream's
    pairs, bench.rank_grid, coarsening y alone for two or three levels first gave the same
    bound at 8,192 cells and no consistently smaller one at 4,096)."""
    return level // 2, (level + 1) // 2


def _unit_distance(binned: float, within: float) -> float:
    """The distance between the unit vectors of centred exact ranks and of their projection
    on the bins, at most: sqrt(2 (1 - sqrt(1 - d))), d = within / (binned + within)."""
    if within <= 0:
        return 0.0
    share = within / (binned + within)
    return math.sqrt(2 * (1 - math.sqrt(1 - share)))


def _average_ranks(margin: dict[int, int]) -> dict[int, float]:
    """Each value's average rank (1-based), its `margin[value]` pairs tied."""
    ranks: dict[int, float] = {}
    below = 0
    for value in sorted(margin):
        count = margin[value]
        ranks[value] = below + (count + 1) / 2
        below += count
    return ranks


def spearman(
    folded: RankTable | None, live: Sequence[tuple[int, float]], exact: float | None
) -> float | None:
    """Spearman's rho over the folded pairs and the `live` ones: `exact` (the caller's exact
    rho of the live pairs) when nothing is folded, else the binned rho of the folded table
    with the live pairs added."""
    return spearman_bounded(folded, live, exact)[0]


def spearman_bounded(
    folded: RankTable | None, live: Sequence[tuple[int, float]], exact: float | None
) -> tuple[float | None, float]:
    """`spearman` with how far it can be from the exact rho of all the pairs: 0 when nothing
    is folded, else the table's `RankTable.bound` (0 when rho is None)."""
    if folded is None or folded.count == 0:
        return exact, 0.0
    table = RankTable()
    table.merge(folded)
    for x, y in live:
        table.add(x, y)
    return table.rho(), table.bound() or 0.0


class FoldedFigures:
    """The sketched part of the figures that are not exact from bounded state, fed by the
    ledger's folding (docs/design.md, "Worker state: what is kept"): each figure is
    `quantile`/`spearman` over this part and the raw facts still kept. Empty (nothing folded)
    every figure is exact.

    - `watch_minutes_by_tier`: per price tier of `price_dwell_association`, the buyer's watch
      minutes up to each folded session order (its median by tier);
    - `price_watch`: (dearest unit price in cents, those watch minutes) of the same orders,
      and `price_watch_sessions` the sessions they came from (rho and its interval);
    - `reply_latency_s`: answered questions' first-reply latencies in seconds, folded
      (`reply_latency`'s p50/p95);
    - `watch_minutes_by_membership`: per "members"/"others" the watch minutes of the
      summarized sessions' (session, user) pairs with a join (the HTML report's watch time by
      membership: n, mean and max exact, percentiles within the bound), and
      `watch_minute_counts` the same pairs counted per whole minute (its histogram, exact for
      any bin width of whole minutes); `order_minutes` the summarized session orders counted
      per whole minute since their session's start, -1 for those paid before it (the
      report's orders by minute, exact).
    """

    __slots__ = (
        "order_minutes",
        "price_watch",
        "price_watch_sessions",
        "reply_latency_s",
        "watch_minute_counts",
        "watch_minutes_by_membership",
        "watch_minutes_by_tier",
    )

    def __init__(self) -> None:
        self.watch_minutes_by_tier: dict[str, QuantileSketch] = {}
        self.price_watch = RankTable()
        self.price_watch_sessions = 0
        self.reply_latency_s = QuantileSketch()
        self.watch_minutes_by_membership: dict[str, QuantileSketch] = {}
        self.watch_minute_counts: dict[str, dict[int, int]] = {}
        self.order_minutes: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: Any) -> None:
        # A state pickled before the summaries' distributions (slots only, no
        # `__getstate__`: a (None, slots) pair) lacks them: left empty.
        if isinstance(state, tuple):
            state = state[1]
        self.__init__()  # type: ignore[misc]
        for name, value in state.items():
            setattr(self, name, value)

    def fold_watch(self, group: str, watch_ms: Sequence[int]) -> None:
        """A summarized session's (session, user) pairs with a join of one membership group
        ("members", "others"), their watch times final."""
        if not watch_ms:
            return
        sketch = self.watch_minutes_by_membership.get(group)
        if sketch is None:
            sketch = self.watch_minutes_by_membership[group] = QuantileSketch()
        sketch.add_many([watched / 60_000 for watched in watch_ms])
        counts = self.watch_minute_counts.setdefault(group, {})
        for watched in watch_ms:
            minute = watched // 60_000
            counts[minute] = counts.get(minute, 0) + 1

    def fold_order_minute(self, since_start_ms: int) -> None:
        """One summarized session order, paid `since_start_ms` after its session's start."""
        minute = -1 if since_start_ms < 0 else since_start_ms // 60_000
        self.order_minutes[minute] = self.order_minutes.get(minute, 0) + 1

    def fold_order(self, tier: str, price_cents: int, watch_minutes: float) -> None:
        """One session order whose watch time is final, its raw fact about to be dropped."""
        sketch = self.watch_minutes_by_tier.get(tier)
        if sketch is None:
            sketch = self.watch_minutes_by_tier[tier] = QuantileSketch()
        sketch.add(watch_minutes)
        self.price_watch.add(price_cents, watch_minutes)

    def merge(self, other: FoldedFigures) -> None:
        """Fold `other` in (partitions' states merging: exact, counts add)."""
        for tier, sketch in other.watch_minutes_by_tier.items():
            mine = self.watch_minutes_by_tier.get(tier)
            if mine is None:
                mine = self.watch_minutes_by_tier[tier] = QuantileSketch()
            mine.merge(sketch)
        self.price_watch.merge(other.price_watch)
        self.price_watch_sessions += other.price_watch_sessions
        self.reply_latency_s.merge(other.reply_latency_s)
        for group, sketch in other.watch_minutes_by_membership.items():
            mine = self.watch_minutes_by_membership.get(group)
            if mine is None:
                mine = self.watch_minutes_by_membership[group] = QuantileSketch()
            mine.merge(sketch)
        for group, counts in other.watch_minute_counts.items():
            into = self.watch_minute_counts.setdefault(group, {})
            for minute, count in counts.items():
                into[minute] = into.get(minute, 0) + count
        for minute, count in other.order_minutes.items():
            self.order_minutes[minute] = self.order_minutes.get(minute, 0) + count

    @property
    def empty(self) -> bool:
        return self.price_watch.count == 0 and self.reply_latency_s.count == 0


#: `DistinctUsers`: ids kept exactly up to this many, then a HyperLogLog (a level's distinct
#: paying users: exact on every stream whose levels have fewer, the fixtures' and the truth
#: tests').
DISTINCT_EXACT_LIMIT: Final[int] = 10_000
#: The HyperLogLog's precision p: m = 2^p one-byte registers (16 KiB), relative standard error
#: 1.04 / sqrt(m) = 0.81%.
DISTINCT_PRECISION: Final[int] = 14
_HASH_BITS: Final[int] = 64
_ALPHA_INF: Final[float] = 1 / (2 * math.log(2))


def _user_hash(user: str) -> int:
    """A 64-bit hash of a user id, the same in every process (Python's `hash` is salted per
    process, and partitions' sketches must agree to merge)."""
    return int.from_bytes(hashlib.blake2b(user.encode(), digest_size=8).digest(), "big")


class DistinctUsers:
    """A mergeable count of distinct user ids: the ids themselves up to `limit`, then a
    HyperLogLog (Flajolet, Fusy, Gandouet and Meunier 2007) of m = 2^`precision` registers,
    read with Ertl's improved estimator ("New cardinality estimation algorithms for
    HyperLogLog sketches", 2017, algorithm 6), which is unbiased across the whole range
    without the empirical bias tables of HLL++ (hand-written: the kept Python HyperLogLogs
    either use Python's salted `hash` or the original estimator's biased mid range).

    **Error bound.** Exact while at most `limit` ids were added; then the count's relative
    standard error is 1.04 / sqrt(m) (0.81% at p = 14), and the count is within 3 of those of
    the truth with probability ~99.7%. Merging (register maxima, or ids added) is exact: the
    merge of partitions' sketches is the sketch of their union, in any order. The size is
    bounded by max(`limit` ids, m bytes) whatever the stream.
    """

    __slots__ = ("exact", "limit", "precision", "registers")

    def __init__(
        self, limit: int = DISTINCT_EXACT_LIMIT, precision: int = DISTINCT_PRECISION
    ) -> None:
        self.limit = limit
        self.precision = precision
        #: The ids, while exact; None once sketched.
        self.exact: set[str] | None = set()
        #: The registers once sketched (each the largest rank seen in its bucket).
        self.registers: bytearray | None = None

    @classmethod
    def of(cls, users: Iterable[str], limit: int = DISTINCT_EXACT_LIMIT) -> DistinctUsers:
        out = cls(limit)
        out.update(users)
        return out

    @property
    def sketched(self) -> bool:
        return self.registers is not None

    def __len__(self) -> int:
        return self.count()

    def update(self, users: Iterable[str]) -> None:
        """Add user ids."""
        if self.exact is not None:
            self.exact.update(users)
            if len(self.exact) > self.limit:
                self._to_sketch()
            return
        for user in users:
            self._add_hashed(_user_hash(user))

    def set_limit(self, limit: int) -> None:
        """Keep ids exactly up to `limit` from now on: sketched at once if more are held (a
        sketched count stays sketched whatever the limit)."""
        self.limit = limit
        if self.exact is not None and len(self.exact) > limit:
            self._to_sketch()

    def merge(self, other: DistinctUsers) -> None:
        """Add another count's ids (of the same precision): the count of the union."""
        if other.exact is not None:
            self.update(other.exact)
            return
        assert other.registers is not None and other.precision == self.precision
        if self.exact is not None:
            self._to_sketch()
        registers = self.registers
        assert registers is not None
        for i, rank in enumerate(other.registers):
            if rank > registers[i]:
                registers[i] = rank

    def copy(self) -> DistinctUsers:
        out = DistinctUsers(self.limit, self.precision)
        out.exact = None if self.exact is None else set(self.exact)
        out.registers = None if self.registers is None else bytearray(self.registers)
        return out

    def count(self) -> int:
        """The number of distinct ids: exact, or the sketch's estimate rounded."""
        if self.exact is not None:
            return len(self.exact)
        assert self.registers is not None
        return round(_hll_estimate(self.registers, _HASH_BITS - self.precision))

    def count_with(self, users: Iterable[str]) -> int:
        """The count of these ids and `users` together (`users` not kept)."""
        if self.exact is not None:
            return len(self.exact.union(users))
        union = self.copy()
        union.update(users)
        return union.count()

    def _to_sketch(self) -> None:
        assert self.exact is not None
        self.registers = bytearray(1 << self.precision)
        users, self.exact = self.exact, None
        for user in users:
            self._add_hashed(_user_hash(user))

    def _add_hashed(self, hashed: int) -> None:
        assert self.registers is not None
        q = _HASH_BITS - self.precision
        index = hashed >> q
        rest = hashed & ((1 << q) - 1)
        # The rank: 1 + the leading zeros of the q low bits (q + 1 when all are zero).
        rank = q - rest.bit_length() + 1
        if rank > self.registers[index]:
            self.registers[index] = rank


def _hll_estimate(registers: bytearray, q: int) -> float:
    """Ertl's improved raw estimator of a HyperLogLog's cardinality (registers in 0..q+1)."""
    m = len(registers)
    counts = [0] * (q + 2)
    for rank in registers:
        counts[rank] += 1
    if counts[0] == m:
        return 0.0
    z = m * _tau(1 - counts[q + 1] / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + counts[k])
    z += m * _sigma(counts[0] / m)
    return _ALPHA_INF * m * m / z


def _sigma(x: float) -> float:
    """x + sum_k>=1 x^(2^k) 2^(k-1) (Ertl, eq. 21); x < 1."""
    if x == 1:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        before = z
        z += x * y
        y += y
        if z == before:
            return z


def _tau(x: float) -> float:
    """(1 - x - sum_k>=1 (1 - x^(2^-k))^2 2^-k) / 3 (Ertl, eq. 23)."""
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        before = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if z == before:
            return z / 3
