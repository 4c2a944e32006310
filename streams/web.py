"""The worker's HTTP views: `/metrics` (Prometheus), `/report` (claims JSON), `/status` (positions).

Every figure is built from the process's ledger by `agents.core.build_report` when asked; a
short cache keeps frequent scrapes from rebuilding it while events keep arriving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import faust
import orjson
from faust.types import TP
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agents.core import Ledger, build_report
from agents.live import app, live, settings
from streams.claim_parts import ClaimPartsCollector
from streams.consumer_lag import ConsumerLagCollector

VERDICTS: Final[tuple[str, ...]] = ("supported", "contradicted", "inconclusive")


class ReportCache:
    """The latest report of a ledger, rebuilt when the ledger has changed and is old enough."""

    def __init__(self, ledger: Ledger, build: Callable[[Ledger], dict[str, Any]] = build_report):
        self._ledger = ledger
        self._build = build
        self._report: dict[str, Any] | None = None
        self._version: tuple[int, int, int] | None = None
        self._built_at = 0.0

    def _ledger_version(self) -> tuple[int, int, int]:
        counts = self._ledger.counts
        return (counts.valid, counts.rejected, counts.duplicates)

    def get(self, max_age_s: float = 0.0) -> dict[str, Any]:
        """The report; a cached one if nothing changed since, or if it is under `max_age_s` old."""
        version = self._ledger_version()
        now = time.monotonic()
        if self._report is None or (version != self._version and now - self._built_at >= max_age_s):
            self._report = self._build(self._ledger)
            self._version, self._built_at = version, now
        return self._report


class ClaimCollector:
    """Prometheus gauges of every claim's figure, interval, claimed value and verdict."""

    def __init__(self, reports: ReportCache, max_age_s: float) -> None:
        self._reports = reports
        self._max_age_s = max_age_s

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        return {
            "observed": gauge(
                "livepulse_claim_observed", "A claim's figure measured on the stream.", ["claim"]
            ),
            "ci_low": gauge(
                "livepulse_claim_ci_low", "Lower bound of the figure's 95% interval.", ["claim"]
            ),
            "ci_high": gauge(
                "livepulse_claim_ci_high", "Upper bound of the figure's 95% interval.", ["claim"]
            ),
            "claimed": gauge(
                "livepulse_claim_claimed", "The figure the source claims (if a number).", ["claim"]
            ),
            "verdict": gauge(
                "livepulse_claim_verdict",
                "1 for the claim's current verdict, 0 for the others.",
                ["claim", "verdict"],
            ),
        }

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        report = self._reports.get(self._max_age_s)
        for claim_id, claim in report["claims"].items():
            for key in ("observed", "ci_low", "ci_high", "claimed"):
                value = claim.get(key)
                # None (undefined) and non-numeric claims ("positive") have no sample.
                if isinstance(value, int | float) and not isinstance(value, bool):
                    families[key].add_metric([claim_id], float(value))
            for verdict in VERDICTS:
                families["verdict"].add_metric(
                    [claim_id, verdict], 1.0 if claim.get("verdict") == verdict else 0.0
                )
        yield from families.values()


def ready(worker_app: Any) -> bool:
    """Whether the worker is running with its partitions assigned (not rebalancing)."""
    try:
        assigned = bool(worker_app.consumer.assignment())
    except Exception:  # no consumer yet (starting up)
        return False
    return assigned and not worker_app.rebalancing


reports = ReportCache(live.ledger)
live.metrics.registry.register(ClaimCollector(reports, settings.report_max_age_s))
live.metrics.registry.register(ClaimPartsCollector(lambda: reports.get(settings.report_max_age_s)))
live.metrics.registry.register(
    # Lambdas: faust creates its consumer on first access, which must wait for the worker.
    ConsumerLagCollector(
        lambda: app.consumer.assignment(),
        lambda tp: app.consumer.highwater(TP(*tp)),
        live.positions,
        settings.source_topics,
    )
)

_JSON_OPTIONS: Final[int] = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_body(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)


@app.page("/metrics")
class MetricsView(faust.web.View):
    """Prometheus exposition of the worker's registry (text format, or OpenMetrics on request)."""

    async def get(self, request: Any) -> Any:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return self.bytes(encoder(live.metrics.registry), headers={"Content-Type": content_type})


@app.page("/report")
class ReportView(faust.web.View):
    """The claims report (docs/design.md), as of every event processed so far."""

    async def get(self, request: Any) -> Any:
        return self.bytes(_json_body(reports.get()), content_type="application/json")


@app.page("/status")
class StatusView(faust.web.View):
    """Per-partition positions (next offset to process), event counts and readiness."""

    async def get(self, request: Any) -> Any:
        body = {**live.status(), "ready": ready(app)}
        return self.bytes(_json_body(body), content_type="application/json")
