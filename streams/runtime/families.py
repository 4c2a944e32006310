"""Every Prometheus family the worker exports, defined here and nowhere else (docs/metrics.md).

Labels are bounded sets only (topics, event types, reasons, claims, verdicts, top-N rooms and
merchants with the rest folded into `other`): never a user, order or session id. The counters
live in one registry per worker (`WorkerMetrics`); the figures computed at scrape time are
built by the collectors (`streams.runtime.web`, `claim_parts`, `consumer_lag`, `topology`)
from the family factories below.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

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
