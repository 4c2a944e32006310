"""The live screen (直播大屏) the worker serves: its page, its scope, and its /metrics families.

The page (`screen.html`, package data: no external script, font or image) polls this worker's
`/report` once a second, or `/report?scope=global` (every partition, merged from the
changelog) when this worker holds only a share of the partitions, which `/screen/scope` says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, Final

import faust
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agents.core.screen import PRODUCTS_TOP_N, SOURCES

PAGE_FILE: Final[str] = "screen.html"

#: Per-source figures for /metrics: (report key, metric name, help, is a counter).
_SOURCE_FIGURES: Final[tuple[tuple[str, str, str, bool], ...]] = (
    ("entries", "livepulse_source_entries", "viewer_joined events by their source.", True),
    (
        "viewers",
        "livepulse_source_viewers",
        "(session, user) viewers by the source of their first entry.",
        False,
    ),
    ("buyers", "livepulse_source_buyers", "Those viewers with a session order.", False),
    ("gmv_cny", "livepulse_source_gmv_cny", "Those viewers' session orders' GMV, CNY.", True),
    ("conversion", "livepulse_source_conversion_ratio", "Buyers / viewers, by source.", False),
)
#: Per-rank product figures (rank 1 is the best-selling product; no sku_id label: unbounded).
_PRODUCT_FIGURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("gmv_cny", "livepulse_top_product_gmv_cny", "GMV of the product ranked by GMV, CNY."),
    ("clicks", "livepulse_top_product_clicks", "Clicks on the product ranked by GMV."),
    ("units", "livepulse_top_product_units", "Units sold of the product ranked by GMV."),
    (
        "click_to_order",
        "livepulse_top_product_click_to_order_ratio",
        "Clickers who ordered / clickers, of the product ranked by GMV.",
    ),
)


def page_html() -> bytes:
    """The screen's page, as packaged."""
    return resources.files("streams.runtime").joinpath(PAGE_FILE).read_bytes()


class ScreenCollector:
    """The entry sources (label `source`: the contract's enum) and the top products (label
    `rank`, 1..N) of the report's `screen` section over this worker's partitions."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self._report = report

    @staticmethod
    def _families() -> dict[str, Any]:
        families: dict[str, Any] = {}
        for _key, name, doc, is_counter in _SOURCE_FIGURES:
            kind = CounterMetricFamily if is_counter else GaugeMetricFamily
            families[name] = kind(name, doc, labels=["source"])
        for _key, name, doc in _PRODUCT_FIGURES:
            families[name] = GaugeMetricFamily(name, doc, labels=["rank"])
        families["livepulse_products"] = GaugeMetricFamily(
            "livepulse_products", "Products (sku_id) clicked or ordered in sessions."
        )
        return families

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        screen = self._report().get("screen")
        if screen is not None:
            sources = screen["sources"]["overall"]
            for source in SOURCES:
                for key, name, _doc, _counter in _SOURCE_FIGURES:
                    value = sources[source][key]
                    if value is not None:
                        families[name].add_metric([source], value)
            products = screen["products"]["overall"]
            families["livepulse_products"].add_metric([], products["skus"])
            for rank, line in enumerate(products["top"][:PRODUCTS_TOP_N], start=1):
                for key, name, _doc in _PRODUCT_FIGURES:
                    if line[key] is not None:
                        families[name].add_metric([str(rank)], line[key])
        yield from families.values()


def register_screen(
    app: faust.App,
    registry: CollectorRegistry,
    report: Callable[[], dict[str, Any]],
    scope: Callable[[], dict[str, Any]],
) -> None:
    """Serve `/screen` and `/screen/scope` on the worker and add the screen's /metrics families.

    `report` is this worker's cached report; `scope` says which partitions it holds.
    """
    registry.register(ScreenCollector(report))
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

    @app.page("/screen/scope")
    class ScopeView(faust.web.View):
        """Which partitions this worker holds: the page reads the merged report if not all."""

        async def get(self, request: Any) -> Any:
            return self.bytes(orjson.dumps(scope()), content_type="application/json")


#: The page may talk to its own worker only (what it is tested for, enforced by the browser).
_CSP: Final[str] = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)
