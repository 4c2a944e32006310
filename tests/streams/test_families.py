"""Every Prometheus family the worker exports is defined in `streams.runtime.families`, is in
docs/metrics.md, and carries no user, order or session id in a label."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
from prometheus_client import generate_latest

from streams.runtime.settings import Settings
from streams.runtime.state import SourceRecord
from streams.runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
#: What builds a family: prometheus_client's metrics and its metric families.
FAMILY_BUILDERS = {
    "Counter",
    "Gauge",
    "Histogram",
    "Summary",
    "Info",
    "Enum",
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "HistogramMetricFamily",
    "SummaryMetricFamily",
    "InfoMetricFamily",
    "StateSetMetricFamily",
    "UnknownMetricFamily",
}


def family_builders_called(path: Path) -> set[str]:
    """The prometheus_client metric and family classes `path` calls (by the names it imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            for alias in node.names:
                if alias.name in FAMILY_BUILDERS:
                    imported[alias.asname or alias.name] = alias.name
    return {
        imported[node.func.id]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in imported
    }


def test_the_scan_sees_a_family_built_under_another_name(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from prometheus_client import Counter as PromCounter\nPromCounter('a', 'b')\n"
    )
    assert family_builders_called(module) == {"Counter"}


def test_every_family_is_built_in_the_families_module() -> None:
    builders = {
        str(path.relative_to(ROOT)): family_builders_called(path)
        for package in ("schemas", "agents", "streams")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert builders.pop("streams/runtime/families.py"), "the scan found nothing to check"
    assert {path: found for path, found in builders.items() if found} == {}


def test_the_workers_families_are_documented_and_carry_no_ids(tmp_path: Path) -> None:
    settings = Settings(app_id="families-test", data_dir=tmp_path, label_top_n=1)
    worker = Worker(settings, source_partitions=4)
    try:
        # Two rooms (one folded into `other` with top N = 1), a buyer, an order, a bad record.
        t0 = 1_721_800_800_000
        bodies = []
        for room in ("r-1", "r-2"):
            session = f"s-{room}"
            bodies += [
                {
                    "event_id": f"e-{room}-1",
                    "type": "session_started",
                    "ts": t0,
                    "session_id": session,
                    "room_id": room,
                    "merchant_id": "m-1",
                },
                {
                    "event_id": f"e-{room}-2",
                    "type": "viewer_joined",
                    "ts": t0 + 1000,
                    "session_id": session,
                    "user_id": "u-secret-42",
                },
                {
                    "event_id": f"e-{room}-3",
                    "type": "order_paid",
                    "ts": t0 + 400_000,
                    "order_id": "o-secret-7",
                    "session_id": session,
                    "merchant_id": "m-1",
                    "user_id": "u-secret-42",
                    "items": [
                        {
                            "sku_id": "k-1",
                            "category": "apparel",
                            "unit_price_cents": 59_900,
                            "quantity": 1,
                        }
                    ],
                    "amount_cents": 59_900,
                },
            ]
        values = [orjson.dumps(body) for body in bodies] + [b"not json"]
        topic = settings.topic("live.orders")
        worker.state.install(0, worker.state.new_partition())  # as the keeper does on assignment
        worker.state.apply_batch(
            [SourceRecord(topic, 0, offset, b"k", value) for offset, value in enumerate(values)]
        )
        registry = worker.metrics.registry
        names = {family.name for family in registry.collect()}
        assert len(names) > 40  # every collector answered
        doc = (ROOT / "docs" / "metrics.md").read_text()
        assert {name for name in names if name not in doc} == set()
        text = generate_latest(registry).decode()
        assert 'livepulse_orders_total{id="other",level="room"} 1.0' in text  # folded
        for secret in ("u-secret-42", "o-secret-7", "s-r-1", "e-r-1"):
            assert secret not in text
    finally:
        assert worker.keeper.local is not None
        worker.keeper.local.close()
