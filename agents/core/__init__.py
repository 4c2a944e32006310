"""The transport-free metric core: plain state and maths over decoded events (no asyncio);
`ingest` takes one record into it, for the worker, the offline analyzer and the benchmark."""

from agents.core.claims import CLAIMS, Claim
from agents.core.ledger import EventCounts, Ledger
from agents.core.metrics import compute_claims
from agents.core.operator import OperatorBoard, render_operator_summary
from agents.core.report import build_report, render_table

__all__ = [
    "CLAIMS",
    "Claim",
    "EventCounts",
    "Ledger",
    "OperatorBoard",
    "build_report",
    "compute_claims",
    "render_operator_summary",
    "render_table",
]
