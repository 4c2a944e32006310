"""Dead letters: a rejected record's bytes with its reason, published to the dead-letter topic
behind the stream and settled before any snapshot covers their records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.errors import KafkaError, KafkaTimeoutError

from streams.runtime.batch_consumer import FetchedRecord

log = logging.getLogger(__name__)

# Dead-letter headers (docs/design.md); values are UTF-8 bytes.
H_REASON: Final[str] = "livepulse-reason"
H_DETAIL: Final[str] = "livepulse-detail"
H_SOURCE_TOPIC: Final[str] = "livepulse-source-topic"
H_SOURCE_PARTITION: Final[str] = "livepulse-source-partition"
H_SOURCE_OFFSET: Final[str] = "livepulse-source-offset"
#: On a dead letter whose value was cut to `MAX_LETTER_VALUE_BYTES`: the original size.
H_TRUNCATED_FROM: Final[str] = "livepulse-truncated-from"
#: The most of a rejected record's value a dead letter carries: a record over the contract's
#: 1 MiB can reach the worker (a compressed batch under the broker's limit), but the producer
#: refuses a request over 1,000,000 bytes (faust's producer_max_request_size), so its dead
#: letter keeps the first bytes, with room left for the key and headers.
MAX_LETTER_VALUE_BYTES: Final[int] = 900_000
_MAX_DETAIL_CHARS: Final[int] = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record to publish on the dead-letter topic: the original key and value, and why."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(record: FetchedRecord, reason: str, detail: str) -> DeadLetter:
    """The dead letter of `record`: its bytes unchanged, the reason and its origin in headers
    after the producer's own headers (kept as they were, in their order). A value over
    `MAX_LETTER_VALUE_BYTES` is cut to that, its size in `H_TRUNCATED_FROM`."""
    value = record.value
    headers = [
        *record.headers,
        (H_REASON, reason.encode()),
        (H_DETAIL, detail[:_MAX_DETAIL_CHARS].encode("utf-8", "replace")),
        (H_SOURCE_TOPIC, record.topic.encode()),
        (H_SOURCE_PARTITION, str(record.partition).encode()),
        (H_SOURCE_OFFSET, str(record.offset).encode()),
    ]
    if value is not None and len(value) > MAX_LETTER_VALUE_BYTES:
        headers.append((H_TRUNCATED_FROM, str(len(value)).encode()))
        value = value[:MAX_LETTER_VALUE_BYTES]
    return DeadLetter(key=record.key, value=value, headers=headers)


#: Publishes dead letters and waits until the broker has them (acks=all).
PublishDeadLetters = Callable[[Sequence[DeadLetter]], Awaitable[None]]
#: Sends one dead letter; awaiting the result waits for the broker's acknowledgement.
SendDeadLetter = Callable[[DeadLetter], Awaitable[Any]]

#: Attempts for a dead letter the broker refuses for good (too large, not authorised, ...).
PUBLISH_ATTEMPTS: Final[int] = 5
RETRY_BACKOFF_S: Final[float] = 0.5
_MAX_BACKOFF_S: Final[float] = 10.0


def retriable(exc: BaseException) -> bool:
    """Whether a failed send may succeed later (the broker away, a leader moving, a timeout)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def topic_sender(topic: Any) -> SendDeadLetter:
    """Sends to a faust topic (`streams.runtime.topics.raw_topic`) and awaits the broker's
    acknowledgement (its record metadata)."""

    async def send(letter: DeadLetter) -> Any:
        delivery = await topic.send(key=letter.key, value=letter.value, headers=letter.headers)
        return await delivery

    return send


class DeadLetterPublisher:
    """Sends dead letters until the broker acknowledges them all, or refuses them for good."""

    def __init__(
        self,
        send: SendDeadLetter,
        on_given_up: Callable[[int], None],
        *,
        backoff_s: float = RETRY_BACKOFF_S,
    ) -> None:
        self.send = send
        #: Told how many letters were given up on (`livepulse_deadletter_failures_total`).
        self.on_given_up = on_given_up
        self.backoff_s = backoff_s

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send dead letters and wait for the broker to acknowledge them all.

        The batch's records are covered by a snapshot (and their offsets committed) only after
        this returns, so a dead letter is never lost to a crash or an outage in between: while
        the broker is away (a retriable error) this keeps trying, and the partition waits. A
        letter the broker refuses for good (a non-retriable error, `PUBLISH_ATTEMPTS` times) is
        logged and counted rather than stopping the stream for ever. A letter whose send raised
        is sent again though the broker may have written it (an answer lost to a broker killed
        after the write): letters are at least once, a copy identical to the first, deduped by
        a consumer on the source coordinates in their headers (`H_SOURCE_*`).
        """
        pending = list(letters)
        refused = 0  # consecutive rounds that had a non-retriable error
        attempt = 0
        while pending:
            attempt += 1
            results = await asyncio.gather(*map(self.send, pending), return_exceptions=True)
            failed = [
                (letter, result)
                for letter, result in zip(pending, results, strict=True)
                if isinstance(result, BaseException)
            ]
            if not failed:
                return
            for _, result in failed:
                if isinstance(result, asyncio.CancelledError):
                    raise result
            pending = [letter for letter, _ in failed]
            if all(retriable(result) for _, result in failed):
                refused = 0
            else:
                refused += 1
                if refused >= PUBLISH_ATTEMPTS:
                    break
            log.warning(
                "dead-letter topic refused %d records (attempt %d): %r",
                len(failed),
                attempt,
                failed[0][1],
            )
            await asyncio.sleep(min(_MAX_BACKOFF_S, self.backoff_s * attempt))
        self.on_given_up(len(pending))
        log.error("gave up on %d dead letters the broker refuses", len(pending))


#: Most batches whose dead letters may be in flight at once; the next batch waits beyond.
MAX_PENDING_PUBLISHES: Final[int] = 8


class DeadLetterPipeline:
    """Dead letters published in the background, so the next fetch need not wait for them.

    Almost every batch has a dead letter (bad input is ~0.5% of records), and waiting for the
    broker's acknowledgement before the next fetch cost each batch a round trip (latency,
    bench/NOTES.md). What a crash must not lose is kept by `settle()`: a snapshot
    (`streams.runtime.keeper`) awaits every publish in flight before it covers their records, so
    a dead letter is on the broker before any snapshot says its record was processed. While the
    broker is away, at most `MAX_PENDING_PUBLISHES` batches go ahead of their dead letters.
    """

    def __init__(self, publish: PublishDeadLetters) -> None:
        self.publish = publish
        self.pending: list[asyncio.Task[None]] = []

    async def submit(self, letters: Sequence[DeadLetter]) -> None:
        self.pending = [task for task in self.pending if not task.done()]
        while len(self.pending) >= MAX_PENDING_PUBLISHES:
            await self.pending.pop(0)
        self.pending.append(asyncio.ensure_future(self.publish(letters)))

    async def settle(self) -> None:
        """Wait until every dead letter submitted so far is acknowledged (or given up on)."""
        while self.pending:
            await self.pending.pop(0)
