"""The compose stack as users run it: `docker compose` against a real Docker engine.

One test walks the stack through what a user does, with the compose file and Dockerfile
unchanged: `up -d --build --wait` -> the fixture replayed once -> the first worker's `/report`
(at its fixed host port) equals fixtures/xhs.truth.json -> Prometheus' recorded global figures
equal it too -> a second `up` (worker and replayer recreated) neither replays again nor loses
state -> a second worker (`LIVEPULSE_EXTRA_WORKERS=1`) -> that replica SIGKILLed -> the first
worker takes its partitions, the merged figures still equal the truth, `LivepulseWorkerDown`
fires -> scaled back -> `down -v` leaves no container, network or volume. Each step's time is
printed.

The images `python:*`, `apache/kafka` and `prom/prometheus` are the local stand-ins of
tests/standins/ (no registry is reachable here); Grafana has none, so the `grafana` service is
left out (deploy/README.md, "What was run for real"). `bash scripts/test.sh` starts the engine
and builds the stand-ins (scripts/docker.sh). Without an engine the test skips; under CI an
engine, plugin or stand-in that is missing is a failure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from schemas import TOPIC_BY_TYPE
from streams.runtime.claim_parts import CLAIM_PARTS
from streams.tools.drain import fetch_json
from streams.tools.worker_process import free_ports
from tests.conftest import in_ci
from tests.support.truth import report_mismatches

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
TRUTH = json.loads((ROOT / "fixtures" / "xhs.truth.json").read_text(encoding="utf-8"))
# Every service but grafana (no stand-in image exists for it).
SERVICES = ["kafka", "kafka-init", "worker", "worker-extra", "replayer", "prometheus"]
STANDINS = ["python:3.11.13-slim-bookworm", "apache/kafka:3.9.1", "prom/prometheus:v3.5.0"]
PARTITIONS = ["0", "1", "2", "3"]


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason}; under CI the compose test cannot skip", pytrace=False)
    pytest.skip(reason)


def run(command: list[str], env: dict[str, str], timeout_s: float = 600) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}"
            f"\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    return done.stdout


def wait_until(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = check()
        except OSError as exc:  # not answering yet
            last = exc
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s (last: {last!r})", pytrace=False)
        time.sleep(every_s)


class Stack:
    """One compose project of the repository's docker-compose.yml, on free host ports."""

    def __init__(self) -> None:
        self.project = f"livepulse-test-{uuid.uuid4().hex[:10]}"
        web, kafka, prometheus, grafana = free_ports(4)
        self.web_url = f"http://127.0.0.1:{web}"
        self.kafka = f"127.0.0.1:{kafka}"
        self.prometheus_url = f"http://127.0.0.1:{prometheus}"
        # Only what compose needs: no LIVEPULSE_* from the test environment, and an empty
        # --env-file so that a developer's .env changes nothing.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "TMPDIR")
        }
        self.env |= {
            "LIVEPULSE_WEB_HOST_PORT": str(web),
            "KAFKA_HOST_PORT": str(kafka),
            "PROMETHEUS_HOST_PORT": str(prometheus),
            "GRAFANA_HOST_PORT": str(grafana),
        }
        self.times: list[tuple[str, float]] = []

    def compose(self, *args: str, extra_workers: int = 0, timeout_s: float = 600) -> str:
        env = self.env | {"LIVEPULSE_EXTRA_WORKERS": str(extra_workers)}
        command = ["docker", "compose", "--env-file", os.devnull, "-p", self.project, *args]
        return run(command, env, timeout_s)

    def timed(self, step: str, action: Callable[[], Any]) -> Any:
        started = time.monotonic()
        result = action()
        self.times.append((step, time.monotonic() - started))
        return result

    def container(self, service: str, index: int = 1) -> dict[str, Any]:
        name = f"{self.project}-{service}-{index}"
        return json.loads(run(["docker", "inspect", name], self.env))[0]  # type: ignore[no-any-return]

    def prometheus(self, expr: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr})
        answer = fetch_json(f"{self.prometheus_url}/api/v1/query?{query}")
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {
            "containers": run(["docker", "ps", "-aq", "--filter", label], self.env),
            "networks": run(["docker", "network", "ls", "-q", "--filter", label], self.env),
            "volumes": run(["docker", "volume", "ls", "-q", "--filter", label], self.env),
        }
        return {kind: ids.split() for kind, ids in found.items() if ids.split()}


