"""A partition's state (ledger and operator board) as bytes for its changelog and local store.

Format: `MAGIC` (4 bytes), a version byte, then zlib (level 1) of a pickle (protocol 5) of the
pair. The bytes come back from a Kafka topic and a RocksDB file, which anyone with access to
either can write, so `load_state` never runs the standard unpickler: `_StateUnpickler` resolves
only the livepulse core classes the state is made of (`_ALLOWED`); any other global (a
function such as `os.system`, a module, another class) is refused before anything is called,
and `StateFormatError` (a ValueError) is raised for that as for a wrong magic, an unknown
version, corrupt zlib, a pickle inflating past `max_size`, a broken pickle or a wrong
top-level shape. Allowed classes can only be instantiated with data and filled with
attributes, which is no more than a wrong state.

Measured on this 2-core machine (shared, so +-30%), Python 3.11, by
`python -m bench.state_size FILE...` (state after feeding the file; "pickle" is before zlib):

==============================  =======  ======  ======  ======  ======
state                           events   pickle  dumped  dump    load
==============================  =======  ======  ======  ======  ======
fixtures/xhs.jsonl               18,135  0.44 MB 0.19 MB  9 ms    7 ms
fixtures/impulse.jsonl           10,452  0.28 MB 0.11 MB  5 ms    5 ms
simulate xhs --scale 11         180,093  4.52 MB 1.80 MB 115 ms  122 ms
simulate xhs --scale 12         235,151  5.98 MB 2.42 MB 160 ms  110 ms
==============================  =======  ======  ======  ======  ======

About 10 bytes a valid event after zlib, ~0.6 us an event each way.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections import Counter
from typing import Final

from agents.core.concurrency import LevelCurve
from agents.core.ledger import (
    EventCounts,
    FoldedPresence,
    InteractingUsers,
    Ledger,
    MonthClosed,
    OrderFact,
    OrderFold,
    Presence,
    RefundFact,
    SessionFacts,
    SessionSummary,
)
from agents.core.operator import OperatorBoard
from agents.core.pairs import MerchantPairs, PairDays
from agents.core.periods import FrozenFigures
from agents.core.screen import FirstEntries, MinuteCounts, ScreenState, SkuTally
from agents.core.seen import SeenRuns
from agents.core.sketch import DistinctUsers, FoldedFigures, QuantileSketch, RankTable
from agents.core.windows import EventTimeWindows, MinuteBucket

MAGIC: Final[bytes] = b"LPst"
#: 2: the ledger has a dedupe window (issue 17). A version 1 state still loads, as a ledger
#: with no window (every id kept, as it was written).
#: 3: questions and replies are folded past their answer horizon (issue 17, second step). A
#: version 1 or 2 state still loads: its held questions are filed to fold in time.
#: 4: a folded question keeps no latency: per session counts, sum and histogram buckets
#: (`Ledger.folded_replies`), the latencies in the sketch. A version 3 state's folded latency
#: lists are converted into them when it loads.
#: 5: closed sessions summarized past their session horizon (`SessionSummary`, the ledger's
#: per-user totals and `month_first_joins`, `after_session_horizon`). A version 1-4 state
#: still loads, with nothing summarized and no session fold (`Ledger.__setstate__`).
#: 6: a ledger keeps, beside its orders, per (merchant, user) the first order's ts and the
#: earliest later one (`Ledger.first_orders`), per (merchant, CST month, user) the spend
#: (`month_spend`), the folded sessions' first joins per (merchant, month) (`month_first_joins`)
#: and its refund horizon. An older state (5 is the session fold's) is filed from the orders it
#: holds when it loads, with no refund horizon (every refund counted, as it was written).
#: 7: a summarized session keeps the operator board's parts of it (`SessionSummary.watch`,
#: ...), the ledger per operator level its summarized sessions' watch-time sketch and buyers
#: (`folded_watch`, `folded_payers`), `folded_figures` the distributions' part. A version 5
#: or 6 state loads with those empty (its summaries' board figures lost, as they were then).
#: 8: paid orders folded past the refund horizon (`Ledger.order_fold`, an `OrderFold`),
#: closed (merchant, month)s of `group_spend_multiple` folded into per-user totals
#: (`Ledger.month_folded_users`, `fold_months`), and the cross-partition fold's rows held
#: for combining and announcements (`MonthClosed`). A version 1-7 state loads with no order
#: and no month folded (its orders held, folded in time) and the month fold off.
#: 9: a closed period's frozen figures come with their mergeable parts (`Ledger.frozen_parts`,
#: `metrics.CLAIM_PARTS`), so that partitions' closed periods merge. A version 1-8 state loads
#: with none: its frozen periods read alone as before, and merged show `"folded": true`.
#: 10 (session 11; one version for these changes, merged together):
#:     - a level's summarized buyers (`Ledger.folded_payers`) are a `DistinctUsers` (exact up to
#:       its limit, then a HyperLogLog), and the user horizon's state (each per-user row's
#:       last-day column, `ledger.BUYER_LAST_DAY`, and the retired users' sums). A version 7-9
#:       state's sets are wrapped when it loads, and it loads with no user horizon (its users
#:       kept; the worker's setting applies from then on). Version 10 is unreleased and was
#:       changed within the session: its first form kept the last days in a dict
#:       (`Ledger.user_last_day`), which loads with them moved into the rows;
#:     - most remembered event ids are out of the ledger's set, as 16-byte keys in a sorted
#:       array with their topic and hour (`Ledger._seen_runs`, a `SeenRuns`, pickled as bytes).
#:       Ids of 16 UTF-8 bytes or more shaped as a UUID or ULID (behind a prefix of up to 7
#:       bytes) are 24-byte keys in a second array (`Ledger._seen_wide`, `seen.wide_key`; added
#:       within version 10 before its release: a version 10 state without it loads with those
#:       ids in the set, as a version 1-9 state loads with every id there, moved out as new
#:       ones come);
#:     - a ledger read from a worker's refund table carries that table's refunds of the
#:       payments it holds (`Ledger.borrowed_refunds`), for a report merged from snapshots. A
#:       version 1-9 state loads with none (its held orders read the partitions' own refunds);
#:     - `interaction_uplift`'s summarized sessions are folded into the ledger's moments of
#:       their rows (`Ledger.folded_uplift`), the shares' and `group_member_dwell`'s into cluster
#:       sums (`folded_shares`, `folded_dwell`), `post_live_tail`'s into sums and moments
#:       (`folded_tail`), and a frozen period's uplift and tail parts hold moments
#:       (`metrics.UpliftPart`, `extended.TailPart`). A version 1-9 state loads with those sums
#:       taken from the summaries it holds, and a version 9 frozen part (its rows by session, no
#:       moments) is read as rows;
#:     - a summarized session's concurrency by minute is in its levels' curves
#:       (`Ledger.board_curves`, `LevelCurve`: minutes past the board horizon settled into each
#:       level's peak and its largest settled runs; a curve written before the runs loads
#:       with its settled minutes bounded by its peak), the summary keeps its own peak
#:       (`SessionSummary.peak`); a ledger holding every partition compacts its group events
#:       (`Ledger.groups_compacted_to`). A version 1-9 state loads with its summaries' minutes
#:       moved into the curves, none settled, no board horizon, nothing compacted.
#: 11 (session 12): summaries past the board horizon retired into per-level totals and
#:     `live_aov`'s and the conversion bars' sums (`Ledger.retired_levels`,
#:     `retired_aov_rows`, `retired_aov_days`, `retired_conversion`; the board's
#:     `retired_levels`); and a worker partition sends its (merchant, user) pairs of
#:     `group_repurchase_30d` to their user's owner partition (`Ledger.take_first_orders`),
#:     which holds them (`Ledger.first_orders_in`) until it decides them into
#:     `repurchase_folded` (`pairs_decided`, `receive_firsts_closed`). A version 1-10 state
#:     loads with nothing retired, retiring off and no pair sent. A frozen period's figures
#:     are a `periods.FrozenFigures`, which keeps the figures not read yet as their parts
#:     (shared with `Ledger.frozen_parts`) and finishes each on its first read; a version 1-10
#:     state loads with its frozen figures as plain dicts, all finished (a refund stage
#:     frozen later adds its figures to them finished).
#:     A session's presence is held by slot (`ledger.Presence`: the users in slot
#:     order, the first records as two int64 arrays, the others by slot). A version 1-10 state
#:     loads with each user's packed records put in slots in the order they were held, its
#:     sessions' interacting users left in their sets (a view of the presence's flags,
#:     `ledger.InteractingUsers`, in a session started after it). The
#:     screen's first entries likewise (`screen.FirstEntries`), loaded from a dict as they were.
#:     In a ledger holding every partition (`Ledger.fold_months`), a frozen
#:     month's parts and its days' are folded (`periods._fold_settled`, `ClaimParts.fold`):
#:     the shares' per-user rows into cluster sums under `ledger.RETIRED_USERS`,
#:     `group_spend_multiple`'s rows and joins into moments, `group_member_dwell`'s rows into
#:     cluster sums with its bootstrap's t* quantiles (a sixth item: `metrics.FoldedDwellPart`).
#:     A version 10 or older state loads as it was written and its parts are folded at the
#:     next freeze.
#: 12 (session 13): `group_repurchase_30d`'s decided pairs (`Ledger.bought_before`,
#:     `pairs_decided`) are a `pairs.PairDays` (16-byte user keys and 2-byte days in sorted
#:     arrays per merchant), kept for ever unless the opt-in pair horizon is set
#:     (`Ledger.pair_horizon_ms`). A version 1-11 state loads with its dicts converted and no
#:     pair horizon (the worker sets its own: `LiveState.install`). `live_aov`'s retired rows
#:     past twice `sample.AOV_SAMPLE_SIZE` are trimmed into sums (`Ledger.retired_aov_sums`),
#:     and a retired session's `reply_latency` rows folded into `Ledger.retired_replies`; a
#:     version 1-11 state loads with those sums empty (its rows trimmed if that many).
#:     Also in 12: a worker partition's frozen parts' per-user rows of `period_rows.ROUTED`
#:     are taken once their month is frozen and folded at the user's owner partition
#:     (`agents.core.period_rows`; `Ledger.periods_frozen_to`, `period_rows_sent_through`,
#:     `period_rows_in`, `period_sources_through`, `period_users`). A version 11 or older
#:     state loads with none taken or held: its next take sends every frozen month's rows.
#:     Also in 12: a worker partition's `GroupFloor`s read from every source partition
#:     (`Ledger.group_floors_by`), by which it compacts its group events
#:     (`Ledger.receive_group_floor`). A version 1-11 state loads with none read.
#:     Also in 12: the dedupe runs hold the ids shaped `prefix` + digits as 8-byte keys
#:     (`seen.narrow_key`; `SeenRuns` pickles them as two more byte strings). A version 1-11
#:     state loads with those ids' 16-byte keys narrowed at load.
#: 13 (session 14): a worker partition's frozen parts' `group_member_dwell` rows are routed
#:     too (`period_rows.WHOLE_PERIOD`: a period's rows from every source to the period's
#:     owner partition, folded there with its bootstrap), for the months after
#:     `Ledger.period_dwell_after`, announced with each `PeriodsClosed`; an owner keeps each
#:     source's (`period_dwell_after_by`). A version 12 state loads with its months sent so
#:     far not routed (`period_dwell_after` = its `period_rows_sent_through`: their rows stay
#:     in its parts) and no source's announced (an owner folds no dwell rows until every
#:     source announces again); a version 11 or older state routes every month.
#: 14 (session 16): the order fold's buyer rows (`OrderFold`) are kept by CST month as a
#:     source (`months`) and sent to their buyer's owner partition once final there, summed
#:     at the owner (`rows_in`, `users`, each row with its last day after the six counts) and
#:     retired past the user horizon into per-claim `ClusterSums` (`retired`). A version 8-13
#:     state loads with its buyers' rows (this partition's parts, six ints) as the month ""
#:     of `months`, their last day the state's last fold, sent on at its next take.
#: 15 (session 18): `sketch.RankTable` (`folded_figures.price_watch`, a frozen period's
#:     price part) holds at most a limit of cells, coarsening past it, and pickles its cells
#:     with its `level` and `limit`. A version 1-14 table (its cells only) loads at level 0
#:     with the default limit, coarsened at load if it holds more cells.
#: 16 (session 19): a level's settled runs and gaps (`concurrency.LevelCurve`) are pickled
#:     packed (`concurrency.pack_runs`: by column, each run's start as its distance from the
#:     previous run's end and its end as its length, the columns' bytes shuffled), ~3.4x
#:     smaller after zlib than the arrays' plain bytes, which a version 1-15 state holds
#:     and loads as before.
#: 17 (session 19): a worker partition's frozen parts' per-user rows of the refund claims
#:     (`period_rows.REFUND_CLAIMS`) are taken once their second stage has frozen the month
#:     (`Ledger.period_refunds_frozen_to`, `period_refunds_sent_through`) and folded at the
#:     user's owner partition once every source announced that month's
#:     (`PeriodsClosed.refunds_through`, an owner's `period_refund_sources_through`). A
#:     version 16 or older state loads with none taken or announced: its next take after a
#:     second-stage freeze sends every kept month's refund rows.
#: 18 (session 19): an owner partition's `group_repurchase_30d` pairs (`Ledger.first_orders_in`)
#:     carry membership at their first order once the groups horizon has passed it
#:     (`ledger.OwnerPair`, `Ledger.note_first_members`), read by a merged report instead of
#:     the group events, so those pairs no longer hold the group floor. A version 11-17 state
#:     loads with its pairs' membership not recorded (each recorded at the owner's next pass).
#: 19 (session 20): a source partition records membership at the first order of the
#:     `group_repurchase_30d` pairs it holds once the groups horizon has passed it
#:     (`Ledger.first_members`: that first order's ts and the bit), sends it in the pair's
#:     `FirstOrder`, and a merged report reads it, so those pairs no longer hold the group
#:     floor either. A version 1-18 state loads with none recorded (each at the next pass).
#: 20 (session 20): a worker partition's levels' settled runs leave for the level's owner
#:     partition (`Ledger.take_board_runs`: `board_sent_to`, `board_settled_to`), which holds
#:     them (`board_runs_in`) until every source announced their minutes (`board_settled_by`)
#:     and folds them into one peak a level (`board_folded`, `board_folded_to`); a curve
#:     pickles its `folded_ceiling`. A version 1-19 state loads with nothing taken or held:
#:     its curves' runs stay (merged as before) and its next take sends them all.
VERSION: Final[int] = 20
_READABLE: Final[frozenset[int]] = frozenset(range(1, 21))
_HEADER: Final[int] = len(MAGIC) + 1
_PROTOCOL: Final[int] = 5
_ZLIB_LEVEL: Final[int] = 1
#: `load_state`'s default bound on the inflated pickle (~40x the 235k-event state).
MAX_STATE_BYTES: Final[int] = 256 * 1024 * 1024

#: (module, name) of every global a state pickle may name: the state's own classes, and
#: Counter (a plain dict subclass, for a board field that may become one).
_ALLOWED: Final[dict[tuple[str, str], type]] = {
    (cls.__module__, cls.__qualname__): cls
    for cls in (
        Ledger,
        EventCounts,
        SessionFacts,
        Presence,
        InteractingUsers,
        FoldedPresence,
        SessionSummary,
        LevelCurve,
        OrderFold,
        MonthClosed,
        OrderFact,
        RefundFact,
        OperatorBoard,
        EventTimeWindows,
        MinuteBucket,
        ScreenState,
        FirstEntries,
        MinuteCounts,
        SkuTally,
        FoldedFigures,
        QuantileSketch,
        RankTable,
        DistinctUsers,
        SeenRuns,
        FrozenFigures,
        PairDays,
        MerchantPairs,
        Counter,
    )
}


class StateFormatError(ValueError):
    """Bytes that are not a state this version can load (or that name a refused class)."""


class _StateUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED` globals and no persistent ids."""

    def find_class(self, module: str, name: str) -> type:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise StateFormatError(f"refused global in state: {module}.{name}")
        return found

    def persistent_load(self, pid: object) -> object:
        raise StateFormatError("persistent ids are not allowed in a state")


