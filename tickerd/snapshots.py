"""What the daemon reports about itself: frozen, typed values, in the manner of trio's
``MemoryChannelStatistics``.

``TickerDaemon.health()`` returns a :class:`DaemonHealth`; the monitor stores a :class:`Heartbeat`
and one :class:`ExchangeRecord` per exchange in Redis, and ``tickerd status`` / ``watch`` read
them back as the same classes.  Readers use attributes, so a renamed field fails type checking
instead of a dashboard.  :data:`converter` (cattrs) turns them into JSON only at those edges;
the field names are the JSON keys other programs read, so renaming a field changes the stored
format (and needs a CHANGELOG line).

This module imports nothing of tickerd and nothing heavy: ``status`` and ``watch`` use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import attrs
import cattrs
import orjson
from cattrs.strategies import include_subclasses

T = TypeVar("T")


@attrs.frozen
class ExchangeSnapshot:
    """One exchange, as its runner sees it now (``DaemonHealth.exchanges[name]``)."""

    #: ``connected``, ``connecting``, ``reconnecting``, ``degraded``, ``failed``, ``idle``, or
    #: ``down``: no connection open, attempts failing, and no ticker delivered yet.
    state: str
    #: Open websocket connections.
    connections: int
    reconnects: int
    last_error: str | None
    #: Epoch seconds of ``last_error``.
    last_error_ts: float | None
    #: Refused symbol → the exchange's reason.
    rejected: Mapping[str, str]
    #: Subscribed symbols without an update for ``health.stale_after`` (sorted).
    stale: tuple[str, ...]
    #: Subscribed symbols (sorted).
    symbols: tuple[str, ...]
    #: Feeds (connections, open or not).
    feeds: int
    frames: int
    junk: int
    #: Symbol → epoch seconds of its latest ticker (symbols without one are left out).
    last_tick: Mapping[str, float]
    #: Subscribed symbols without any ticker yet, not yet ``stale_after`` old (sorted): neither
    #: fresh nor stale.  Defaults to none, so a record of an older tickerd still reads.
    waiting: tuple[str, ...] = attrs.field(default=(), kw_only=True)
    #: Tickers whose best bid was above their best ask (written all the same).  Keyword-only
    #: with a default, so records written before it existed still read.
    crossed: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class ExchangeRecord(ExchangeSnapshot):
    """An exchange's snapshot as stored in Redis (``RedisLayout.health(exchange)``)."""

    exchange: str
    #: Epoch seconds when it was taken.
    time: float


@attrs.frozen
class WriterCounters:
    """The writer's running totals, as the heartbeat carries them."""

    #: Tickers written to Redis.
    written: int
    #: Pipelines written.
    batches: int
    #: Updates replaced by a newer one before they were written.
    coalesced: int


@attrs.frozen
class WriterStats(WriterCounters):
    """The writer now (``DaemonHealth.writer``)."""

    #: False while Redis takes no writes (the writer holds the latest values meanwhile).
    redis_up: bool
    #: Why, while ``redis_up`` is false: ``Redis refuses tickerd: …`` (a wrong password,
    #: NOAUTH, a database the server lacks, not Redis) or ``Redis unreachable: …``.
    reason: str | None
    #: Tickers not written because Redis held a value as new (monotonic writes, fleet mode).
    rejected: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class SourceSnapshot:
    """Where the subscriptions come from (the TOML file has nothing more to say)."""

    #: ``toml``, ``postgres`` or ``fullon``.
    kind: str


@attrs.frozen
class DatabaseSourceSnapshot(SourceSnapshot):
    """Subscriptions read from PostgreSQL (tickerd's tables or fullon's)."""

    #: The database, without credentials.
    database: str
    #: ``connecting``, ``up`` or ``down``.
    state: str
    reads: int
    notifications: int
    last_read: float | None
    last_error: str | None
    #: Rows that could not be used, one line each.
    problems: tuple[str, ...]


