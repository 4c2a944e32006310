"""A scraping load on a worker during a latency pass, and what it saw of the event loop.

Why: `/metrics` and `/report` built the report on the worker's event loop (1.7 s of CPU at
200,000 records), so a Prometheus scrape and a dashboard polling `/report` held every batch
behind them; the latency passes did not scrape, so no figure showed it. `ScrapeLoad` GETs
`/metrics` every `metrics_every_s` and `/report` every `report_every_s` (each in its own
thread, as Prometheus and a dashboard would), and probes `/` every `probe_every_s`: the index
is a constant answered on the event loop at once, so its round trip is how long the loop was
busy when it came, and the longest one bounds the longest stall from above (any tree: the
baseline's worker needs no instrumentation for it). Not `/status`, which was the probe at
first: it computes the lag quantiles, and at 20 probes a second it was 8% of the worker's
samples in a py-spy profile (bench/RESULTS.md, Session 8).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bench.shared import summary


def _get(url: str, timeout_s: float) -> float | None:
    """Seconds a GET of `url` took, None if it failed."""
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
            response.read()
    except OSError:
        return None
    return time.perf_counter() - began


@dataclass
class ScrapeLoad:
    """Scrapers and a `/status` prober in threads, against `base_url`, until `stop()`."""

    base_url: str
    metrics_every_s: float = 1.0
    report_every_s: float = 2.0
    probe_every_s: float = 0.05
    timeout_s: float = 60.0
    took: dict[str, list[float]] = field(
        default_factory=lambda: {"metrics": [], "report": [], "status": []}
    )
    failed: dict[str, int] = field(default_factory=lambda: {"metrics": 0, "report": 0, "status": 0})
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ScrapeLoad:
        for name, path, every in (
            ("metrics", "/metrics", self.metrics_every_s),
            ("report", "/report", self.report_every_s),
            ("status", "/", self.probe_every_s),
        ):
            if every <= 0:
                continue
            thread = threading.Thread(
                target=self._loop, args=(name, self.base_url + path, every), daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, name: str, url: str, every_s: float) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            took = _get(url, self.timeout_s)
            if took is None:
                self.failed[name] += 1
            else:
                self.took[name].append(took)
            self._stop.wait(max(0.0, every_s - (time.monotonic() - began)))

    def stop(self) -> dict[str, Any]:
        """Stop and return the figures: the probes' longest and p99 round trip (ms), the
        scrapes' count and median and longest time (ms), failures."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 1)
        status = sorted(self.took["status"])
        out: dict[str, Any] = {
            "loop_stall_max_ms": status[-1] * 1000 if status else None,
            "loop_stall_p99_ms": (
                status[min(len(status) - 1, int(0.99 * len(status)))] * 1000 if status else None
            ),
            "probes": len(status),
            "failed": dict(self.failed),
        }
        for name in ("metrics", "report"):
            took = self.took[name]
            out[f"{name}_scrapes"] = len(took)
            if took:
                out[f"{name}_median_ms"] = summary([t * 1000 for t in took])["median"]
                out[f"{name}_max_ms"] = max(took) * 1000
        return out
