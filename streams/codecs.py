"""A faust codec for contract events: pydantic v2 validation on the way in, its JSON on the way out.

Registered under `EVENT_CODEC` when this module is imported. It is for *derived* data that
livepulse writes itself (tables, internal topics). Source topics are read as raw bytes instead
(see `streams.topics.raw_topic`): a faust codec that raises only gets the record logged and
skipped, never dead-lettered.
"""

from __future__ import annotations

from typing import Any, Final

from faust.serializers import codecs

from schemas import event_adapter

EVENT_CODEC: Final[str] = "livepulse_event"


class EventCodec(codecs.Codec):
    """Contract event <-> its JSON bytes (`schemas.event_adapter`)."""

    def _dumps(self, obj: Any) -> bytes:
        return event_adapter.dump_json(obj)

    def _loads(self, s: bytes) -> Any:
        return event_adapter.validate_json(s)


codecs.register(EVENT_CODEC, EventCodec())


def use_event_codec(table: Any) -> Any:
    """Make a faust table keep contract events with `EVENT_CODEC`; return the table.

    faust 0.15 derives a table's value serializer from its `value_type` alone (a faust Record's
    `serializer` option, else json) and takes no `value_serializer` argument (faust-streaming
    issue #556); `app.Table()` has already built the changelog topic with that json serializer
    by the time it returns. So both are replaced here, before the table is used: the changelog
    topic is built again by the table's own factory, with the same name and options.
    """
    table.value_serializer = EVENT_CODEC
    table.changelog_topic = table._new_changelog_topic()
    return table