@attrs.frozen
class FleetSnapshot:
    """This member of a fleet, as it sees the fleet (``DaemonHealth.fleet``; :mod:`tickerd.fleet`)."""

    #: ``fleet.name``.
    name: str
    #: This member's id.
    instance: str
    #: The members that own symbols (this one unless it is leaving), sorted.
    members: tuple[str, ...]
    #: Exchange → symbols this member owns by the rendezvous.
    owned: Mapping[str, int]
    #: Exchange → symbols it lost and keeps collecting until their new owners deliver them.
    handover: Mapping[str, int]
    #: False while Redis does not answer the membership (the last assignment is collected).
    store_up: bool
    reason: str | None
    #: This member's record writes and reads of the fleet's records (coordination traffic).
    record_writes: int = 0
    record_reads: int = 0
    #: Symbols it let go once their new owners delivered them, and once the grace ran out.
    handed_over: int = 0
    handed_over_late: int = 0


@attrs.frozen
class DaemonHealth:
    """``TickerDaemon.health()``: every exchange, the writer, the subscription source."""

    exchanges: Mapping[str, ExchangeSnapshot]
    writer: WriterStats
    source: SourceSnapshot | None
    #: The fleet, for a member of one (``None``: a single instance).
    fleet: FleetSnapshot | None = None

    @property
    def fleet_store(self) -> str | None:
        """In a fleet, while this member cannot reach the membership store: why (``None`` while
        it can, and for a single instance)."""
        fleet = self.fleet
        if fleet is None or fleet.store_up:
            return None
        return fleet.reason or "membership store unreachable"


@attrs.frozen
class Heartbeat:
    """The daemon's own record in Redis (``RedisLayout.heartbeat()``)."""

    #: ``running``, or ``stopped`` after a clean shutdown.
    state: str
    #: Epoch seconds when it was written.
    time: float
    started: float
    pid: int
    host: str
    version: str
    #: ``health.interval``: a heartbeat much older than this means the daemon is not working.
    interval: float
    stale_after: float
    #: The exchanges that have a health record.
    exchanges: tuple[str, ...]
    writer: WriterCounters
    source: SourceSnapshot | None
    #: In a fleet, the member's id and the fleet's name (``None`` for a single instance, and in
    #: records of an older tickerd).
    instance: str | None = attrs.field(default=None, kw_only=True)
    fleet: str | None = attrs.field(default=None, kw_only=True)
    #: In a fleet, while the member cannot reach the membership store: why
    #: (:attr:`DaemonHealth.fleet_store`; ``None`` while it can).
    fleet_store: str | None = attrs.field(default=None, kw_only=True)


#: Unstructures and structures the classes above (JSON-ready dicts; unknown keys ignored, so
#: a newer daemon's extra fields do not break an older ``tickerd status``).
converter = cattrs.Converter()
#: A source is written with its own class's fields and read back as the class whose fields it
#: has (a database's names one); every other field is written as declared, so the heartbeat's
#: ``writer`` holds the counters only, not ``redis_up`` and ``reason``.
include_subclasses(SourceSnapshot, converter)


def dumps(value: object) -> bytes:
    """JSON of a snapshot (as stored in Redis and printed by ``status --json``)."""
    return orjson.dumps(converter.unstructure(value))


class UnreadableRecord(ValueError):
    """A stored record that is not the JSON of ``cls``: another program's value under the key,
    or a record of an incompatible tickerd version.  Readers report it instead of crashing."""


def loads(raw: bytes | str, cls: type[T], key: str) -> T:
    """The record stored at ``key`` back as ``cls``; :class:`UnreadableRecord` names the key and
    what is wrong with it."""
    try:
        return converter.structure(orjson.loads(raw), cls)
    except orjson.JSONDecodeError as exc:
        raise UnreadableRecord(f"{key} is not JSON ({exc})") from None
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc))
        raise UnreadableRecord(f"{key} is not a {cls.__name__}: {problems}") from None
