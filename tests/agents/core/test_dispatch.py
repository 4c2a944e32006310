"""The per-event dispatch by class identity (issue 19: `Ledger.apply`, `OperatorBoard.observe`
and `ScreenState.observe` test `type(event) is A`, not `isinstance`): it sees every event only
if the decoder gives exactly the schema's classes and none of them is subclassed."""

from __future__ import annotations

import typing
from pathlib import Path

from agents.core.ingest import decode_values
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