def dump_state(ledger: Ledger, board: OperatorBoard) -> bytes:
    """The pair as bytes for `load_state` (the inputs are not changed)."""
    pickled = pickle.dumps((ledger, board), protocol=_PROTOCOL)
    return MAGIC + bytes([VERSION]) + zlib.compress(pickled, _ZLIB_LEVEL)


def load_state(data: bytes, max_size: int = MAX_STATE_BYTES) -> tuple[Ledger, OperatorBoard]:
    """The pair `dump_state` wrote; StateFormatError for anything else (see the module),
    including a pickle that would inflate past `max_size` bytes (a zlib bomb)."""
    if len(data) < _HEADER or data[: len(MAGIC)] != MAGIC:
        raise StateFormatError("not a livepulse state (wrong magic)")
    version = data[len(MAGIC)]
    if version not in _READABLE:
        raise StateFormatError(
            f"unknown state version {version} (this code reads {sorted(_READABLE)})"
        )
    inflater = zlib.decompressobj()
    try:
        pickled = inflater.decompress(data[_HEADER:], max_size)
    except zlib.error as exc:
        raise StateFormatError(f"corrupt state (zlib: {exc})") from exc
    if inflater.unconsumed_tail:
        raise StateFormatError(f"state inflates past {max_size:,} bytes")
    if not inflater.eof:
        raise StateFormatError("corrupt state (zlib: truncated stream)")
    try:
        loaded = _StateUnpickler(io.BytesIO(pickled)).load()
    except StateFormatError:
        raise
    except Exception as exc:  # a broken pickle raises many kinds (EOFError, KeyError, ...)
        raise StateFormatError(f"corrupt state (pickle: {exc!r})") from exc
    if not (
        isinstance(loaded, tuple)
        and len(loaded) == 2
        and type(loaded[0]) is Ledger
        and type(loaded[1]) is OperatorBoard
    ):
        raise StateFormatError("state is not a (Ledger, OperatorBoard) pair")
    ledger, board = loaded
    if "screen" not in vars(board):  # a state saved before the live screen: curves start now
        board.screen = ScreenState()
    _check_shape(ledger, board)
    board.screen.share_slots(ledger)  # one user -> slot table a live viewer, as when saved
    return ledger, board


