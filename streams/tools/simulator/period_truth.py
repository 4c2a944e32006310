"""Truth by period: a stream's lines cut to one period's sub-stream, then `truth.compute_claims`.

The independent check on `agents/core/periods.py` (it must never import `agents`): the cut
follows docs/metrics.md's "Claims by period" on the raw JSON lines. A line belongs to the
period when it names a session whose earliest `session_started` starts in it; a line naming
no started session (a sessionless order, a question in a session never started) when its own
`ts` is in it; an `order_refunded` when some `order_paid` of its `order_id` is in the period
(by its own `ts` if that id is never paid); group events always. Invalid lines are left out
(no claim reads them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from schemas import Rejection, decode_text
from streams.tools.simulator.truth import compute_claims, read_stream

#: A `ts` test: whether an event time (epoch ms) lies in the period.
InPeriod = Callable[[int], bool]


class PeriodCut:
    """A stream's lines, decoded once, cut to any period's sub-stream (`lines`)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self._lines = list(lines)
        objs: list[dict[str, Any] | None] = [
            None if isinstance(decode_text(line), Rejection) else json.loads(line)
            for line in self._lines
        ]
        starts: dict[str, int] = {}
        for obj in objs:
            if obj is not None and obj["type"] == "session_started":
                sid = obj["session_id"]
                starts[sid] = min(obj["ts"], starts.get(sid, obj["ts"]))

        def stamp(obj: dict[str, Any]) -> int:
            sid = obj.get("session_id")
            return starts[sid] if isinstance(sid, str) and sid in starts else int(obj["ts"])

        paid: dict[str, list[int]] = {}
        for obj in objs:
            if obj is not None and obj["type"] == "order_paid":
                paid.setdefault(obj["order_id"], []).append(stamp(obj))
        #: Per line: None (left out), () (always in), or the stamps any one of which puts it in.
        self._stamps: list[tuple[int, ...] | None] = []
        for obj in objs:
            if obj is None:
                self._stamps.append(None)
            elif obj["type"] in ("group_joined", "group_left"):
                self._stamps.append(())
            elif obj["type"] == "order_refunded" and obj["order_id"] in paid:
                self._stamps.append(tuple(paid[obj["order_id"]]))
            else:
                self._stamps.append((stamp(obj),))

    def lines(self, in_period: InPeriod) -> list[str]:
        """The lines of the period's sub-stream, in file order."""
        return [
            line
            for line, stamps in zip(self._lines, self._stamps, strict=True)
            if stamps is not None and (not stamps or any(in_period(ts) for ts in stamps))
        ]

    def claims(self, in_period: InPeriod) -> dict[str, dict[str, Any]]:
        """Every claim's truth on the period's sub-stream (`truth.compute_claims`)."""
        return compute_claims(read_stream(self.lines(in_period)))


def period_claims(lines: Sequence[str], in_period: InPeriod) -> dict[str, dict[str, Any]]:
    """Every claim's truth on the period's sub-stream of `lines`."""
    return PeriodCut(lines).claims(in_period)
