"""The worker's HTTP views: `/metrics` (Prometheus), `/report` (claims JSON), `/status` (positions).

Every figure is built from the worker's ledger and operator board by `agents.core.build_report`,
in a child forked from the worker so that the event loop goes on applying batches meanwhile
(`ReportCache`); scrapes read the newest report and say how old it is, `/report` waits for one
that covers the state at the request. `WorkerViews` registers the collectors and the pages on
one worker's app and registry.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Final

import faust
import orjson
from faust.types import TP
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from agents.core import Ledger, build_report
from agents.core.operator import OperatorBoard
from agents.core.periods import finish_frozen, with_periods
from streams.runtime.claim_parts import VERDICTS, ClaimPartsCollector, GlobalClaimCollector
from streams.runtime.consumer_lag import ConsumerLagCollector
from streams.runtime.families import (
    HISTOGRAMS,
    OPERATOR_SUMS,
    WINDOW_GAUGES,
    WINDOWS,
    claim_families,
    operator_families,
    report_age_families,
)
from streams.runtime.forkdump import CAN_FORK, fork_bytes
from streams.runtime.global_report import global_report
from streams.runtime.memory import memory_status
from streams.runtime.provenance import mark_if_simulated
from streams.runtime.screen import register_screen
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState

log = logging.getLogger(__name__)

#: A report child that has not delivered by then is killed (and the request builds in-process).
REPORT_TIMEOUT_S: Final[float] = 600.0
#: The report child's niceness (added to the worker's): the batches go first on a shared core,
#: but less so than for the snapshot child (19), since a `/report` request may be waiting.
REPORT_CHILD_NICE: Final[int] = 5
#: CPU seconds a report may spend finishing a single partition's frozen figures in the worker
#: before its fork (`WorkerViews._finish_frozen_figures`): a day's are ~20 ms.
FINISH_BUDGET_S: Final[float] = 0.05


class ReportCache:
    """The latest report of a changing state, rebuilt when it has changed and is old enough.

    `source` gives the state to report on; `version` changes whenever the state does.

    With `forked` (the worker), a build runs in a child forked from the worker
    (`streams.runtime.forkdump.fork_bytes`): the child reads the state as it was at the fork
    (copy-on-write), merges the partitions, builds the report and sends its JSON back, while
    the event loop goes on applying batches (the build was 1.7 s of CPU at 200,000 records,
    all of it on the loop: bench/RESULTS.md, Session 8). Then `get` never builds: it returns
    the newest report (labelled with its `as_of`) and starts a build in the background when the
    state changed and the report is `max_age_s` old; `fresh()` waits for one that covers the
    state as of the call. Without `forked`, or where the platform cannot fork, `get` builds
    in-process (tests, the offline analyzer).
    """

    def __init__(
        self,
        source: Callable[[], tuple[Ledger, OperatorBoard | None]],
        version: Callable[[], Hashable],
        build: Callable[[Ledger, OperatorBoard | None], dict[str, Any]] = build_report,
        *,
        forked: bool = False,
        events: Callable[[], int] | None = None,
        timeout_s: float = REPORT_TIMEOUT_S,
        before_fork: Callable[[], object] | None = None,
    ) -> None:
        self._source = source
        #: Called in this process before each forked build: what the child would compute and
        #: could not write back, computed here once (the frozen figures, `periods.FrozenFigures`).
        self._before_fork = before_fork
        self._version_of = version
        self._build = build
        self._report: dict[str, Any] | None = None
        self._version: Hashable = None
        self._built_at = 0.0
        self.forked = forked and CAN_FORK
        self._events = events if events is not None else lambda: 0
        self._timeout_s = timeout_s
        #: What the newest report covers: the state's wall-clock time and valid events when it
        #: was read, and how long the build took (s).
        self._as_of: dict[str, Any] = {}
        #: Builds started so far, and the start number of the newest report's build.
        self._starts = 0
        self._serial = 0
        self._building: asyncio.Task[None] | None = None
        #: Seconds the last build took (wall clock: the fork, the child's build, the parse), and
        #: when it ended (monotonic).
        self.build_s = 0.0
        self._ended = 0.0
        #: Builds done, and failed children (after which that request built in-process).
        self.builds = 0
        self.failures = 0

    @classmethod
    def of_ledger(cls, ledger: Ledger, board: OperatorBoard | None = None) -> ReportCache:
        """A cache over one ledger (and board) that change in place."""

        def version() -> Hashable:
            counts = ledger.counts
            return (counts.valid, counts.rejected, counts.duplicates, counts.expired, counts.future)

        return cls(lambda: (ledger, board), version)

    def get(self, max_age_s: float = 0.0) -> dict[str, Any]:
        """The report; a cached one if nothing changed since, or if it is under `max_age_s` old.

        Forked (and called on a running event loop): the newest report built so far, never
        built here (a build starts in the
        background when the state changed and the report is `max_age_s` old); before the first
        build ends, a report with no claims and no operator section (`as_of` says so).
        """
        version = self._version_of()
        now = time.monotonic()
        stale = version != self._version and now - self._built_at >= max_age_s
        if not self.forked or not _loop_running():
            if self._report is None or stale:
                self._build_here(version)
            assert self._report is not None
            return self._report
        # A child builds at most half the time for scrapes (a build ends, as long again
        # before the next): on a machine of two cores the other one also serves the broker.
        if self._report is None or (stale and now - self._ended >= self.build_s):
            self._start()
        return self.labelled()

    def labelled(self) -> dict[str, Any]:
        """The newest report, with `as_of`: when its state was read (`at`, Unix seconds: its
        age is the reader's clock minus that, not written in, so that two reads of one report
        are equal), its valid events, whether the state has changed since (`current`) and by
        how many valid events (`events_since`), and its build time (`build_s`)."""
        if self._report is None:
            events = self._events()
            return {
                "claims": {},
                "events": {"valid": events},
                "as_of": {
                    "pending": True,
                    "current": False,
                    "events": None,
                    "events_since": events,
                },
            }
        as_of = self._as_of
        age = {
            "current": self._version_of() == self._version,
            "events_since": max(0, self._events() - as_of["events"]) if "events" in as_of else None,
        }
        return {**self._report, "as_of": {**as_of, **age}}

    def age_s(self) -> float | None:
        """Seconds since the state behind the newest report was read (None: no report yet)."""
        at = self._as_of.get("at")
        return None if at is None else max(0.0, time.time() - at)

    async def fresh(self) -> dict[str, Any]:
        """A report covering the state as of this call: the cached one if the state has not
        changed since it was read, else the next build (the event loop goes on meanwhile)."""
        if not self.forked:
            return self.get()
        version = self._version_of()
        floor = self._starts  # a build started after this call covers it
        while not (self._report is not None and (self._version == version or self._serial > floor)):
            building = self._start()
            try:
                await asyncio.shield(building)
            except Exception as exc:  # the child failed: this once, in-process
                log.warning("report build in a forked child failed (%s): building in-process", exc)
                self._build_here(self._version_of())
        return self.labelled()

    async def first(self) -> None:
        """Wait until there is a report (the first build), if none was built yet."""
        if self.forked and self._report is None:
            await self.fresh()

    def _build_here(self, version: Hashable) -> None:
        began, at, events = time.monotonic(), time.time(), self._events()
        ledger, board = self._source()
        self._report = self._build(ledger, board)
        self._starts += 1
        self._version, self._built_at, self._serial = version, began, self._starts
        self._ended = time.monotonic()
        self.build_s = self._ended - began
        self._as_of = {"at": at, "events": events, "build_s": round(self.build_s, 3)}
        self.builds += 1

    def _start(self) -> asyncio.Task[None]:
        """The build in flight, or a new one (the fork happens here, between two batches)."""
        if self._building is not None and not self._building.done():
            return self._building
        self._starts += 1
        serial, version = self._starts, self._version_of()
        began, at, events = time.monotonic(), time.time(), self._events()
        source, build = self._source, self._build

        def produce() -> bytes:  # runs in the child, on the state as it was at the fork
            ledger, board = source()
            return orjson.dumps(build(ledger, board), option=_JSON_OPTIONS)

        if self._before_fork is not None:
            self._before_fork()

        try:
            child = fork_bytes(produce, self._timeout_s, nice=REPORT_CHILD_NICE, what="report")
        except OSError as exc:  # out of processes or memory: in-process this time
            log.warning("fork for the report failed (%r): building in-process", exc)

            async def here() -> None:
                self._build_here(version)

            self._building = asyncio.ensure_future(here())
            return self._building

        async def collect() -> None:
            try:
                blob = await asyncio.get_running_loop().run_in_executor(None, child.collect)
            except BaseException:
                child.kill()
                self.failures += 1
                raise
            report = orjson.loads(blob)
            self._report, self._version, self._built_at, self._serial = (
                report,
                version,
                began,
                serial,
            )
            self._ended = time.monotonic()
            self.build_s = self._ended - began
            self._as_of = {"at": at, "events": events, "build_s": round(self.build_s, 3)}
            self.builds += 1

        self._building = asyncio.ensure_future(collect())
        # A build nobody awaits (started by a scrape) must not log "exception never retrieved".
        self._building.add_done_callback(_retrieve)
        return self._building

    def stop(self) -> None:
        """Kill the report child in flight, if any (the worker is stopping)."""
        if self._building is not None and not self._building.done():
            self._building.cancel()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # called outside the worker's loop (a test's collector): build here
        return False
    return True


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("report build failed: %s", task.exception())


class ClaimCollector:
    """Prometheus gauges of every claim's figure, interval, claimed value and verdict over
    this worker's partitions (the global ones:
    `streams.runtime.claim_parts.GlobalClaimCollector`)."""

    def __init__(self, reports: ReportCache, max_age_s: float) -> None:
        self._reports = reports
        self._max_age_s = max_age_s

    def describe(self) -> Iterator[Metric]:
        yield from claim_families().values()

    def collect(self) -> Iterator[Metric]:
        families = claim_families()
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
        periods = (report.get("periods") or {}).get("claims") or {}
        for claim_id, figures in periods.items():
            latest = {
                "day": (figures.get("day") or [None])[-1],
                "month": (figures.get("month") or [None])[-1],
                "rolling": figures.get("rolling"),
            }
            for period, entry in latest.items():
                for key in ("observed", "ci_low", "ci_high"):
                    value = (entry or {}).get(key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        families[f"period_{key}"].add_metric([claim_id, period], float(value))
        yield from families.values()


class ReportAgeCollector:
    """How old the report behind the claim and operator families is (`ReportCache`)."""

    def __init__(self, reports: ReportCache) -> None:
        self._reports = reports

    def describe(self) -> Iterator[Metric]:
        yield from report_age_families().values()

    def collect(self) -> Iterator[Metric]:
        families = report_age_families()
        as_of = {**(self._reports.labelled().get("as_of") or {}), "age_s": self._reports.age_s()}
        for key, name in (
            ("age_s", "livepulse_report_age_seconds"),
            ("events_since", "livepulse_report_events_behind"),
            ("build_s", "livepulse_report_build_seconds"),
        ):
            if as_of.get(key) is not None:
                families[name].add_metric([], float(as_of[key]))
        yield from families.values()


OTHER: Final[str] = "other"


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def fold_levels(operator: dict[str, Any], top_n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(level, id, figures) for /metrics: overall as `all`, then the top N merchants and rooms by
    cumulative entries (ties by id), every other one folded into `other`.

    Folded figures are the sums of the additive ones, the largest peak, summed window counts
    and summed histograms; ratios are recomputed from the sums by `_derived`.
    """
    histograms = operator.get("histograms", {})
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("overall", "all", {**operator["overall"], "_hist": _hist_of(histograms, "overall", None)})
    ]
    for level, key in (("merchant", "merchants"), ("room", "rooms")):
        figures: dict[str, dict[str, Any]] = operator[key]
        ranked = sorted(figures, key=lambda i: (-figures[i]["entries"], i))
        for level_id in ranked[:top_n]:
            out.append(
                (
                    level,
                    level_id,
                    {**figures[level_id], "_hist": _hist_of(histograms, key, level_id)},
                )
            )
        rest = ranked[top_n:]
        if rest:
            out.append((level, OTHER, _fold([figures[i] for i in rest], histograms, key, rest)))
    return out