def docker_volumes(env: dict[str, str]) -> set[str]:
    return set(run(["docker", "volume", "ls", "-q"], env).split())


@pytest.fixture
def stack() -> Iterator[Stack]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "")}
    for command, reason in (
        (["docker", "info"], "no Docker engine answers (bash scripts/docker.sh engine)"),
        (["docker", "compose", "version"], "no compose plugin (bash scripts/docker.sh compose)"),
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is None or done.returncode != 0:
            unavailable(reason)
    for image in STANDINS:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
            unavailable(f"no image {image} (bash scripts/docker.sh standins builds a stand-in)")
    stack = Stack()
    try:
        yield stack
    finally:
        subprocess.run(
            ["docker", "compose", "-p", stack.project, "down", "-v", "--timeout", "5"],
            cwd=ROOT,
            env=stack.env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def global_figures_equal_the_truth(stack: Stack) -> bool:
    recorded = {
        s["metric"]["claim"]: float(s["value"][1])
        for s in stack.prometheus("livepulse:claim_observed:global")
    }
    claims = TRUTH["claims"]
    return set(recorded) == set(CLAIM_PARTS) and all(
        math.isclose(value, claims[claim]["observed"], rel_tol=1e-9)
        for claim, value in recorded.items()
    )


def report_equals_the_truth(url: str) -> bool:
    return report_mismatches(fetch_json(url, timeout_s=30), TRUTH) == []


async def end_offsets(bootstrap: str) -> dict[str, int]:
    """Records ever written to each contract topic (through the host listener)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = sorted(set(TOPIC_BY_TYPE.values()))
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ends = await consumer.end_offsets(tps)
        return {t: sum(o for tp, o in ends.items() if tp.topic == t) for t in topics}
    finally:
        await consumer.stop()


def test_the_compose_stack_as_a_user_runs_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    volumes_before = docker_volumes(stack.env)

    # 1. `up --build --wait` exits 0 (the replayer stays up, healthy, instead of exiting).
    stack.timed(
        "up -d --build --wait", lambda: stack.compose("up", "-d", "--build", "--wait", *SERVICES)
    )
    # One image for the worker and the replayer (only `worker` builds it).
    assert stack.container("worker")["Image"] == stack.container("replayer")["Image"]
    assert "replay-once: replayed" in stack.compose("logs", "replayer")

    # 2. The first worker's /report, at its fixed host port, equals the truth file.
    mapped = stack.compose("port", "worker", "6066").strip()
    assert f"http://{mapped}" == stack.web_url
    report_url = f"{stack.web_url}/report"
    stack.timed(
        "fixture drained: /report == truth",
        lambda: wait_until(
            "the worker's report equals the truth", lambda: report_equals_the_truth(report_url), 120
        ),
    )
    report = fetch_json(report_url)
    assert report["events"] == TRUTH["events"]
    assert len(report["claims"]) == len(TRUTH["claims"]) == 13
    assert report_mismatches(report, TRUTH) == []

    # 3. Prometheus' recorded global figures equal the truth.
    stack.timed(
        "Prometheus global figures == truth",
        lambda: wait_until(
            "Prometheus' global figures equal the truth",
            lambda: global_figures_equal_the_truth(stack),
            90,
        ),
    )
    parts = stack.prometheus("livepulse:claim_part:sum")
    got = {(s["metric"]["claim"], s["metric"]["part"]): float(s["value"][1]) for s in parts}
    claims = TRUTH["claims"]
    assert got == {(c, p): float(claims[c][p]) for c, names in CLAIM_PARTS.items() for p in names}

    # 4. A later `up` that recreates the worker and the replayer: no second replay, and the
    # worker's state comes back from its volume and the changelog.
    offsets = asyncio.run(end_offsets(stack.kafka))
    assert sum(offsets.values()) > 0
    worker_id = stack.container("worker")["Id"]
    stack.timed(
        "up --wait again (nothing to do)", lambda: stack.compose("up", "-d", "--wait", *SERVICES)
    )
    assert stack.container("worker")["Id"] == worker_id, "a plain `up` recreated the worker"
    stack.timed(
        "up --wait --force-recreate worker replayer",
        lambda: stack.compose("up", "-d", "--wait", "--force-recreate", "worker", "replayer"),
    )
    assert "replay-once: not replayed" in stack.compose("logs", "replayer")
    assert asyncio.run(end_offsets(stack.kafka)) == offsets, "the fixture was sent again"
    wait_until("the recreated worker's report", lambda: report_equals_the_truth(report_url), 60)

    # 5. Scale out: a second worker; the two share the partitions, the figures still agree.
    def scale_out() -> None:
        stack.compose("up", "-d", "--wait", *SERVICES, extra_workers=1)
        wait_until(
            "the second worker holds partitions",
            lambda: 0 < len(fetch_json(f"{stack.web_url}/status")["partitions"]) < 4,
            90,
        )

    stack.timed("scale-out to 2 workers (up --wait, rebalance)", scale_out)
    wait_until(
        "both workers are scraped",
        lambda: len([s for s in stack.prometheus('up{job="livepulse"} == 1')]) == 2,
        30,
    )
    wait_until(
        "global figures over two workers equal the truth",
        lambda: (
            global_figures_equal_the_truth(stack)
            and report_equals_the_truth(f"{report_url}?scope=global")
        ),
        90,
    )

    # 6. The extra replica SIGKILLed: the first worker takes its partitions, the merged figures
    # still equal the truth, and LivepulseWorkerDown fires.
    killed_at = time.monotonic()
    run(["docker", "kill", "--signal", "KILL", f"{stack.project}-worker-extra-1"], stack.env)
    stack.timed(
        "survivor holds every partition after the kill",
        lambda: wait_until(
            "the first worker holds every partition",
            lambda: sorted(fetch_json(f"{stack.web_url}/status")["partitions"]) == PARTITIONS,
            90,
        ),
    )
    wait_until(
        "the survivor's report equals the truth", lambda: report_equals_the_truth(report_url), 60
    )
    assert report_equals_the_truth(f"{report_url}?scope=global")
    down = stack.prometheus('up{job="livepulse"} == 0')
    assert [s["metric"]["instance"] for s in down] == [f"{stack.project}-worker-extra-1:6066"]

    def alert_firing() -> bool:
        alerts = fetch_json(f"{stack.prometheus_url}/api/v1/alerts")["data"]["alerts"]
        return any(
            a["labels"]["alertname"] == "LivepulseWorkerDown" and a["state"] == "firing"
            for a in alerts
        )

    # "Within a minute" of the kill (the rule's `for: 30s`, 5 s scrapes and evaluations).
    wait_until("LivepulseWorkerDown fires", alert_firing, 60 - (time.monotonic() - killed_at))
    stack.times.append(("kill -> LivepulseWorkerDown firing", time.monotonic() - killed_at))
    wait_until(
        "global figures after the kill equal the truth",
        lambda: global_figures_equal_the_truth(stack),
        60,
    )

    # 7. Scale back (removes the dead replica's container), then `down -v`: nothing is left.
    stack.timed("scale back to 1 worker", lambda: stack.compose("up", "-d", "--wait", *SERVICES))
    stack.timed("down -v", lambda: stack.compose("down", "-v"))
    assert stack.leftovers() == {}
    assert docker_volumes(stack.env) - volumes_before == set(), "down -v left volumes behind"

    with capsys.disabled():
        print(f"\ncompose stack {stack.project}, step times:")
        for step, seconds in stack.times:
            print(f"  {seconds:7.1f} s  {step}")
