"""A throwaway Prometheus server (Debian's `prometheus` binary) scraping given workers, with rules.

For tests and local checks: a config in a temporary directory, a free loopback port, storage
in that directory, a short scrape and rule-evaluation interval; `query()` reads the HTTP API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from streams.tools.worker_process import LoggedChild, free_port

#: The project's rule files (recording rules and alerts), as the compose stack loads them.
RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"


class PrometheusFailed(RuntimeError):
    """The server did not start, exited, or answered a query with an error."""


def prometheus_binary() -> str | None:
    """The path of the `prometheus` server binary, or None when it is not installed."""
    return shutil.which("prometheus")


def render_config(
    targets: Sequence[str], rule_files: Sequence[Path], interval_s: float, job: str = "livepulse"
) -> str:
    """A Prometheus config (JSON is valid YAML) scraping `targets` every `interval_s`."""
    interval = f"{int(interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    return json.dumps(config, indent=2)


class LocalPrometheus(LoggedChild):
    """`prometheus` scraping `targets` (host:port), loading `rule_files`; always stop() it."""

    def __init__(
        self,
        targets: Sequence[str],
        rule_files: Sequence[Path] | None = None,
        *,
        interval_s: float = 1.0,
        binary: str | None = None,
    ) -> None:
        super().__init__()
        found = binary or prometheus_binary()
        if found is None:
            raise PrometheusFailed("no `prometheus` binary (Debian: apt-get install prometheus)")
        self.binary = found
        self.targets = list(targets)
        self.rule_files = (
            list(rule_files) if rule_files is not None else sorted(RULES_DIR.glob("*.yml"))
        )
        self.interval_s = interval_s
        self.port = 0  # picked by start()
        self._config = Path()
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return Path(self._dir.name) / "prometheus.log" if self._dir else None

    def start(self, timeout_s: float = 30.0, attempts: int = 5) -> None:
        """Write the config, start the server, and wait until it reports ready.

        A port free when picked may be taken before the server binds it (other processes'
        client sockets use the same range), so a failed bind is retried on a new port, and
        readiness counts only when the server answering runs this instance's config file.
        """
        self._dir = tempfile.TemporaryDirectory(prefix="livepulse-prometheus-")
        work = Path(self._dir.name)
        self._config = work / "prometheus.yml"
        self._config.write_text(
            render_config(self.targets, self.rule_files, self.interval_s), encoding="utf-8"
        )
        log = self.open_log(work / "prometheus.log", "wb")
        for attempt in range(attempts):
            self.port = free_port()
            self.process = subprocess.Popen(  # noqa: S603 (the installed server, our arguments)
                [
                    self.binary,
                    f"--config.file={self._config}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._wait_ready(timeout_s):
                return
            if "address already in use" not in self.tail() or attempt == attempts - 1:
                raise PrometheusFailed(f"prometheus exited:\n{self.tail()}")

    def _wait_ready(self, timeout_s: float) -> bool:
        """True once this process answers ready; False if it exited (raise on a timeout)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            try:
                # Another server may hold the port if the bind failed: check it is this one.
                flags = self.api("/api/v1/status/flags")
                if flags.get("config.file") == str(self._config):
                    with urllib.request.urlopen(f"{self.base_url}/-/ready", timeout=2) as response:  # noqa: S310
                        if response.status == 200:
                            return True
            except (OSError, ValueError, PrometheusFailed):
                pass
            if time.monotonic() > deadline:
                raise PrometheusFailed(
                    f"prometheus not ready after {timeout_s:.0f} s:\n{self.tail()}"
                )
            time.sleep(0.2)
        return False

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a GET on the HTTP API (`/api/v1/...`); raises on an error status."""
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with a JSON error
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusFailed(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        data = self.api("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(
        self,
        expr: str,
        done: Callable[[list[dict[str, Any]]], bool],
        timeout_s: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Query `expr` until `done(result)`; return that result (raise after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise PrometheusFailed(f"{expr}: still {result} after {timeout_s:.0f} s")
            time.sleep(self.interval_s / 2)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (SIGKILL after `timeout_s`), then remove the storage; the exit code."""
        code = super().stop(timeout_s)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        return code
