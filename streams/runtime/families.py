"""Every Prometheus family the worker exports, defined here and nowhere else (docs/metrics.md).

Labels are bounded sets only (topics, event types, reasons, claims, verdicts, top-N rooms and
merchants with the rest folded into `other`): never a user, order or session id. The counters
live in one registry per worker (`WorkerMetrics`); the figures computed at scrape time are
built by the collectors (`streams.runtime.web`, `claim_parts`, `consumer_lag`, `topology`)
from the family factories below.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from schemas import TOPIC_BY_TYPE
from schemas.decode import REJECT_REASONS
from streams.runtime.settings import Settings

# -- counters the worker keeps (one registry per worker) ------------------------------------


class WorkerMetrics:
    """The worker's registry (its own, not prometheus_client's global default) and what the
    ingest counts: events, rejections, duplicates, dead letters the broker refused, records
    deleted before they were read. The keeper and the scrape-time collectors register on the
    same registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "livepulse_events",
            "Distinct valid events counted by the ledger.",
            ["topic", "type"],
            registry=registry,
        )
        self.rejected = Counter(
            "livepulse_events_rejected",
            "Records that are not contract events (sent to the dead-letter topic), by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "livepulse_events_duplicate",
            "Valid events whose event_id was seen before (redeliveries), not counted again.",
            ["topic"],
            registry=registry,
        )
        self.expired = Counter(
            "livepulse_events_expired",
            "Valid events older than their topic's dedupe window (LIVEPULSE_DEDUPE_WINDOW_S) "
            "in event time: neither applied nor counted as events or duplicates.",
            ["topic"],
            registry=registry,
        )
        self.future = Counter(
            "livepulse_events_future",
            "Valid events stamped more than LIVEPULSE_FUTURE_TOLERANCE_S ahead of the worker's "
            "wall clock: applied, but kept from moving their topic's dedupe horizon.",
            ["topic"],
            registry=registry,
        )
        self.deadletter_failures = Counter(
            "livepulse_deadletter_failures",
            "Dead letters the broker did not accept (the record is still counted as rejected).",
            ["topic"],
            registry=registry,
        )
        self.records_lost = Counter(
            "livepulse_records_lost",
            "Records deleted from a contract topic (retention, deleted records) before the "
            "worker read them: in no figure.",
            ["topic"],
            registry=registry,
        )

    def initialise_series(self, settings: Settings) -> None:
        """Export every ingest series the worker can ever have, at 0, from the start.

        A series that first appears already at its final value has no increase for `rate()` to
        see; with batch ingestion a whole replay can land between two scrapes, and the
        dead-letter ratio rule then saw nothing at all. The label sets are bounded (contract
        topics, event types, rejection reasons), so this exports a fixed, small number of series.
        """
        for event_type, topic in TOPIC_BY_TYPE.items():
            if topic in settings.contract_topics:
                self.events.labels(settings.topic(topic), event_type)
        for topic in settings.source_topics:
            self.duplicates.labels(topic)
            self.expired.labels(topic)
            self.future.labels(topic)
            # Not processing_error: a bug's series shows up when it does.
            for reason in REJECT_REASONS:
                self.rejected.labels(topic, reason)