def _hist_of(histograms: dict[str, Any], key: str, level_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entry in histograms.items():
        values = entry[key] if level_id is None else entry[key].get(level_id)
        if values is not None:
            out[name] = {"bounds": entry["bounds"], **values}
    return out


def _fold(
    many: list[dict[str, Any]], histograms: dict[str, Any], key: str, ids: list[str]
) -> dict[str, Any]:
    folded: dict[str, Any] = {name: sum(f[name] for f in many) for name, *_ in OPERATOR_SUMS}
    folded["watch_time_seconds_sum"] = sum(f["watch_time_seconds_sum"] for f in many)
    folded["viewers_peak"] = max(f["viewers_peak"] for f in many)
    folded["windows"] = {
        window: {
            figure: sum(f["windows"][window][figure] for f in many) for figure, _ in WINDOW_GAUGES
        }
        for window in WINDOWS
    }
    hist: dict[str, Any] = {}
    for name, entry in histograms.items():
        parts = [entry[key][i] for i in ids if i in entry[key]]
        if parts:
            hist[name] = {
                "bounds": entry["bounds"],
                "counts": [sum(c) for c in zip(*(p["counts"] for p in parts), strict=True)],
                "sum": sum(p["sum"] for p in parts),
            }
    folded["_hist"] = hist
    return folded


def _derived(f: dict[str, Any], gpm_denominator: str) -> dict[str, float | None]:
    uv, gmv = f["unique_viewers"], f["gmv_cny"]
    return {
        "livepulse_conversion_ratio": _ratio(f["buyers"], uv),
        "livepulse_interaction_ratio": _ratio(f["interacting_viewers"], uv),
        "livepulse_aov_cny": _ratio(gmv, f["orders"]),
        "livepulse_gpm_cny": _ratio(
            gmv * 1000, uv if gpm_denominator == "unique_viewers" else f["entries"]
        ),
        "livepulse_uv_value_cny": _ratio(gmv, uv),
        "livepulse_avg_watch_time_seconds": _ratio(f["watch_time_seconds_sum"], uv),
        "livepulse_click_through_ratio": _ratio(f["product_clickers"], uv),
        "livepulse_click_to_order_ratio": _ratio(f["buyers"], f["product_clickers"]),
    }


class OperatorCollector:
    """Prometheus families of the operator figures (docs/metrics.md, "Operator metrics").

    Computed at scrape time from the cached report's `"operator"` section; labels are `level`
    and `id` (bounded: top N rooms and merchants, the rest `other`), never a user, order or
    session id.
    """

    def __init__(self, reports: ReportCache, max_age_s: float, top_n: int) -> None:
        self._reports = reports
        self._max_age_s = max_age_s
        self._top_n = top_n

    def describe(self) -> Iterator[Metric]:
        yield from operator_families().values()

    def collect(self) -> Iterator[Metric]:
        families = operator_families()
        operator = self._reports.get(self._max_age_s).get("operator")
        if operator is not None:
            self._fill(families, operator)
        yield from families.values()

    def _fill(self, families: dict[str, Any], operator: dict[str, Any]) -> None:
        families["livepulse_late_events"].add_metric([], operator["late_events"])
        if operator["watermark_ts"] is not None:
            families["livepulse_event_time_watermark_seconds"].add_metric(
                [], operator["watermark_ts"] / 1000
            )
        gpm_denominator = operator["definitions"]["gpm_denominator"]
        for level, level_id, f in fold_levels(operator, self._top_n):
            labels = [level, level_id]
            for key, name, _doc, _counter in OPERATOR_SUMS:
                families[name].add_metric(labels, f[key])
            families["livepulse_viewers_peak"].add_metric(labels, f["viewers_peak"])
            # Only a level whose merged peak is a lower bound (`other` folds none: its peak is
            # the largest of its levels', a floor of theirs together whatever each holds).
            ceiling = f.get("viewers_peak_ceiling")
            if ceiling is not None:
                families["livepulse_viewers_peak_ceiling"].add_metric(labels, ceiling)
            for name, value in _derived(f, gpm_denominator).items():
                if value is not None:
                    families[name].add_metric(labels, value)
            for window in WINDOWS:
                for figure, name in WINDOW_GAUGES:
                    families[name].add_metric([*labels, window], f["windows"][window][figure])
            for key, name, _doc in HISTOGRAMS:
                hist = f["_hist"].get(key)
                if hist is None:
                    continue
                les = [repr(float(b)) for b in hist["bounds"]] + ["+Inf"]
                families[name].add_metric(
                    labels, list(zip(les, hist["counts"], strict=True)), hist["sum"]
                )


def _assigned(worker_app: Any) -> list[str]:
    """The worker's assigned topic partitions, as "topic:partition"."""
    try:
        return sorted(f"{tp.topic}:{tp.partition}" for tp in worker_app.consumer.assignment())
    except Exception:  # no consumer yet (starting up)
        return []


def _fetch_mode(worker_app: Any) -> dict[str, Any]:
    """The batch consumer's fetch settings now: `idle` (1 byte, `batch_fetch_idle_wait_ms`,
    after a second with no record), `behind` (`batch_fetch_behind_wait_ms`, after a whole
    batch) or busy, how many times they were switched (`entered`: to each), and the byte
    bounds its requests are built with (`max_bytes`, `partition_max_bytes`: the fetcher's own,
    None until it has started); and which assigned partitions are read (`active`, `paused`,
    `fetched`, `drops`, `sought_back`: `BatchConsumer.partition_flow`)."""
    try:
        consumer = worker_app.consumer
    except Exception:  # no consumer yet (starting up)
        return {
            "idle": False,
            "behind": False,
            "switches": 0,
            "entered": {},
            "max_bytes": None,
            "partition_max_bytes": None,
            **_NO_FLOW,
        }
    bounds = getattr(consumer, "fetch_bounds", {})
    flow = getattr(consumer, "partition_flow", None)
    return {
        "idle": bool(getattr(consumer, "fetch_idle", False)),
        "behind": bool(getattr(consumer, "fetch_behind", False)),
        "switches": getattr(consumer, "fetch_modes", 0),
        "entered": dict(getattr(consumer, "fetch_entered", {})),
        "max_bytes": bounds.get("max_bytes"),
        "partition_max_bytes": bounds.get("partition_max_bytes"),
        **(flow() if flow is not None else _NO_FLOW),
    }


#: The partition flow of a worker with no batch consumer (yet): `BatchConsumer.partition_flow`.
_NO_FLOW: dict[str, Any] = {
    "active": None,
    "paused": None,
    "fetched": None,
    "drops": 0,
    "sought_back": 0,
}


def ready(worker_app: Any) -> bool:
    """Whether the worker is running with its partitions assigned (not rebalancing)."""
    try:
        assigned = bool(worker_app.consumer.assignment())
    except Exception:  # no consumer yet (starting up)
        return False
    return assigned and not worker_app.rebalancing


class GlobalReports:
    """The report merged over every partition's snapshot (`streams.runtime.global_report`),
    rebuilt in a thread when asked for and older than `max_age_s`; used by the group's leader
    for the cross-partition claim parts and by `/report?scope=global` on any worker."""

    def __init__(
        self,
        settings: Settings,
        mark: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.max_age_s = settings.global_report_interval_s
        self._mark = mark
        self.report: dict[str, Any] | None = None
        self.built_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, max_age_s: float | None = None) -> dict[str, Any]:
        limit = self.max_age_s if max_age_s is None else max_age_s
        async with self._lock:
            if self.report is None or time.monotonic() - self.built_at > limit:
                self.report = self._mark(await global_report(self.settings, build_in_thread=True))
                self.built_at = time.monotonic()
            return self.report


_JSON_OPTIONS: Final[int] = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _max_age(text: str | None) -> float | None:
    """`/report`'s `max_age_s` (seconds, >= 0), or None when not given."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"max_age_s must be a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"max_age_s must be >= 0 and finite, got {text!r}")
    return value


def _json_body(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)


class WorkerViews:
    """One worker's scrape-time collectors on its registry, the leader's global-report timer,
    and its pages `/metrics`, `/report` and `/status`."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        state: LiveState,
        source_partitions: int | None,
        *,
        unread_lag: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.state = state
        #: Partitions of each contract topic (as checked at the start; None: unknown).
        self.source_partitions = source_partitions
        # Built in a forked child (off the event loop) unless snapshots may not fork either.
        self.reports = ReportCache(
            state.view,
            lambda: state.version,
            self._report_of_held,
            forked=settings.snapshot_fork,
            events=lambda: state.counts().valid,
            before_fork=self._finish_frozen_figures,
        )
        self.global_reports = GlobalReports(settings, self._mark_simulated)
        registry = state.metrics.registry
        registry.register(ClaimCollector(self.reports, settings.report_max_age_s))
        registry.register(
            OperatorCollector(self.reports, settings.report_max_age_s, settings.label_top_n)
        )
        registry.register(
            ClaimPartsCollector(
                lambda: self.reports.get(settings.report_max_age_s), self.cross_partition_report
            )
        )
        # Each claim's global interval and verdict, from the same one source as the group
        # claims' parts: this worker's report when it holds everything, the leader's merged
        # one otherwise.
        registry.register(GlobalClaimCollector(self.cross_partition_report))
        registry.register(ReportAgeCollector(self.reports))
        # With the records of partitions no worker reads (`streams.runtime.topology`) added in.
        self.consumer_lag = ConsumerLagCollector(
            # Lambdas: faust creates its consumer on first access, which must wait for the worker.
            lambda: app.consumer.assignment(),
            lambda tp: app.consumer.highwater(TP(*tp)),
            state.positions,
            settings.source_topics,
        )
        self.consumer_lag.unread = unread_lag
        registry.register(self.consumer_lag)
        app.timer(settings.global_report_interval_s, name="livepulse.global_report")(
            self.refresh_global_report
        )
        self._add_pages()
        # The live screen (/screen) and its /metrics families: streams/runtime/screen.py.
        self.screen = register_screen(
            app,
            registry,
            self.reports.get,
            lambda: {
                "partitions": sorted(state.partitions),
                "every_partition": self.holds_every_partition(),
            },
            lambda: [(held.ledger, held.board) for _p, held in sorted(state.partitions.items())],
            lambda: state.version,
            lambda: sum(held.ledger.counts.valid for held in state.partitions.values()),
            settings.report_max_age_s,
            # Built in a forked child, the claims cost the worker's machine that long; the
            # call itself returns at once.
            (lambda: self.reports.build_s) if self.reports.forked else None,
        )

    def _mark_simulated(self, report: dict[str, Any]) -> dict[str, Any]:
        """The report, with the simulated-data note when the topics were filled from a simulated
        stream (`LIVEPULSE_SIMULATED_SOURCE`): its verdicts describe the simulated rooms."""
        if self.settings.simulated_source is not None:
            mark_if_simulated(report, self.settings.simulated_source)
        return report

    def _finish_frozen_figures(self) -> None:
        """Before a forked report: with one partition held its ledger is the report's, whose
        frozen figures the child would finish at every report and could not keep; finished
        here, each once (those of the days frozen since the last report), at most
        `FINISH_BUDGET_S` of CPU a report, on the event loop (after a restore the state holds
        up to 62 days' unread: ~1.3 s; the child finishes the rest meanwhile, as before). With
        several, the report finishes the merged parts' figures (`periods.merge_frozen`) and
        never reads a partition's own: nothing to do."""
        if len(self.state.partitions) == 1:
            (held,) = self.state.partitions.values()
            finish_frozen(held.ledger, FINISH_BUDGET_S)

    def _report_of_held(self, ledger: Ledger, board: OperatorBoard | None) -> dict[str, Any]:
        report = with_periods(build_report(ledger, board), ledger, self.settings.period_settings)
        # This worker's share: with several workers, `livepulse report --changelog` merges them.
        report["state"] = {"source": "worker", "partitions": sorted(self.state.partitions)}
        return self._mark_simulated(report)

    def holds_every_partition(self) -> bool:
        """Whether this worker holds the state of every partition (it is the only worker)."""
        total = self.source_partitions
        return total is not None and len(self.state.partitions) >= total

    def reports_merged_state(self) -> bool:
        """Whether this worker is the one that reports the group claims from the merged state:
        several workers share the partitions and this one is the group's leader."""
        if self.holds_every_partition():
            return False
        try:
            return bool(self.app.is_leader())
        except Exception:  # no consumer yet
            return False

    def cross_partition_report(self) -> dict[str, Any] | None:
        """Where this worker takes the group claims' parts from (streams.runtime.claim_parts),
        or None."""
        if self.holds_every_partition():
            return self.reports.get(self.settings.report_max_age_s)
        return self.global_reports.report if self.reports_merged_state() else None

    async def refresh_global_report(self) -> None:
        """The leader keeps the merged report fresh for the cross-partition claim parts."""
        if self.reports_merged_state():
            try:
                await self.global_reports.get(0.0)
            except Exception as exc:  # the next tick tries again
                log.warning("global report failed: %r", exc)

    def _add_pages(self) -> None:
        app, state, views = self.app, self.state, self

        @app.page("/metrics")
        class MetricsView(faust.web.View):
            """Prometheus exposition of the worker's registry (text, or OpenMetrics on request)."""

            async def get(self, request: Any) -> Any:
                encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
                # The claim and operator families read the newest report, built off the loop
                # (`ReportCache`); only the very first scrape waits for one.
                await views.reports.first()
                return self.bytes(
                    encoder(state.metrics.registry), headers={"Content-Type": content_type}
                )

        @app.page("/report")
        class ReportView(faust.web.View):
            """The claims report (docs/design.md), as of every event processed so far; with
            `?max_age_s=S`, the newest one built if its state is at most S seconds old."""

            async def get(self, request: Any) -> Any:
                try:
                    max_age_s = _max_age(request.query.get("max_age_s"))
                except ValueError as exc:
                    return self.bytes(
                        _json_body({"error": str(exc)}),
                        content_type="application/json",
                        status=400,
                    )
                if request.query.get("scope") == "global":
                    # Every partition, whichever worker holds it: merged from the snapshots.
                    body = await views.global_reports.get(views.settings.report_max_age_s)
                    return self.bytes(_json_body(body), content_type="application/json")
                report = None
                if max_age_s is not None:
                    newest = views.reports.get(max_age_s)
                    age_s = views.reports.age_s()
                    current = (newest.get("as_of") or {}).get("current")
                    if current or (age_s is not None and age_s <= max_age_s):
                        report = newest
                if report is None:
                    # Built off the event loop: only this request waits.
                    report = await views.reports.fresh()
                return self.bytes(_json_body(report), content_type="application/json")

        @app.page("/status")
        class StatusView(faust.web.View):
            """Per-partition positions (next offset to process), event counts and readiness."""

            async def get(self, request: Any) -> Any:
                body = {
                    **state.status(),
                    "ready": ready(app),
                    "assigned": _assigned(app),
                    "fetch": _fetch_mode(app),
                    # The thread switch interval the worker runs with (ms; the setting
                    # `gil_switch_interval_ms`, `Worker.run`).
                    "switch_interval_ms": round(sys.getswitchinterval() * 1000.0, 3),
                    # Where the process's RSS is (streams/runtime/memory.py).
                    "memory": memory_status(),
                }
                return self.bytes(_json_body(body), content_type="application/json")
