"""The livepulse_event codec: a contract event through a faust table's changelog and back."""

from __future__ import annotations

import time
import uuid
from typing import Any

from faust.types import Message
from faust.types.tuples import FutureMessage

from schemas import OrderPaid, event_adapter
from streams.app import create_app
from streams.codecs import EVENT_CODEC, use_event_codec
from streams.settings import Settings

ORDER_LINE = (
    b'{"event_id":"e-4","type":"order_paid","ts":1721801400000,"order_id":"o-9",'
    b'"session_id":"s-1","merchant_id":"m-1","user_id":"u-42","items":[{"sku_id":"k-3",'
    b'"category":"apparel","unit_price_cents":59900,"quantity":2}],"amount_cents":119800}'
)


def close_consumer_thread_loop(app: Any) -> None:
    """Close the event loop faust's consumer made for its thread, which test_context never runs."""
    if app._consumer is not None:
        app._consumer._thread.thread_loop.close()


def test_codec_is_registered_and_round_trips_an_event() -> None:
    from faust.serializers import codecs

    codec = codecs.get_codec(EVENT_CODEC)
    event = event_adapter.validate_json(ORDER_LINE)
    payload = codec.dumps(event)
    assert codec.loads(payload) == event
    assert isinstance(codec.loads(payload), OrderPaid)


async def test_event_round_trips_through_a_table_changelog() -> None:
    """An agent stores an event in a table; the changelog record recovers it in a new table."""
    app = create_app(Settings(app_id=f"codec-{uuid.uuid4().hex}"))
    table = use_event_codec(app.Table("orders", default=None, partitions=1))
    source = app.topic("codec-source", value_type=bytes, value_serializer="raw")

    @app.agent(source)
    async def store(stream):  # type: ignore[no-untyped-def]
        async for raw in stream:
            event = event_adapter.validate_json(raw)
            table[event.event_id] = event

    async with store.test_context() as agent:
        await agent.put(ORDER_LINE)
    close_consumer_thread_loop(app)

    # The table published its change to the changelog topic through the codec.
    sent: FutureMessage = app.producer.buffer.pending.get_nowait()
    assert sent.message.channel.get_topic_name() == table.changelog_topic_name
    assert sent.message.value == event_adapter.validate_json(ORDER_LINE).model_dump_json().encode()

    # Recovery in another app (a restarted worker) reads it back as the same pydantic event.
    app2 = create_app(Settings(app_id=app.conf.id))
    recovered = use_event_codec(app2.Table("orders", default=None, partitions=1))
    record = Message(
        topic=recovered.changelog_topic_name,
        partition=0,
        offset=0,
        timestamp=time.time(),
        timestamp_type=0,
        headers=[],
        key=sent.message.key,
        value=sent.message.value,
        checksum=None,
    )
    changelog_event = await recovered.changelog_topic.decode(record)
    recovered.apply_changelog_batch([changelog_event])
    event = recovered["e-4"]
    assert isinstance(event, OrderPaid)
    assert event == event_adapter.validate_json(ORDER_LINE)
    assert event.items[0].unit_price_cents == 59900