class KeeperCounters:
    """What the state keeper (`streams.runtime.keeper`) counts of snapshots and restores."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.snapshots = Counter(
            "livepulse_state_snapshots",
            "Partition state snapshots written to the changelog topic and the local store.",
            ["result"],
            registry=registry,
        )
        self.snapshot_seconds = Counter(
            "livepulse_state_snapshot_seconds",
            "Time spent writing partition state snapshots.",
            registry=registry,
        )
        self.restores = Counter(
            "livepulse_state_restores",
            "Partition states installed on assignment, by where they came from.",
            ["source"],
            registry=registry,
        )
        self.pause_seconds = Counter(
            "livepulse_state_snapshot_pause_seconds",
            "Time batches waited for snapshots (the dump, or only the fork with "
            "LIVEPULSE_SNAPSHOT_FORK).",
            registry=registry,
        )
        self.state_bytes = Gauge(
            "livepulse_state_snapshot_bytes",
            "Size of the latest snapshot of every partition this worker holds.",
            registry=registry,
        )
        for result in ("ok", "failed"):
            self.snapshots.labels(result)
        for source in ("new", "local", "changelog", "memory"):
            self.restores.labels(source)


# -- families built at scrape time from the report ------------------------------------------


def claim_families() -> dict[str, GaugeMetricFamily]:
    """The per-worker claim gauges (`streams.runtime.web.ClaimCollector`)."""

    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    return {
        "observed": gauge(
            "livepulse_claim_observed", "A claim's figure measured on the stream.", ["claim"]
        ),
        "ci_low": gauge(
            "livepulse_claim_ci_low",
            "Lower end of the 95% interval over this worker's partitions "
            "(every partition: livepulse_claim_global).",
            ["claim"],
        ),
        "ci_high": gauge(
            "livepulse_claim_ci_high",
            "Upper end of the 95% interval over this worker's partitions "
            "(every partition: livepulse_claim_global).",
            ["claim"],
        ),
        "claimed": gauge(
            "livepulse_claim_claimed", "The figure the source claims (if a number).", ["claim"]
        ),
        "verdict": gauge(
            "livepulse_claim_verdict",
            "1 for the claim's current verdict, 0 for the others.",
            ["claim", "verdict"],
        ),
        # Claims by period (docs/metrics.md): the latest CST day, the latest CST month and
        # the rolling horizon, never a date as a label.
        "period_observed": gauge(
            "livepulse_claim_period_observed",
            "A claim's figure over the latest CST day, month, or the rolling horizon.",
            ["claim", "period"],
        ),
        "period_ci_low": gauge(
            "livepulse_claim_period_ci_low",
            "Lower end of the 95% interval of livepulse_claim_period_observed.",
            ["claim", "period"],
        ),
        "period_ci_high": gauge(
            "livepulse_claim_period_ci_high",
            "Upper end of the 95% interval of livepulse_claim_period_observed.",
            ["claim", "period"],
        ),
    }


#: Additive operator figures: (report key, metric name, help, is a counter).
OPERATOR_SUMS: Final[tuple[tuple[str, str, str, bool], ...]] = (
    ("entries", "livepulse_entries", "viewer_joined events of sessions.", True),
    ("unique_viewers", "livepulse_unique_viewers", "Distinct (session, user) viewers.", False),
    ("viewers_current", "livepulse_viewers_current", "Viewers in the room now.", False),
    ("buyers", "livepulse_buyers", "Distinct (session, user) with a session order.", False),
    (
        "interacting_viewers",
        "livepulse_interacting_viewers",
        "Distinct (session, user) with a viewer interaction.",
        False,
    ),
    ("orders", "livepulse_orders", "Session orders (paid).", True),
    ("gmv_cny", "livepulse_gmv_cny", "Paid GMV of session orders, CNY.", True),
    ("refunds", "livepulse_refunds", "Refunds of session orders.", True),
    ("refunded_cny", "livepulse_refunded_cny", "Refunded amount of session orders, CNY.", True),
    ("follows", "livepulse_follows", "Follow interactions in sessions.", True),
    ("group_joins", "livepulse_group_joins", "Group joins by viewers during sessions.", True),
    ("product_clicks", "livepulse_product_clicks", "product_clicked events of sessions.", True),
    (
        "product_clickers",
        "livepulse_product_clickers",
        "Distinct (session, user) who clicked a product.",
        False,
    ),
)
OPERATOR_RATIOS: Final[tuple[tuple[str, str], ...]] = (
    ("livepulse_conversion_ratio", "Buyers / unique viewers."),
    ("livepulse_interaction_ratio", "Interacting viewers / unique viewers."),
    ("livepulse_aov_cny", "GMV / session orders, CNY."),
    ("livepulse_gpm_cny", "GMV x 1000 / entries (or unique viewers, per settings), CNY."),
    ("livepulse_uv_value_cny", "GMV / unique viewers, CNY."),
    ("livepulse_avg_watch_time_seconds", "Total watch time / unique viewers, seconds."),
    ("livepulse_click_through_ratio", "Product clickers / unique viewers."),
    ("livepulse_click_to_order_ratio", "Buyers / product clickers."),
)
WINDOW_GAUGES: Final[tuple[tuple[str, str], ...]] = (
    ("entries", "livepulse_window_entries"),
    ("orders", "livepulse_window_orders"),
    ("gmv_cny", "livepulse_window_gmv_cny"),
    ("product_clicks", "livepulse_window_product_clicks"),
    ("interactions", "livepulse_window_interactions"),
    ("unique_viewers", "livepulse_window_unique_viewers"),
    ("buyers", "livepulse_window_buyers"),
)
WINDOWS: Final[tuple[str, ...]] = ("1m", "5m", "10m", "prev_10m")
HISTOGRAMS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "watch_time_seconds",
        "livepulse_watch_time_seconds",
        "Watch time of each (session, user) viewer, seconds.",
    ),
    (
        "order_time_since_start_seconds",
        "livepulse_order_time_since_start_seconds",
        "Time from the session's start to each session order, seconds.",
    ),
    (
        "reply_latency_seconds",
        "livepulse_reply_latency_seconds",
        "Time from a viewer's question to the room's first reply to it, seconds.",
    ),
)


def operator_families() -> dict[str, Any]:
    """The operator figures' families (`streams.runtime.web.OperatorCollector`), labelled
    `level` and `id` (top N rooms and merchants, the rest `other`)."""
    labels = ["level", "id"]
    families: dict[str, Any] = {}
    for _key, name, doc, is_counter in OPERATOR_SUMS:
        family = CounterMetricFamily if is_counter else GaugeMetricFamily
        families[name] = family(name, doc, labels=labels)
    families["livepulse_viewers_peak"] = GaugeMetricFamily(
        "livepulse_viewers_peak",
        "Peak concurrent viewers over 1-minute buckets (for `other`, the largest).",
        labels=labels,
    )
    families["livepulse_viewers_peak_ceiling"] = GaugeMetricFamily(
        "livepulse_viewers_peak_ceiling",
        "The most livepulse_viewers_peak can be, only where that peak merged over partitions "
        "is a lower bound (never for `other`).",
        labels=labels,
    )
    for name, doc in OPERATOR_RATIOS:
        families[name] = GaugeMetricFamily(name, doc, labels=labels)
    for figure, name in WINDOW_GAUGES:
        families[name] = GaugeMetricFamily(
            name, f"{figure} in an event-time window.", labels=[*labels, "window"]
        )
    for _key, name, doc in HISTOGRAMS:
        # Its `_sum` series is `livepulse_watch_time_seconds_sum`, the total watch time.
        families[name] = HistogramMetricFamily(name, doc, labels=labels)
    families["livepulse_late_events"] = CounterMetricFamily(
        "livepulse_late_events",
        "Events more than the grace older than the newest of their topic and key (no window).",
    )
    families["livepulse_event_time_watermark_seconds"] = GaugeMetricFamily(
        "livepulse_event_time_watermark_seconds", "The largest event time seen, Unix seconds."
    )
    return families


def report_age_families() -> dict[str, GaugeMetricFamily]:
    """How old the report behind the claim and operator families is
    (`streams.runtime.web.ReportAgeCollector`): it is built off the event loop, in the
    background, so it trails the live counters."""
    return {
        name: GaugeMetricFamily(name, doc)
        for name, doc in (
            (
                "livepulse_report_age_seconds",
                "Seconds since the worker's state was read for the report behind the claim "
                "and operator families.",
            ),
            (
                "livepulse_report_events_behind",
                "Valid events applied since that state was read (0: the report is current).",
            ),
            (
                "livepulse_report_build_seconds",
                "Wall-clock seconds the latest report build took (in a forked child).",
            ),
        )
    }


#: The additive parts of every claim, summed over workers (`streams.runtime.claim_parts`).
CLAIM_PART_METRIC: Final[str] = "livepulse_claim_part"
#: Each claim's figure, interval, claimed value and verdict over every partition.
CLAIM_GLOBAL_METRIC: Final[str] = "livepulse_claim_global"
CLAIM_GLOBAL_VERDICT_METRIC: Final[str] = "livepulse_claim_global_verdict"


def claim_part_family() -> GaugeMetricFamily:
    """`livepulse_claim_part{claim, part}` (`streams.runtime.claim_parts.ClaimPartsCollector`)."""
    return GaugeMetricFamily(
        CLAIM_PART_METRIC,
        "An additive count behind a claim (sum over workers, then divide for the ratio).",
        labels=["claim", "part"],
    )


def global_claim_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    """The claims over every partition (`streams.runtime.claim_parts.GlobalClaimCollector`)."""
    return (
        GaugeMetricFamily(
            CLAIM_GLOBAL_METRIC,
            "A claim's figure over every partition (bound=observed), its 95% interval "
            "(low, high: one interval, from one report) and the claimed value.",
            labels=["claim", "bound"],
        ),
        GaugeMetricFamily(
            CLAIM_GLOBAL_VERDICT_METRIC,
            "1 for the claim's verdict over every partition, 0 for the others.",
            labels=["claim", "verdict"],
        ),
    )


CONSUMER_LAG_METRIC: Final[str] = "livepulse_consumer_lag_records"


def consumer_lag_family() -> GaugeMetricFamily:
    """`livepulse_consumer_lag_records{topic}` (`streams.runtime.consumer_lag`)."""
    return GaugeMetricFamily(
        CONSUMER_LAG_METRIC,
        "Records on the broker the worker has not processed yet (highwater - position).",
        labels=["topic"],
    )


UNREAD_PARTITIONS_METRIC: Final[str] = "livepulse_contract_partitions_unread"


def unread_partitions_family() -> GaugeMetricFamily:
    """`livepulse_contract_partitions_unread{topic}` (`streams.runtime.topology`)."""
    return GaugeMetricFamily(
        UNREAD_PARTITIONS_METRIC,
        "Partitions of a contract topic added after the worker laid out its state: not read.",
        labels=["topic"],
    )


# -- the live screen's breakdowns (streams.runtime.screen.ScreenCollector) ------------------

#: Per-source figures for /metrics: (report key, metric name, help, is a counter).
SOURCE_FIGURES: Final[tuple[tuple[str, str, str, bool], ...]] = (
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
PRODUCT_FIGURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("gmv_cny", "livepulse_top_product_gmv_cny", "GMV of the product ranked by GMV, CNY."),
    ("clicks", "livepulse_top_product_clicks", "Clicks on the product ranked by GMV."),
    ("units", "livepulse_top_product_units", "Units sold of the product ranked by GMV."),
    (
        "click_to_order",
        "livepulse_top_product_click_to_order_ratio",
        "Clickers who ordered / clickers, of the product ranked by GMV.",
    ),
)


def screen_families() -> dict[str, Any]:
    """The entry sources (label `source`: the contract's enum) and the top products (label
    `rank`, 1..N; never a sku_id)."""
    families: dict[str, Any] = {}
    for _key, name, doc, is_counter in SOURCE_FIGURES:
        kind = CounterMetricFamily if is_counter else GaugeMetricFamily
        families[name] = kind(name, doc, labels=["source"])
    for _key, name, doc in PRODUCT_FIGURES:
        families[name] = GaugeMetricFamily(name, doc, labels=["rank"])
    families["livepulse_products"] = GaugeMetricFamily(
        "livepulse_products", "Products (sku_id) clicked or ordered in sessions."
    )
    return families
