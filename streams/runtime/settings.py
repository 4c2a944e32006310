"""The one configuration object of livepulse: read once (env prefix `LIVEPULSE_`), then passed."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.core.ledger import DEFAULT_USER_HORIZON_DAYS
from agents.core.periods import PeriodSettings
from schemas import TOPIC_BY_TYPE

#: The contract topics (shared/event-contract.md), before any `topic_prefix`.
CONTRACT_TOPICS: Final[tuple[str, ...]] = tuple(dict.fromkeys(TOPIC_BY_TYPE.values()))
DEADLETTER_TOPIC: Final[str] = "live.deadletter"
#: Every consumer of the contract topics reads only what transactional producers committed:
#: records of aborted transactions and transaction markers are never handed on.
ISOLATION_LEVEL: Final[str] = "read_committed"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Everything the worker, the replayer and the demo need to know about their surroundings.

    Values come from keyword arguments first, then `LIVEPULSE_*` environment variables, then
    the defaults below. The object is frozen: build a new one (`model_copy(update=...)`)
    rather than changing it.
    """

    model_config = SettingsConfigDict(
        env_prefix="LIVEPULSE_", frozen=True, extra="forbid", validate_default=True
    )

    bootstrap: str = Field(
        default="127.0.0.1:9092", min_length=1, description="host:port[,host:port...]"
    )
    app_id: str = Field(default="livepulse", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Path("data")
    partitions: int = Field(default=4, ge=1, le=1024)

    # Topic names are the contract's, optionally under a prefix (the demo gives each run its
    # own prefix so a re-run never sees the previous run's records).
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    contract_topics: tuple[str, ...] = CONTRACT_TOPICS
    deadletter_topic: str = DEADLETTER_TOPIC

    # Batch ingestion (streams.runtime.batch_consumer): each fetch of up to `batch_max_records`
    # records goes to the ledger in one call, below faust's per-message stream path (about
    # 75 us a record here, bench/NOTES.md).
    batch_max_records: int = Field(default=10_000, ge=1, le=1_000_000)
    # The most a fetch brings per partition with batch ingestion (aiokafka's
    # `max_partition_fetch_bytes`, through faust's `consumer_max_fetch_size`), and the most
    # one fetch request brings over all its partitions (aiokafka's `fetch_max_bytes`; the
    # broker still returns a first record batch larger than either). A partition whose
    # records are held is not fetched again until they are handed on, and the others are
    # fetched meanwhile (one request in flight per broker): the record sets the worker holds
    # fetched and not yet applied are up to `batch_fetch_bytes` times the assigned partitions
    # (20 MiB for 20), arriving at most `batch_fetch_max_bytes` a request. 1 MiB and 4 MiB
    # (8 MiB and aiokafka's 50 MiB before issue 17's Session 17): draining a backlog of
    # 300,000 records the worker's peak RSS was 63 MB lower for as many records per CPU
    # second (bench/RESULTS.md, "Session 17 (issue 17)").
    batch_fetch_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    batch_fetch_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    # The broker holds a fetch of the batch path until `batch_fetch_min_bytes` are there or
    # `batch_fetch_wait_ms` has passed (streams.runtime.batch_consumer, FETCH_MIN_BYTES). While
    # any assigned partition is idle (an empty topic, a drained one) that is one fetch request
    # per wait: ~90 a second at 10 ms, ~0.4 ms of the worker's CPU each (bench/RESULTS.md,
    # Session 14, "the worker's transport, fetch by fetch").
    batch_fetch_min_bytes: int = Field(default=1024 * 1024, ge=1, le=256 * 1024 * 1024)
    batch_fetch_wait_ms: int = Field(default=10, ge=1, le=60_000)
    # Once the consumer has waited a second with no record on any partition, its fetches ask
    # for 1 byte and wait up to this long instead (so the broker answers as soon as a record
    # is there, and an idle worker sends ~2 fetches a second, not ~90), until a fetch brings
    # records again (streams.runtime.batch_consumer, `BatchConsumer._fetch_mode`). 0: the
    # fetch settings above always.
    batch_fetch_idle_wait_ms: int = Field(default=500, ge=0, le=60_000)
    # While the consumer is behind (its last fetch handed on a whole `batch_max_records`
    # batch), its fetches wait up to this long instead of `batch_fetch_wait_ms`: they are then
    # of the partitions holding no fetched records, drained or empty ones, and came back empty
    # every 10 ms, 0.9-1.2 us of the worker's CPU a record drained (bench/RESULTS.md, "Session
    # 18 (issue 19)"); a partition with records on the broker still comes at once. Back to
    # `batch_fetch_wait_ms` with the first fetch that is not a whole batch. 0: never.
    batch_fetch_behind_wait_ms: int = Field(default=100, ge=0, le=60_000)
    # Paced garbage collection (streams/runtime/gcpace.py): every this many records, collect what is
    # young and freeze the survivors, so full collections stop re-walking the ledger's facts;
    # 0 leaves CPython's default collector alone. 10,000 (50,000 before issue 19's Session 10):
    # the longest collection in the worker follows what survives between two, 0.36-0.60x of
    # 50,000's in 4 interleaved pairs, 6-7 ms of CPU in the quieter ones (bench/RESULTS.md).
    gc_pace_records: int = Field(default=10_000, ge=0, le=100_000_000)
    # The young generation's threshold while pacing (net allocations of tracked objects
    # between two automatic young collections); 0: `GC_YOUNG_PER_RECORD` times
    # `batch_max_records` (50,000 at 10,000 records a fetch), so that a fetch's own records
    # (an aiokafka record each, and a `RawRecord` before issue 19) set off none, and the paced
    # collection between fetches, with the fetch freed, does the young generation's work
    # (bench/RESULTS.md, "Session 18 (issue 19)"). CPython's default is 700; the pacer's before
    # was 10,000.
    gc_young_threshold: int = Field(default=0, ge=0, le=100_000_000)
    # After a paced collection, at most this often, the memory glibc's arenas hold free is
    # given back to the system (`malloc_trim(0)`, streams/runtime/gcpace.py): the RSS can then
    # fall after a peak of what the worker allocated for a moment (bench/RESULTS.md, "Session
    # 16 (issue 17)"). 0: never; nothing without glibc or the pacing.
    malloc_trim_s: float = Field(default=10.0, ge=0, le=86_400)
    # Blocks of this many KiB or more are mapped on their own and given back when freed, at a
    # fixed threshold (glibc's `mallopt(M_MMAP_THRESHOLD)`, streams/runtime/memory.py), set
    # when the worker starts. 0: glibc's own threshold, which rises to the largest block
    # freed, so the worker's large transient buffers come from its arenas and what they
    # leave free stays in the RSS. 128 (glibc's own starting value, kept): glibc's free bytes
    # 4-8 MB instead of 18-35 MB in the 200-day soaks' last month, their RSS 13 MB lower on
    # average paced and 21 MB unpaced, records per CPU second within the runs' noise
    # (bench/RESULTS.md, "Session 18 (issue 17)"). Nothing without glibc.
    malloc_mmap_threshold_kb: int = Field(default=128, ge=0, le=32 * 1024)
    # The interpreter's thread switch interval in the worker (`sys.setswitchinterval`), in ms:
    # faust's consumer thread (aiokafka's fetcher) waits up to this long for the GIL at each
    # step of a fetch (sending its request, reading the answer, handing it to the event loop)
    # while the event loop applies a batch. CPython's default is 5.
    gil_switch_interval_ms: float = Field(default=5.0, gt=0, le=1000)
    # A worker that stops heartbeating (killed, a lost host) leaves the group after this long,
    # and its partitions move on (faust's default is 60 s).
    session_timeout_s: float = Field(default=10.0, ge=6, le=300)
    # State snapshots (streams/runtime/statestore.py): a partition's state is written to the
    # changelog
    # topic and the local RocksDB store when it has been idle this long with unsaved records,
    # when it is revoked or the worker stops, and while busy at most every
    # `snapshot_interval_s`, and then only if snapshots took at most `snapshot_max_share` of the
    # time since the last one (a snapshot costs time proportional to the partition's state);
    # the share never holds off an idle partition's snapshot.
    snapshot_interval_s: float = Field(default=10.0, gt=0, le=86_400)
    snapshot_idle_s: float = Field(default=1.0, gt=0, le=3600)
    snapshot_max_share: float = Field(default=0.1, gt=0, le=1)
    # Take the periodic and idle snapshots in a forked child (streams/runtime/forkdump.py), so the
    # worker only pauses for the fork, not for the whole dump; ignored where os.fork is missing.
    snapshot_fork: bool = True
    # With several workers the group's leader rebuilds the report merged over every
    # partition's snapshot this often, for the group claims' Prometheus parts.
    global_report_interval_s: float = Field(default=10.0, gt=0, le=3600)
    # /metrics recomputes the claims at most this often while events keep arriving.
    report_max_age_s: float = Field(default=2.0, ge=0, le=3600)

    # Operator metrics (docs/metrics.md, "Operator metrics"): an event more than this grace
    # older than the newest event of its own topic and record key is late and left out of
    # the windows (agents/core/windows.py).
    window_grace_s: float = Field(default=120.0, ge=0, le=10 * 365 * 86_400)
    # State retention (docs/design.md, "Worker state: what is kept"): an event more than this
    # older (by `ts`) than the newest event of its own topic in its partition is expired (not
    # applied, counted in the report's `retention.expired`), and event ids are remembered for
    # duplicates only this long in event time. 0: every id for ever, nothing expires.
    dedupe_window_s: float = Field(default=7 * 86_400, ge=0, le=10 * 365 * 86_400)
    # An event stamped more than this ahead of the worker's wall clock is applied but does not
    # move its topic's horizon (counted in `retention.future`), so one event stamped far in the
    # future cannot expire the events after it. 0: no cap (any `ts` moves the horizon).
    future_tolerance_s: float = Field(default=86_400, ge=0, le=10 * 365 * 86_400)
    # A refund counts for a payment of its order at or before it and at most this many days
    # before it; any other refund counts nowhere (the report's `retention.late_refunds` and
    # `unmatched_refunds`). 0: any payment of its order id, whenever (before issue 17).
    refund_horizon_days: float = Field(default=90, ge=0, le=10 * 365)
    # With the session fold: a user whose folded per-user rows (the buyer, dweller and month
    # rows the intervals cluster by user) have not changed for this many days of event time
    # is retired into the intervals' cluster sums and their rows dropped (docs/design.md,
    # "The user horizon"). 0: every user's rows kept for ever.
    user_horizon_days: float = Field(default=DEFAULT_USER_HORIZON_DAYS, ge=0, le=10 * 365)
    # With the session fold: `group_repurchase_30d`'s decided (merchant, user) pairs with no
    # order for this many days of event time are forgotten, and a user who buys from the
    # merchant again after that counts as a first order again (eligible pairs then exceed the
    # exact count by at most the pairs forgotten: docs/design.md, "First orders"). 0, the
    # default: every decided pair kept (18 bytes a pair), exact as claims.md defines it.
    first_order_horizon_days: float = Field(default=0, ge=0, le=10 * 365)
    # With the session fold: an orders partition the worker's refund table has read to its
    # end with no new record for this many seconds (wall clock) no longer holds the order fold
    # back at its last horizon (docs/design.md, "The order fold": as Kafka Streams stops
    # waiting for an empty partition after `max.task.idle.ms`). A refund it gets later,
    # stamped before the fold's horizon, is counted (`/status` refunds.after_fold). 0: an idle
    # partition holds the fold until it moves.
    refund_idle_s: float = Field(default=300, ge=0, le=30 * 86_400)
    # With the session fold: a groups partition the worker's membership table has read to its
    # end with no new record for this many seconds, counted while the groups topic moves, no
    # longer holds summaries back (docs/design.md, "Membership at the summary"); until then a
    # groups partition with no event yet holds every summary back. A group event it gets later,
    # stamped before the horizon given, is counted (`/status` membership.after_horizon). 0: a
    # quiet or empty groups partition holds every summary until it moves.
    # 60 s: a producer writing partition after partition (librdkafka's batches) reaches each
    # within seconds, and summaries that wait change no figure.
    groups_idle_s: float = Field(default=60, ge=0, le=30 * 86_400)
    # With the session fold: a partition that has applied no record of the contract topics
    # for this many seconds (wall clock) announces an idle group floor (docs/design.md, "Group
    # events compacted", in a worker): its horizons no longer hold the other partitions'
    # group compaction back, only the lookups of the state it holds do (the refund table's
    # idle rule, `refund_idle_s`, for the group floors). An event it applies later stamped
    # before the floor it announced is counted (`/status` month_rows.after_group_floor): its
    # membership lookups may read group events already compacted. 0: an idle partition holds
    # every partition's compaction at its horizons until it gets a record.
    group_floor_idle_s: float = Field(default=300, ge=0, le=30 * 86_400)
    # With the session fold: a partition that has applied no record of the contract topics
    # for this many seconds (wall clock) and has read each of them to its end moves its
    # horizons up to the newest summaries' horizon another partition announced (docs/
    # design.md, "Idle horizons follow the others'"), so that it announces its months
    # closed and its first orders' cutoff as the others do: without it a partition that
    # gets no more records (a topic with more partitions than rooms) holds the other
    # partitions' month rows, first orders and group events for as long as the stream runs.
    # An event it applies later stamped before its topic's new horizon is expired
    # (`counts.expired`), as any late event. 0: its horizons move only with its own events.
    horizon_idle_s: float = Field(default=300, ge=0, le=30 * 86_400)
    # Summarize each closed session once its session horizon (its end + 7 days) is past every
    # topic's dedupe window (docs/design.md, "The session horizon"): its viewers, orders and
    # interacting users are replaced by the sums the claims read. Membership at the summary
    # comes from a table of the whole groups topic each worker reads (streams/runtime/
    # membership.py). The operator board and the live screen's page read the summaries;
    # `livepulse analyze` honours it too. On by default: a stream never ends,
    # and without it every closed session's raw facts are kept for ever (`false` keeps them:
    # the figures claims.md defines exactly, at the cost of a state that grows with every
    # record; bench/RESULTS.md, "Session 12 (issue 17)", measures on against off).
    fold_sessions: bool = True
    # With the session fold: the operator levels' concurrency by minute (every room's,
    # merchant's and the overall peak viewers) is kept per minute for this many days of event
    # time before the newest event; older minutes, once no session can still add to them, are
    # settled into each level's peak (docs/design.md, "The board's concurrency by minute"). The
    # peaks stay exact in one ledger; merged over partitions, a level settled in several is at
    # least each one's. 0: every minute kept.
    board_horizon_days: float = Field(default=90, ge=0, le=10 * 365)
    # With the session fold: the settled runs (consecutive minutes at one count) each level's
    # curve keeps, the largest counts first, for a merge over partitions: its state's bound
    # (32 bytes a run), whatever the stream's length (docs/design.md, "The board's concurrency
    # by minute"). Fewer: a merged peak more often a lower bound (`board_peaks_bounded`).
    board_runs_kept: int = Field(default=4096, ge=1, le=1 << 20)
    # With the session fold: each level's summarized buyers (its `paying_users`) are kept as
    # ids up to this many, then as a 16 KiB HyperLogLog (0.81% relative standard error):
    # the bound of that state whatever the stream's length (docs/design.md, "The user horizon
    # and the distinct payers").
    distinct_exact_limit: int = Field(default=10_000, ge=1, le=10_000_000)
    # With the session fold: the most cells of `price_dwell_association`'s folded rank table
    # (`sketch.RankTable`, `sketch.RANK_CELL_LIMIT`), coarsened past it: the bound of that
    # state whatever the stream's length, rho within the table's stated bound
    # (docs/metrics.md, "Sketched figures").
    rank_cell_limit: int = Field(default=8192, ge=4, le=1 << 24)
    # Claims by period (docs/metrics.md, "Claims by period"): the rolling horizon in days of
    # event time before the newest event, and how many closed CST days and months are kept
    # frozen and reported (as many open ones again at most). Off: no claims by period (no
    # `periods` in the report, no period families, and with the session fold no summary held
    # back for a month not closed).
    claim_periods: bool = True
    claim_horizon_days: int = Field(default=7, ge=1, le=3660)
    claim_days_kept: int = Field(default=62, ge=1, le=3660)
    claim_months_kept: int = Field(default=24, ge=1, le=1200)
    # /metrics labels name only the top N rooms and merchants by entries; the rest is `other`.
    label_top_n: int = Field(default=20, ge=0, le=1000)
    # GPM = GMV x 1000 / this: entries (views) or unique viewers.
    gpm_denominator: Literal["entries", "unique_viewers"] = "entries"

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    #: The simulated stream file (with its `.truth.json` beside it) that the contract topics were
    #: filled from, when they were: the worker's `/report` then says its verdicts describe the
    #: simulated rooms (the demo and the compose stack set it; real producers leave it unset).
    simulated_source: Path | None = None

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl and (self.sasl_username is None or self.sasl_password is None):
            raise ValueError(f"{self.security_protocol} needs sasl_username and sasl_password")
        if not uses_sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism needs a SASL protocol, not {self.security_protocol}")
        return self

    def to_env(self) -> dict[str, str]:
        """These settings as `LIVEPULSE_*` variables, for a child process (secrets included)."""
        env: dict[str, str] = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple):
                value = json.dumps(list(value))
            env[f"LIVEPULSE_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """The broker-side name of a contract topic (the prefix applied)."""
        return f"{self.topic_prefix}{name}"

    @property
    def window_grace_ms(self) -> int:
        """`window_grace_s` in whole milliseconds."""
        return round(self.window_grace_s * 1000)

    @property
    def dedupe_window_ms(self) -> int | None:
        """`dedupe_window_s` in whole milliseconds, None for 0 (no window)."""
        return round(self.dedupe_window_s * 1000) or None

    @property
    def future_tolerance_ms(self) -> int | None:
        """`future_tolerance_s` in whole milliseconds, None for 0 (no cap)."""
        return round(self.future_tolerance_s * 1000) or None

    @property
    def period_settings(self) -> PeriodSettings | None:
        """The claims by period's settings (`agents.core.periods`); None when off."""
        if not self.claim_periods:
            return None
        return PeriodSettings(self.claim_horizon_days, self.claim_days_kept, self.claim_months_kept)

    @property
    def user_horizon_ms(self) -> int | None:
        """`user_horizon_days` in whole milliseconds, None for 0 (users kept for ever)."""
        return round(self.user_horizon_days * 86_400_000) or None

    @property
    def first_order_horizon_ms(self) -> int | None:
        """`first_order_horizon_days` in whole milliseconds, None for 0 (every decided
        (merchant, user) pair kept)."""
        return round(self.first_order_horizon_days * 86_400_000) or None

    @property
    def board_horizon_ms(self) -> int | None:
        """`board_horizon_days` in whole milliseconds, None for 0 (every minute kept)."""
        return round(self.board_horizon_days * 86_400_000) or None

    @property
    def refund_horizon_ms(self) -> int | None:
        """`refund_horizon_days` in whole milliseconds, None for 0 (no horizon)."""
        return round(self.refund_horizon_days * 86_400_000) or None

    @property
    def source_topics(self) -> tuple[str, ...]:
        """The broker-side names of the contract topics the worker reads."""
        return tuple(self.topic(name) for name in self.contract_topics)

    @property
    def month_rows_topic(self) -> str | None:
        """The broker-side name of the worker group's internal topic of `group_spend_multiple`'s
        closed-month rows (one per app id, like the changelog), None without the session fold
        (streams/runtime/monthrows.py)."""
        if not self.fold_sessions:
            return None
        return self.topic(f"{self.app_id}-month-rows")

    @property
    def state_topics(self) -> tuple[str, ...]:
        """The topics whose partition p is read into partition p's state: the contract topics,
        and with the session fold the month-rows topic."""
        month_rows = self.month_rows_topic
        return self.source_topics if month_rows is None else (*self.source_topics, month_rows)

    @property
    def deadletter(self) -> str:
        """The broker-side name of the dead-letter topic."""
        return self.topic(self.deadletter_topic)

    @property
    def changelog(self) -> str:
        """The broker-side name of the worker group's state changelog topic (one per app id)."""
        return self.topic(f"{self.app_id}-state-changelog")

    @property
    def state_dir(self) -> Path:
        """This worker's RocksDB state store (one data directory per worker)."""
        return self.data_dir / f"{self.app_id}-state"

    @property
    def bootstrap_servers(self) -> list[str]:
        return [host.strip() for host in self.bootstrap.split(",") if host.strip()]

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context (with `ssl_cafile` if given), or None without TLS."""
        if not self.uses_tls:
            return None
        cafile = str(self.ssl_cafile) if self.ssl_cafile else None
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka's producer, consumer and admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked by _check_security
            kwargs["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs
