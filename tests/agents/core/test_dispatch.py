"""The per-event dispatch by class identity (issue 19: `Ledger.apply`, `OperatorBoard.observe`
and `ScreenState.observe` test `type(event) is A`, not `isinstance`): it sees every event only
if the decoder gives exactly the schema's classes and none of them is subclassed."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import decode_values, ingest_decoded
from schemas import Rejection
from schemas.events import Event

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"


def _event_classes() -> list[type]:
    union = typing.get_args(Event)[0] if typing.get_origin(Event) is typing.Annotated else Event
    return list(typing.get_args(union))


def test_no_event_class_is_subclassed() -> None:
    classes = _event_classes()
    assert len(classes) == 10
    for cls in classes:
        assert cls.__subclasses__() == [], cls


def test_the_decoder_gives_exactly_the_schema_classes() -> None:
    classes = set(_event_classes())
    values = [line.encode() for line in (FIXTURES / "xhs.jsonl").read_text().splitlines()]
    decoded = [value for value in decode_values(values) if not isinstance(value, Rejection)]
    kinds = {type(value) for value in decoded}
    assert kinds <= classes
    assert len(kinds) >= 8  # the fixture has (nearly) every type


def test_no_event_reaches_the_models_getattr_on_the_hot_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ingest_decoded` over the fixture (a refund and group events among them, sessions folded
    by the window) reads no field an event lacks: pydantic's `__getattr__` runs only on a miss,
    which raises and catches an AttributeError in Python (~2.6 us; issue 19 found one per
    refund and group event in the board and the screen)."""
    values = [line.encode() for line in (FIXTURES / "xhs.jsonl").read_text().splitlines()]
    decoded = decode_values(values)
    misses: list[str] = []
    original = BaseModel.__getattr__

    def counting(self: BaseModel, name: str) -> object:
        misses.append(f"{type(self).__name__}.{name}")
        return original(self, name)

    monkeypatch.setattr(BaseModel, "__getattr__", counting)
    ledger, board = Ledger(7 * 86_400_000), OperatorBoard()
    for value in decoded:
        ingest_decoded(value, ledger, board)
    kinds = {type(value).__name__ for value in decoded}
    assert {"OrderRefunded", "GroupJoined"} <= kinds
    assert board.screen.folded  # the screen's folded-session path was taken
    assert ledger.counts.valid > 0
    assert misses == []
