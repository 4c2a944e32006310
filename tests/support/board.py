"""Decoded records fed to a partition's ledger and operator board as the worker's ingest feeds
them (`agents.core.ingest.ingest_decoded`, without its catch of the core's errors: a test is
to see them)."""

from __future__ import annotations

from typing import Any

from agents.core import Ledger, OperatorBoard
from schemas import Rejection


def observe(ledger: Ledger, board: OperatorBoard, decoded: Any, retired: bool = True) -> None:
    """One decoded record: a rejection counted by `ledger`, an event applied to it and, when
    applied, observed by `board`, which then takes the sessions the ledger has folded (and,
    with `retired`, those it has retired; without, they wait for the next fold)."""
    if isinstance(decoded, Rejection):
        ledger.reject(decoded.reason)
    elif ledger.apply(decoded):
        board.observe(decoded)
        if ledger.folded_ids or (retired and ledger.retired_ids):
            board.take_folded(ledger)
