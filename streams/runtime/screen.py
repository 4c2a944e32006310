"""The live screen (直播大屏) the worker serves: its page, its data, and its /metrics families.

The page (`screen.html`, package data: no external script, font or image) polls this worker's
`/screen/data` once a second, or `/report?scope=global` (every partition, merged from the
changelog) when this worker holds only a share of the partitions, which `/screen/scope` says.

Why not `/report` itself: a report's claims cost far more than the operator figures (at 200,000
events, 6.3 s against 1.6 s for the operator section and 0.2 s for the screen's; measured with
the bench's cached stream), and a build runs on the worker's event loop, so a page rebuilding
`/report` every second stops the worker (`python -m bench.screen` measured it). `ScreenFeed`
rebuilds the operator and screen sections at most every `interval_s` while events flow, from
the partitions' own states with what no event touched kept from the build before
(`agents.core.page.PageBuilder`: its cost follows what changed, not the whole state), never
spending more than a fifth of the time on it at the median build's cost (one build held up by
a pause does not hold the page), and more when the data served would otherwise be over
`max_age_s` (a second) old: a fetch that finds the data older than that less `AGE_MARGIN_S`
rebuilds it, as long as builds take at most `age_share` (half) of the time and a build is
quicker than the age it must keep (else the share alone paces them). Builds run only when a
page fetches: a worker nobody watches builds nothing. The sources and products tables are
computed by one build in `TABLES_EVERY` (the others keep the last ones, served with their own
as-of, `tables_events` and `tables_at`, which the page shows next to them), and by the next
fetch once the state stops changing. It takes the claims from the worker's cached
report, rebuilt only when it is older than ten times its own build time, and says how old they
are (`claims_at`, `claims_events`: the page shows "claims as of").
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from importlib import resources
from typing import Any, Final

import faust
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from agents.core import Ledger, OperatorBoard
from agents.core.page import PageBuilder
from agents.core.screen import PRODUCTS_TOP_N, SOURCES
from streams.runtime.families import PRODUCT_FIGURES, SOURCE_FIGURES, screen_families

PAGE_FILE: Final[str] = "screen.html"
#: Builds whose median cost paces the next (`ScreenFeed.record_build`).
PACE_BUILDS: Final[int] = 5
#: Builds between two that compute the sources and products tables (`PageBuilder.build`'s
#: `tables`): the other builds serve the last ones with their as-of (`tables_events`,
#: `tables_at`; the page says it). A state that stopped changing gets them at once.
TABLES_EVERY: Final[int] = 4
#: ... but only while a build costs this much or more (the median of the last few): below it
#: (a live room at a real producer's rate) every build computes them, so that they are as
#: fresh as the rest of the page; the skipping is for a worker catching up (1,000,000 events
#: replayed, builds of 0.1-0.3 s).
TABLES_ALWAYS_UNDER_S: Final[float] = 0.05
#: How much younger than `ScreenFeed.max_age_s` the data a fetch is served must be to be
#: served as it is (the answer's own way to the page; the page's next poll is a second on).
AGE_MARGIN_S: Final[float] = 0.15


def page_html() -> bytes:
    """The screen's page, as packaged."""
    return resources.files("streams.runtime").joinpath(PAGE_FILE).read_bytes()