def _check_shape(ledger: Ledger, board: OperatorBoard) -> None:
    """The containers the core indexes into are what it expects (a cheap guard, not a proof)."""
    expected: tuple[tuple[object, type], ...] = (
        (getattr(ledger, "counts", None), EventCounts),
        (getattr(ledger, "_seen_ids", None), set),
        (getattr(ledger, "_id_hours", None), list),
        (getattr(ledger, "_seen_runs", None), SeenRuns),
        (getattr(ledger, "_seen_wide", None), SeenRuns),
        (getattr(ledger, "newest_ts", None), list),
        (getattr(ledger, "_seq", None), int),
        (getattr(ledger, "sessions", None), dict),
        (getattr(ledger, "orders", None), list),
        (getattr(ledger, "refunds", None), list),
        (getattr(ledger, "group_events", None), dict),
        (getattr(ledger, "questions", None), dict),
        (getattr(ledger, "first_reply_ts", None), dict),
        (getattr(ledger, "folded_questions", None), dict),
        (getattr(ledger, "folded_replies", None), dict),
        (getattr(board, "windows", None), EventTimeWindows),
        (getattr(board, "follows", None), dict),
        (getattr(board, "product_clicks", None), dict),
        (getattr(board, "product_clickers", None), dict),
        (getattr(board, "screen", None), ScreenState),
    )
    for value, kind in expected:
        if not isinstance(value, kind):
            raise StateFormatError(f"state field is not a {kind.__name__}: {type(value).__name__}")
