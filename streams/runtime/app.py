"""The faust application of a worker, built from `Settings` by `create_app`.

Nothing attaches itself to it at import time and faust's autodiscovery is off: the worker's
composition root (`streams.runtime.worker.Worker`) builds the app here and hands it the ingest,
the state keeper, the timers and the web views.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.runtime.batch_consumer import SCHEME, BatchApp
from streams.runtime.settings import Settings


def faust_broker_url(settings: Settings) -> str:
    """faust's broker URL for `settings.bootstrap` (`kafka://h1:p1;h2:p2`)."""
    return "kafka://" + ";".join(settings.bootstrap_servers)


def _consumer_url(settings: Settings) -> str:
    """The consumer's transport: the batch drain, reading committed records only
    (`streams.runtime.batch_consumer`)."""
    # Importing streams.runtime.batch_consumer registered the transport with faust.
    return f"{SCHEME}://" + ";".join(settings.bootstrap_servers)


def broker_credentials(settings: Settings) -> Any:
    """faust's broker credentials for the settings' security protocol (None for PLAINTEXT)."""
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # Settings validates this
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=settings.ssl_context(),
            mechanism=settings.sasl_mechanism or "PLAIN",
        )
    if settings.security_protocol == "SSL":
        # An explicit context: faust's SSLCredentials() without one cannot build its own.
        return faust.SSLCredentials(settings.ssl_context())
    return None


def create_app(settings: Settings) -> BatchApp:
    """A faust app configured from `settings` alone (faust's own environment variables, such as
    `WEB_PORT` or `BROKER_URL`, would otherwise override these arguments: `env={}`)."""
    app = BatchApp(
        settings.app_id,
        env={},
        origin="streams.runtime.app",
        autodiscover=False,
        broker=faust_broker_url(settings),
        broker_consumer=_consumer_url(settings),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        # At least once: the batch consumer commits a partition's offsets after a snapshot
        # covering them (streams.runtime.keeper); faust itself acks and commits nothing.
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=10_000,
        broker_commit_interval=2.0,
        broker_max_poll_records=settings.batch_max_records,
        # aiokafka's `max_partition_fetch_bytes`; the bound of a whole request, which faust does
        # not pass, is set by the batch consumer (`BatchApp.fetch_max_bytes`). Issue 6 found
        # 1 MiB a partition left the consumer waiting on fetches (~50k records/s at 0.5 core,
        # bench/NOTES.md) and chose 8 MiB; Session 17 measured 1 MiB a partition and 4 MiB a
        # request draining a backlog at as many records per CPU second as 8 MiB and 50 MiB,
        # 63 MB lower at its peak, on a loaded machine (bench/RESULTS.md, "Session 17").
        consumer_max_fetch_size=settings.batch_fetch_bytes,
        # The producer publishes dead letters only, awaited before the batch is acked: a
        # linger would be paid by every batch that has one (bench/NOTES.md).
        producer_linger_ms=0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        # No tables: no standby replicas (faust's co-partitioning assignor is forced by
        # streams.runtime.batch_consumer, and would otherwise also plan standbys).
        table_standby_replicas=0,
        web_enabled=True,
    )
    app.fetch_min_bytes = settings.batch_fetch_min_bytes
    app.fetch_wait_ms = settings.batch_fetch_wait_ms
    app.fetch_max_bytes = settings.batch_fetch_max_bytes
    app.fetch_idle_wait_ms = settings.batch_fetch_idle_wait_ms
    app.fetch_behind_wait_ms = settings.batch_fetch_behind_wait_ms
    return app