class ScreenCollector:
    """The entry sources (label `source`: the contract's enum) and the top products (label
    `rank`, 1..N) of the report's `screen` section over this worker's partitions."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self._report = report

    def describe(self) -> Iterator[Metric]:
        yield from screen_families().values()

    def collect(self) -> Iterator[Metric]:
        families = screen_families()
        screen = self._report().get("screen")
        if screen is not None:
            sources = screen["sources"]["overall"]
            for source in SOURCES:
                for key, name, _doc, _counter in SOURCE_FIGURES:
                    value = sources[source][key]
                    if value is not None:
                        families[name].add_metric([source], value)
            products = screen["products"]["overall"]
            families["livepulse_products"].add_metric([], products["skus"])
            for rank, line in enumerate(products["top"][:PRODUCTS_TOP_N], start=1):
                for key, name, _doc in PRODUCT_FIGURES:
                    if line[key] is not None:
                        families[name].add_metric([str(rank)], line[key])
        yield from families.values()


class ScreenFeed:
    """What the page shows, rebuilt at most every `interval_s` and within a share of the time.

    `partitions` gives the state (each partition's ledger and board), `version` changes
    whenever it does, `report(max_age_s)` is the worker's cached report (its claims, state and
    simulated note are taken from it), `valid` the count of valid events so far.
    """

    def __init__(
        self,
        partitions: Callable[[], Sequence[tuple[Ledger, OperatorBoard]]],
        version: Callable[[], Hashable],
        report: Callable[[float], dict[str, Any]],
        valid: Callable[[], int],
        *,
        interval_s: float = 0.5,
        share: float = 0.2,
        max_age_s: float = 1.0,
        age_share: float = 0.5,
        claims_share: float = 0.1,
        claims_min_age_s: float = 2.0,
        report_build_s: Callable[[], float] | None = None,
        tables_always_under_s: float = TABLES_ALWAYS_UNDER_S,
    ) -> None:
        self._partitions, self._version_of, self._report = partitions, version, report
        self.tables_always_under_s = tables_always_under_s
        #: The report's own build time, where it is built elsewhere (a forked child: the call
        #: returns the newest report at once, so its duration says nothing of the build).
        self._report_build_s = report_build_s
        self._builder = PageBuilder()
        self._valid = valid
        self.interval_s, self.share, self.claims_min_age_s = interval_s, share, claims_min_age_s
        self.claims_share = claims_share
        self.max_age_s, self.age_share = max_age_s, age_share
        self._payload: dict[str, Any] | None = None
        self._body: bytes | None = None
        self._version: Hashable = None
        self._built_at = 0.0
        #: When the served data's state was read (monotonic: the last build's start).
        self._read_at = 0.0
        #: Builds made because the data was getting old (the share alone would have waited).
        self.age_builds = 0
        #: Builds since the last that computed the tables; their as-of (events, wall time).
        self._since_tables = 0
        self._tables_as_of: tuple[Any, float] | None = None
        #: What a build costs, for pacing: the median of the last `PACE_BUILDS` builds.
        self.build_s = 0.0
        self._recent_builds: deque[float] = deque(maxlen=PACE_BUILDS)
        self.report_build_s = 0.0
        self._serial = 0
        self._report_valid = 0

    def get(self) -> dict[str, Any]:
        """The page's data: the operator and screen sections, the claims and where they stand."""
        # The report first: a call that rebuilds it takes its time, which sets how old it may
        # get (a call answered from the cache takes microseconds).
        # A build's cost grows with the state: the last one's, scaled by the events since.
        valid = self._valid()
        began = time.perf_counter()
        report_cost_s = self.report_build_s * max(1.0, valid / max(1, self._report_valid))
        report = self._report(max(self.claims_min_age_s, report_cost_s / self.claims_share))
        took = time.perf_counter() - began
        if self._report_build_s is not None:
            took = self._report_build_s()
        if took > 0.01 and took != self.report_build_s:
            self.report_build_s, self._report_valid = took, valid
        version = self._version_of()
        now = time.monotonic()
        if version == self._version:
            self._read_at = now  # nothing new since: the data is the state's as of now
        # The last build's cost, not scaled by the events since: a build follows what changed
        # (PageBuilder), and scaling by the growth since a build at the very start (a few
        # events) put the next one minutes away (measured: the page showed 0 of 200,000).
        since_s = now - self._built_at
        due = since_s >= max(self.interval_s, self.build_s / self.share)
        by_age = (
            # The data's age: rebuilt before it is served over `max_age_s` old, within the
            # larger share, by a build quicker than the age it must keep (else it cannot).
            not due
            and self.build_s < self.max_age_s - AGE_MARGIN_S
            and now - self._read_at >= self.max_age_s - AGE_MARGIN_S
            and since_s >= self.build_s / self.age_share
        )
        # The tables behind a state that no longer changes: built now, whole (once).
        quiet = version == self._version and not self._builder.tables_fresh
        if self._payload is None or (version != self._version and (due or by_age)) or quiet:
            self.age_builds += by_age
            self._read_at = now
            tables = (
                quiet
                or self._since_tables + 1 >= TABLES_EVERY
                or self.build_s < self.tables_always_under_s
            )
            began = time.perf_counter()
            # Per-session figures and histograms are not on the page: not even computed.
            payload: dict[str, Any] = self._builder.build(self._partitions(), tables=tables)
            took = time.perf_counter() - began
            self.record_build(took)
            payload["built_s"] = took
            # When the state was read (wall clock, as the page's clock): how old the data is.
            payload["built_at"] = time.time() - took
            if self._builder.tables_fresh or self._tables_as_of is None:
                self._since_tables = 0
                self._tables_as_of = (payload["events"], payload["built_at"])
            else:
                self._since_tables += 1
            # The sources and products tables' own as-of (older than the rest between builds
            # that compute them): the page says it next to them.
            payload["tables_events"], payload["tables_at"] = self._tables_as_of
            # Paced from the build's end: a build slower than the interval (a loaded machine)
            # does not make the next call rebuild at once.
            self._payload, self._version, self._built_at = payload, version, time.monotonic()
            self._body = None
        payload = self._payload
        if payload.get("claims") is not report["claims"]:
            payload = self._payload = {**payload, "claims": report["claims"]}
            payload["claims_events"] = report["events"]
            # When this feed first saw these claims: within a poll of their build.
            payload["claims_at"] = time.time()
            for key in ("simulated", "state"):
                if key in report:
                    payload[key] = report[key]
            self._body = None
        return payload

    def record_build(self, seconds: float) -> None:
        """Take one build's cost into the pacing: the median of the last few, so that one
        build held up by a pause (a collection of the oldest generation, measured at up to
        1 s at 1,000,000 events) does not hold the page for five times that, while builds
        that stay slow still space the rebuilds."""
        self._recent_builds.append(seconds)
        self.build_s = statistics.median(self._recent_builds)

    def body(self) -> bytes:
        """`get()` as JSON, serialized once per change (the page asks every second), with a
        `serial` that changes with it (the page skips drawing the same data again)."""
        payload = self.get()
        if self._body is None:
            self._serial += 1
            self._body = orjson.dumps({**payload, "serial": self._serial}, option=_JSON)
        return self._body


