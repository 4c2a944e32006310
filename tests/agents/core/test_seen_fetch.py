"""A fetch's ids looked up in the dedupe at once (issue 19, `SeenRuns.look_up`,
`Ledger.look_up_ids`): the answers are those of a plain set of the ids held, and a ledger fed
fetch by fetch with them counts the duplicates a plain set of the lines gives, with and without
a window; the truth is never the ledger's."""

from __future__ import annotations

import random

from agents.core import Ledger
from agents.core.ingest import decode_values, ingest_decoded, look_up_fetch
from agents.core.ledger import TOPICS
from agents.core.seen import MIN_BATCH, SeenRuns
from tests.agents.core.test_seen import DAY, HOUR, T0, _key, join


def _ids(rng: random.Random, n: int) -> list[str]:
    """Ids of every shape a key can take: short, 15 and 16 UTF-8 bytes, NUL characters
    (leading, trailing), non-ASCII characters, the empty id."""
    alphabet = "abcdef0123456789-\x00é"
    out = {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16))) for _ in range(n)}
    return sorted(out)


def test_a_fetch_gets_the_answers_of_a_plain_set_of_the_ids_held() -> None:
    rng = random.Random(3)
    ids = [i for i in _ids(rng, 20_000) if len(i.encode()) <= 15]
    rng.shuffle(ids)
    held = ids[::2]
    truth = set(held)
    runs = SeenRuns()
    kept: list[int | None] = [None] * len(TOPICS)
    for start in range(0, len(held), 3_000):  # several batches: the filter is rebuilt
        runs.absorb([([_key(i) for i in held[start : start + 3_000]], 8 * start + 1)], kept)
    for start in range(0, len(ids), 500):
        fetch = ids[start : start + 500] + [held[start // 2]]  # an id twice in a fetch
        runs.look_up(fetch)
        assert set(runs.answers) == set(fetch)
        for event_id in fetch:
            tag = runs.answers[event_id]
            assert (tag >= 0) == (event_id in truth), event_id
            if tag >= 0:
                position = held.index(event_id)
                assert tag == 8 * (position - position % 3_000) + 1
    # An id of 16 UTF-8 bytes or more in the fetch (its key does not fit): no answers.
    runs.look_up([*ids[:10], "x" * 15 + "é"])
    assert runs.answers == {}
    # The keys change: the answers are dropped.
    runs.look_up(ids[:10])
    assert runs.answers
    runs.absorb([([_key("new-id")], 0)], kept)
    assert runs.answers == {}


def _fed_by_fetch(sent: list[tuple[int, str]], window: int | None, fetch: int) -> Ledger:
    ledger = Ledger(dedupe_window_ms=window)
    values = [
        join(ts, event_id, user=f"u{ts % 97}").model_dump_json().encode() for ts, event_id in sent
    ]
    for start in range(0, len(values), fetch):
        decoded = decode_values(values[start : start + fetch])
        look_up_fetch(decoded, ledger)
        for value in decoded:
            ingest_decoded(value, ledger, None)
    return ledger


def test_duplicates_are_counted_exactly_when_fetches_are_looked_up_at_once() -> None:
    """30,000 events, a third sent again up to 15,000 records later and some twice in one
    fetch, ids short and long, fed in fetches of 500 looked up at once: the duplicates and the
    ids are those a plain set of the lines gives, with and without a window (the answers go
    stale at each batch move into the runs, inside fetches)."""
    rng = random.Random(17)
    events = []
    for i in range(30_000):
        event_id = f"e-{rng.randrange(10**9)}" if i % 11 else f"a-long-event-id-{i:012d}"
        events.append((T0 + i * 1_000, event_id))
    sent = list(events)
    for i, event in enumerate(events):
        if i % 3 == 0:
            sent.insert(min(len(sent), i + rng.choice([1, 2, rng.randint(1, 15_000)])), event)
    truth_seen: set[str] = set()
    truth_duplicates = 0
    for _ts, event_id in sent:
        truth_duplicates += event_id in truth_seen
        truth_seen.add(event_id)
    for window in (None, 30 * DAY):
        ledger = _fed_by_fetch(sent, window, 500)
        assert ledger.counts.duplicates == truth_duplicates
        assert ledger.counts.valid == len(truth_seen)
        assert len(ledger._seen_runs) > 2 * MIN_BATCH
        assert ledger.seen_ids() == {_key(i) for i in truth_seen}


def test_an_answer_held_out_of_the_window_is_not_a_duplicate() -> None:
    """With a 1-day window and fetches looked up at once: a copy of an id of 12 hours ago is
    a duplicate; an id of an hour gone out of the window, still in the runs' arrays (its answer
    has its tag), stamped inside the window, is new (the tag is read against the window as it
    is when the event is applied)."""
    per_hour = 400
    sent: list[tuple[int, str]] = []
    copies = set()
    for hour in range(72):
        sent += [(T0 + hour * HOUR + i * 1_000, f"e-{hour}-{i}") for i in range(per_hour)]
        if hour >= 12:
            sent.append((T0 + hour * HOUR + per_hour * 1_000, f"e-{hour - 12}-0"))
            copies.add(f"e-{hour - 12}-0")
    late = [f"e-{h}-{i}" for h in range(40) for i in range(1, per_hour, 50)]
    sent += [(T0 + 71 * HOUR + 3_000_000, event_id) for event_id in late]
    ledger = _fed_by_fetch(sent, DAY, 500)
    assert ledger.counts.duplicates == len(copies)
    assert ledger.counts.valid == 72 * per_hour + len(late)
    held = {int.from_bytes(bytes(key).ljust(16, b"\x00"), "big") for key in ledger._seen_runs.keys}
    assert any(_key(event_id) in held for event_id in late)  # read from the runs' answers