def register_screen(
    app: faust.App,
    registry: CollectorRegistry,
    report: Callable[[float], dict[str, Any]],
    scope: Callable[[], dict[str, Any]],
    partitions: Callable[[], Sequence[tuple[Ledger, OperatorBoard]]],
    version: Callable[[], Hashable],
    valid: Callable[[], int],
    report_max_age_s: float,
    report_build_s: Callable[[], float] | None = None,
) -> ScreenFeed:
    """Serve `/`, `/screen`, `/screen/data` and `/screen/scope` on the worker and add the
    screen's /metrics families; return the page's data feed.

    `report(max_age_s)` is this worker's cached report (the /metrics families read it at most
    `report_max_age_s` old, as the other collectors do), `scope` says which partitions it
    holds, `partitions`, `version` and `valid` give its state (`ScreenFeed`), `report_build_s`
    the seconds the report's last build took where it is built in a child.
    """
    registry.register(ScreenCollector(lambda: report(report_max_age_s)))
    feed = ScreenFeed(
        partitions,
        version,
        report,
        valid,
        claims_min_age_s=report_max_age_s,
        report_build_s=report_build_s,
    )
    page = page_html()

    @app.page("/screen")
    class ScreenView(faust.web.View):
        """The live screen: one self-contained page that polls /report."""

        async def get(self, request: Any) -> Any:
            return self.bytes(
                page,
                content_type="text/html",
                headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
            )

    @app.page("/")
    class IndexView(faust.web.View):
        """What this worker serves (faust's own index says only `{"status": "OK"}`)."""

        async def get(self, request: Any) -> Any:
            return self.bytes(orjson.dumps(INDEX), content_type="application/json")

    @app.page("/screen/data")
    class DataView(faust.web.View):
        """The page's data (`ScreenFeed`): /report's operator, screen and claims sections."""

        async def get(self, request: Any) -> Any:
            return self.bytes(feed.body(), content_type=_JSON_TYPE)

    @app.page("/screen/scope")
    class ScopeView(faust.web.View):
        """Which partitions this worker holds: the page reads the merged report if not all."""

        async def get(self, request: Any) -> Any:
            return self.bytes(orjson.dumps(scope()), content_type="application/json")

    return feed


_JSON: Final[int] = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_JSON_TYPE: Final[str] = "application/json"

#: The worker's views, for its index page `/`.
INDEX: Final[dict[str, Any]] = {
    "status": "OK",
    "views": {
        "/screen": "the live screen (直播大屏): open it in a browser",
        "/report": "the claims and operator report, JSON (?scope=global: every partition)",
        "/metrics": "Prometheus exposition",
        "/status": "positions, event counts and readiness, JSON",
    },
}
#: The page may talk to its own worker only (what it is tested for, enforced by the browser).
_CSP: Final[str] = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)
