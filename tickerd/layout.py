"""Where tickerd's data lives in Redis: every key name, the record encoding, the read helpers.

One class owns the layout so that the writer, the monitor, ``status``, ``watch``, the demo, the
examples and the tests agree by construction (the strict fullon layout is one attribute here;
a fleet or Redis Cluster variant has this one place to change):

* ``{prefix}tickers:{exchange}``: hash, symbol → latest ticker JSON (fullon_cache layout);
* ``{prefix}ticker_updates:{exchange}:{symbol}``: pub/sub channel, the same JSON on each update;
* ``{prefix}ticker_time:{exchange}:{symbol}``: the ticker's ``time`` as text (fullon layout only);
* ``{prefix}tickerd:heartbeat``: the daemon's own record (expires); in a fleet, one per member:
  ``{prefix}tickerd:heartbeat:{instance}``;
* ``{prefix}tickerd:health:{exchange}``: one exchange's health record (expires); in a fleet
  ``{prefix}tickerd:health:{exchange}:{instance}``;
* ``{prefix}tickerd:lease``: which daemon (or fleet) owns the prefix (expires; :mod:`tickerd.lease`);
* ``{prefix}tickerd:fleet:{NAME}:member:{instance}``, ``…:{NAME}:members`` and the channel
  ``…:{NAME}:announce``: a fleet's member records, their index and its announcements
  (:mod:`tickerd.fleet`); the fleet name in literal braces is a Redis Cluster hash tag, so one
  fleet's keys share a slot and one script may write several of them;
* ``{prefix}process:data:{process_id}``, ``{prefix}process:active:tick``,
  ``{prefix}process:components``: fullon process records (fullon_cache's ``ProcessCache``
  layout; :mod:`tickerd.fullon`), in keys other fullon programs share.

The read helpers are blocking (redis-py); async callers run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from tickerd import snapshots
from tickerd.model import Removal, Ticker
from tickerd.monotonic import SCRIPTS, SEQUENCE_RESET, TICKER_TIME, TICKERS, Script
from tickerd.snapshots import ExchangeRecord, Heartbeat

if TYPE_CHECKING:
    from tickerd.topology import Client

#: A stored ticker, decoded: fullon's ``Tick`` fields, plus every :class:`Ticker` field in the
#: extended layout.  A field the layout does not store is absent (read it with ``.get``).
Record = dict[str, Any]
#: One Redis command as redis-py packs it: the command name, then its arguments.
Command = Sequence[str | bytes]


#: The ticker record layouts ``[redis] layout`` chooses from.
LAYOUTS = ("extended", "fullon")


def tick_time(ticker: Ticker) -> float:
    """The record's ``time``: the exchange's time if it sent one, else when tickerd received it.

    The encoders spell the same rule inline: they run once per written ticker, and the call
    costs ~40 ns of their ~1.2 µs (timeit, this machine).
    """
    return ticker.exchange_ts if ticker.exchange_ts is not None else ticker.received_ts


def _encode_extended(ticker: Ticker) -> bytes:
    """fullon's ``Tick`` fields (``price`` = last, ``volume``, ``time``, ``change``,
    ``percentage``) that existing readers use, plus every Ticker field under its own name.
    Built inline (no intermediate method) because the writer thread calls it once per ticker."""
    return orjson.dumps(
        {
            "symbol": ticker.symbol,
            "exchange": ticker.exchange,
            "price": ticker.last,
            "bid": ticker.bid,
            "ask": ticker.ask,
            "last": ticker.last,
            "volume": ticker.volume_24h,
            "time": ticker.exchange_ts if ticker.exchange_ts is not None else ticker.received_ts,
            "change": ticker.change_24h,
            "percentage": ticker.change_pct_24h,
            "bid_size": ticker.bid_size,
            "ask_size": ticker.ask_size,
            "volume_24h": ticker.volume_24h,
            "high_24h": ticker.high_24h,
            "low_24h": ticker.low_24h,
            "change_24h": ticker.change_24h,
            "change_pct_24h": ticker.change_pct_24h,
            "exchange_ts": ticker.exchange_ts,
            "received_ts": ticker.received_ts,
            "mark_price": ticker.mark_price,
            "index_price": ticker.index_price,
            "funding_rate": ticker.funding_rate,
            "next_funding_ts": ticker.next_funding_ts,
            "open_interest": ticker.open_interest,
            "sequence": ticker.sequence,
        }
    )


def _encode_fullon(ticker: Ticker) -> bytes:
    """Exactly fullon's ``Tick`` fields (``symbol, exchange, price, volume, time, bid, ask,
    last, change, percentage``), for readers that refuse unknown keys; the same values as the
    extended record's fields of those names."""
    return orjson.dumps(
        {
            "symbol": ticker.symbol,
            "exchange": ticker.exchange,
            "price": ticker.last,
            "volume": ticker.volume_24h,
            "time": ticker.exchange_ts if ticker.exchange_ts is not None else ticker.received_ts,
            "bid": ticker.bid,
            "ask": ticker.ask,
            "last": ticker.last,
            "change": ticker.change_24h,
            "percentage": ticker.change_pct_24h,
        }
    )


@attrs.frozen
class RedisLayout:
    """Key names under one ``prefix`` (``""`` by default, as fullon readers expect), and the
    ticker record: ``extended`` (fullon's fields plus tickerd's own) or ``fullon`` (exactly
    fullon's ``Tick`` fields, and the ``ticker_time`` keys fullon's ``set_ticker`` writes).

    The choice is made once, here: ``encode_ticker`` *is* the chosen layout's encoder (a plain
    function, one dict and one ``orjson.dumps`` per ticker), so the writer pays no per-ticker
    test of which layout it writes.
    """

    prefix: str = ""
    #: One of :data:`LAYOUTS`.
    kind: str = attrs.field(default="extended", validator=attrs.validators.in_(LAYOUTS))
    #: Writes that never go back in time (fleet mode, several writers per key): each
    #: exchange's tickers of a batch are written by one compare-and-set script call
    #: (:mod:`tickerd.monotonic`) instead of ``HSET`` and ``PUBLISH``.
    monotonic: bool = attrs.field(default=False, kw_only=True)
    #: The fleet member whose heartbeat and health records these are (``None``: the one daemon
    #: of the prefix).  Members of a fleet each keep their own records, so none overwrites another's.
    instance: str | None = attrs.field(default=None, kw_only=True)
    #: The JSON stored in the hash and published on the channel (one call per written ticker).
    encode_ticker: Callable[[Ticker], bytes] = attrs.field(init=False, repr=False, eq=False)

    #: exchange → its ticker hash, the start of its channel names and the start of its
    #: ``ticker_time`` keys: the writer builds them once per exchange, not once per batch.  A
    #: cache of pure functions of ``prefix`` (a rebuilt layout starts empty), as many entries
    #: as there are configured exchanges.
    _key_starts: dict[str, tuple[str, str, str]] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    @encode_ticker.default
    def _encoder(self) -> Callable[[Ticker], bytes]:
        return _encode_fullon if self.kind == "fullon" else _encode_extended

    @property
    def scripts(self) -> tuple[Script, ...]:
        """The scripts :meth:`ticker_commands` calls by SHA: a connection loads them first."""
        return SCRIPTS if self.monotonic else ()

    @property
    def strict(self) -> bool:
        """Exactly fullon's fields, plus the ``ticker_time`` keys."""
        return self.kind == "fullon"

    # -- tickers ---------------------------------------------------------------------------

    def tickers(self, exchange: str) -> str:
        """The hash of latest tickers of ``exchange``."""
        return f"{self.prefix}tickers:{exchange}"

    def tickers_pattern(self) -> str:
        """``SCAN`` pattern matching every exchange's ticker hash."""
        return self.tickers("*")

    def updates(self, exchange: str, symbol: str) -> str:
        """The channel each written update of ``(exchange, symbol)`` is published on."""
        return self._updates_of(exchange) + symbol

    def updates_pattern(self, exchange: str = "*") -> str:
        """``PSUBSCRIBE`` pattern: every update (of one exchange, if named)."""
        return self._updates_of(exchange) + "*" if exchange != "*" else f"{self.prefix}ticker_updates:*"

    def ticker_time(self, exchange: str, symbol: str) -> str:
        """fullon's ``ticker_time`` key of ``(exchange, symbol)``: its latest ``time`` as text
        (fullon layout only)."""
        return f"{self.prefix}ticker_time:{exchange}:{symbol}"

    def _updates_of(self, exchange: str) -> str:
        """The channels' common start for one exchange (the writer adds each symbol to it)."""
        return f"{self.prefix}ticker_updates:{exchange}:"

    def _starts(self, exchange: str) -> tuple[str, str, str]:
        """``exchange``'s hash, channel start and ``ticker_time`` key start (:attr:`_key_starts`)."""
        starts = self._key_starts.get(exchange)
        if starts is None:
            starts = self._key_starts[exchange] = (
                self.tickers(exchange),
                self._updates_of(exchange),
                self.ticker_time(exchange, ""),
            )
        return starts

    def decode_ticker(self, raw: bytes | str) -> Record:
        """A stored or published ticker back to its record (a hash value, a message's data)."""
        return decode(raw)

    def ticker_commands(self, batch: Mapping[tuple[str, str], Ticker | Removal]) -> list[Command]:
        """The commands that store a batch of latest tickers: one ``HSET`` per exchange, then a
        ``PUBLISH`` per ticker; a :class:`~tickerd.model.Removal` deletes exactly its symbol's
        field (one ``HDEL`` per exchange, never a ``DEL`` of a hash others may write to).  The
        fullon layout adds its ``ticker_time`` keys (:meth:`_time_commands`).

        The hashes come before the publishes so a subscriber that reads the hash on a
        notification sees the value it was notified of.  Each ticker is JSON-encoded once, and
        the key names are cut from per-exchange starts (:meth:`_starts`): at a batch of one, the
        f-strings, the generator and the list copies this avoids cost as much as the record.
        """
        if self.monotonic:
            return self._monotonic_commands(batch)
        encode = self.encode_ticker
        starts = self._starts
        commands: list[Command] = []  # the HSETs, then the HDELs, the time keys, the PUBLISHes
        # exchange → its HSET command (grown per ticker) and the start of its channel names
        exchanges: dict[str, tuple[list[str | bytes], str]] = {}
        publishes: list[Command] = []
        removals: dict[str, list[str | bytes]] = {}
        for (exchange, symbol), ticker in batch.items():
            if isinstance(ticker, Removal):
                removals.setdefault(exchange, ["HDEL", starts(exchange)[0]]).append(symbol)
                continue
            payload = encode(ticker)
            known = exchanges.get(exchange)
            if known is None:
                key, channel, _ = starts(exchange)
                known = exchanges[exchange] = (["HSET", key], channel)
                commands.append(known[0])
            fields, channel = known
            fields += (symbol, payload)
            publishes.append(("PUBLISH", channel + symbol, payload))
        commands += removals.values()
        if self.strict:
            commands += self._time_commands(batch)
        commands += publishes
        return commands

    def _monotonic_commands(self, batch: Mapping[tuple[str, str], Ticker | Removal]) -> list[Command]:
        """:meth:`ticker_commands` of a fleet (:attr:`monotonic`): one :data:`~tickerd.monotonic.TICKERS`
        call per exchange, which writes and publishes each ticker unless the stored one is as new
        (the sequence and time go along as arguments, so the script decodes no JSON but the
        stored one's two fields).  The fullon layout's ``ticker_time`` keys take one
        :data:`~tickerd.monotonic.TICKER_TIME` call each (they lie in other cluster slots), before
        the hash: a reader notified of a value finds its time already there.  Removals are the
        plain ``HDEL`` and ``DEL``."""
        encode = self.encode_ticker
        starts = self._starts
        strict = self.strict
        times: list[Command] = []
        # exchange → its script call (grown per ticker)
        calls: dict[str, list[str | bytes]] = {}
        removals: dict[str, list[str | bytes]] = {}
        gone: list[str | bytes] = ["DEL"]
        for (exchange, symbol), ticker in batch.items():
            if isinstance(ticker, Removal):
                removals.setdefault(exchange, ["HDEL", starts(exchange)[0]]).append(symbol)
                if strict:
                    gone.append(starts(exchange)[2] + symbol)
                continue
            call = calls.get(exchange)
            if call is None:
                key, channel, _ = starts(exchange)
                call = calls[exchange] = ["EVALSHA", TICKERS.sha, "1", key, channel, _RESET]
            time = repr(ticker.exchange_ts if ticker.exchange_ts is not None else ticker.received_ts)
            sequence = ticker.sequence
            call += (symbol, "" if sequence is None else str(sequence), time, encode(ticker))
            if strict:
                times.append(("EVALSHA", TICKER_TIME.sha, "1", starts(exchange)[2] + symbol, time))
        commands: list[Command] = [*times, *calls.values(), *removals.values()]
        if len(gone) > 1:
            commands.append(gone)
        return commands

    def _time_commands(self, batch: Mapping[tuple[str, str], Ticker | Removal]) -> list[Command]:
        """fullon's ``ticker_time`` keys of a batch, as its ``set_ticker`` and ``delete_ticker``
        keep them: one ``MSET`` of the written tickers' ``str(time)`` (no expiry), one ``DEL``
        of the removed symbols' keys.  A pass of its own, so the extended layout's loop above
        carries no per-ticker test for it."""
        times: list[str | bytes] = ["MSET"]
        gone: list[str | bytes] = ["DEL"]
        starts = self._starts
        for (exchange, symbol), ticker in batch.items():
            if isinstance(ticker, Removal):
                gone.append(starts(exchange)[2] + symbol)
            else:
                times += (starts(exchange)[2] + symbol, str(tick_time(ticker)))
        return [command for command in (times, gone) if len(command) > 1]

    def read_ticker(self, client: Client, exchange: str, symbol: str) -> Record | None:
        """The latest ticker of ``(exchange, symbol)``, or ``None`` if none is stored."""
        raw = client.hget(self.tickers(exchange), symbol)
        return None if raw is None else decode(raw)

    def read_tickers(self, client: Client, exchange: str) -> dict[str, Record]:
        """Every stored ticker of ``exchange``, by symbol."""
        stored: dict[bytes | str, bytes | str] = client.hgetall(self.tickers(exchange))
        return {
            symbol if isinstance(symbol, str) else symbol.decode(): decode(raw)
            for symbol, raw in stored.items()
        }

    def read_all_tickers(self, client: Client) -> list[Record]:
        """Every stored ticker of every exchange under this prefix."""
        records: list[Record] = []
        for key in client.scan_iter(match=self.tickers_pattern(), count=100):
            records += [decode(raw) for raw in client.hgetall(key).values()]
        return records

    def delete_tickers(self, client: Client, exchanges: Sequence[str]) -> None:
        """Remove the ticker hashes of ``exchanges`` (the demo cleans up after itself)."""
        if exchanges:
            client.delete(*(self.tickers(name) for name in exchanges))

    # -- health ----------------------------------------------------------------------------

    def heartbeat(self) -> str:
        """The daemon's own record (:attr:`instance`'s in a fleet)."""
        key = f"{self.prefix}tickerd:heartbeat"
        return key if self.instance is None else f"{key}:{self.instance}"

    def health(self, exchange: str) -> str:
        """One exchange's health record (as :attr:`instance` collects it, in a fleet)."""
        key = f"{self.prefix}tickerd:health:{exchange}"
        return key if self.instance is None else f"{key}:{self.instance}"

    def lease(self) -> str:
        """The lease naming the daemon (or fleet) that owns this prefix (:mod:`tickerd.lease`)."""
        return f"{self.prefix}tickerd:lease"

    # -- fleet (tickerd.fleet) -----------------------------------------------------------------

    def _fleet(self, name: str) -> str:
        """The start of fleet ``name``'s keys; ``{name}`` is a Redis Cluster hash tag."""
        return f"{self.prefix}tickerd:fleet:{{{name}}}:"

    def fleet_member(self, name: str, instance: str) -> str:
        """One member's record: JSON, expiring with its lease."""
        return f"{self._fleet(name)}member:{instance}"

    def fleet_members(self, name: str) -> str:
        """The set of member ids whose records may be live (the records say which are)."""
        return f"{self._fleet(name)}members"

    def fleet_channel(self, name: str) -> str:
        """The channel on which members announce joins, leaves and changes of their records."""
        return f"{self._fleet(name)}announce"

    def read_health(self, client: Client) -> tuple[Heartbeat | None, dict[str, ExchangeRecord]]:
        """The heartbeat (``None`` when absent: never started, or expired) and the record of
        every exchange it lists that has one, as ``tickerd status`` and ``watch`` read them
        (blocking: redis-py).  A record that cannot be read raises
        :class:`~tickerd.snapshots.UnreadableRecord`."""
        raw = client.get(self.heartbeat())
        if raw is None:
            return None, {}
        heartbeat = snapshots.loads(raw, Heartbeat, self.heartbeat())
        exchanges: dict[str, ExchangeRecord] = {}
        names = heartbeat.exchanges
        if names:
            # One GET per record in a pipeline, not one MGET: on a Redis Cluster the records
            # are in different slots, and the pipeline sends each to the node that holds it.
            with client.pipeline(transaction=False) as pipeline:
                for name in names:
                    pipeline.get(self.health(name))
                values = pipeline.execute()
            for name, value in zip(names, values, strict=True):
                if value is not None:
                    exchanges[name] = snapshots.loads(value, ExchangeRecord, self.health(name))
        return heartbeat, exchanges

    # -- records: the commands of the monitor's writes -------------------------------------

    def record_command(self, key: str, value: bytes | None, ttl: int) -> Command:
        """A record of tickerd's own: ``SET key value EX ttl``, or ``DEL key`` for ``None``."""
        return ("DEL", key) if value is None else ("SET", key, value, "EX", str(ttl))

    def field_command(self, key: str, field: str, value: str | None, *, owner: str | None = None) -> Command:
        """One field of a hash other programs write to as well: ``HSET key field value``, or
        for ``None`` ``HDEL`` of that field alone, never a ``DEL`` of the hash.  With
        ``owner``, the field is deleted only while it still holds ``owner``: another program
        may have taken the field over since (a component registered anew), and its entry is
        not tickerd's to delete (one atomic script, so no write falls between check and delete).
        """
        if value is not None:
            return ("HSET", key, field, value)
        if owner is None:
            return ("HDEL", key, field)
        return ("EVAL", _HDEL_IF_OWNER, "1", key, field, owner)

    # -- fullon process records (fullon_cache's ProcessCache layout: tickerd.fullon) --------

    def process_data(self, process_id: str) -> str:
        """One process's record: JSON, expiring (fullon's ``process:data:{process_id}``)."""
        return f"{self.prefix}process:data:{process_id}"

    def process_active(self, process_type: str) -> str:
        """Hash, process id → ISO time of its last update, of the running processes of a type
        (fullon's ``process:active:{type}``; tickerd's type is ``tick``)."""
        return f"{self.prefix}process:active:{process_type}"

    def process_components(self) -> str:
        """Hash, component → the id of its latest process (fullon's ``process:components``)."""
        return f"{self.prefix}process:components"

    def owned_pattern(self) -> str:
        """Every key of this layout's prefix (tests clean up with it)."""
        return f"{self.prefix}*"


#: :data:`~tickerd.monotonic.SEQUENCE_RESET` as the :data:`~tickerd.monotonic.TICKERS` script reads it.
_RESET = repr(SEQUENCE_RESET)

#: ``HDEL KEYS[1] ARGV[1]`` only while the field holds ``ARGV[2]`` (:meth:`RedisLayout.field_command`).
_HDEL_IF_OWNER = (
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end "
    "return 0"
)


def record_ticker(record: Record) -> Ticker:
    """A stored or published record as the :class:`Ticker` it was written from, whichever
    layout wrote it (readers need not know which: the record says it by its fields).

    * extended (it has ``received_ts``): every Ticker field under its own name; a field an
      older tickerd did not write yet (the derivative fields) is ``None``;
    * fullon (fullon's ``Tick`` fields alone, also as fullon's own programs write them):
      ``last`` (``price`` if absent), ``bid``, ``ask``, ``volume`` as ``volume_24h``, ``change``
      and ``percentage`` as the 24 h change; ``exchange_ts`` is ``None`` and ``received_ts``
      is the record's ``time`` (it is the exchange's time where the exchange sent one, else
      the receive time: which one, the record does not say), so ages are reckoned from it.
      The sizes, 24 h high/low and derivative fields are not stored: ``None``.
    """
    get = record.get
    if "received_ts" in record:
        return Ticker(
            record["exchange"],
            record["symbol"],
            get("last"),
            get("bid"),
            get("ask"),
            get("bid_size"),
            get("ask_size"),
            get("volume_24h"),
            get("high_24h"),
            get("low_24h"),
            get("change_24h"),
            get("change_pct_24h"),
            get("exchange_ts"),
            record["received_ts"],
            get("mark_price"),
            get("index_price"),
            get("funding_rate"),
            get("next_funding_ts"),
            get("open_interest"),
            get("sequence"),
        )
    return Ticker(
        record["exchange"],
        record["symbol"],
        get("last", get("price")),
        get("bid"),
        get("ask"),
        None,
        None,
        get("volume"),
        None,
        None,
        get("change"),
        get("percentage"),
        None,
        record["time"],
    )


def encode(record: dict[str, Any]) -> bytes:
    """A record as stored (tickers and health records are JSON objects)."""
    return orjson.dumps(record)


def decode(raw: bytes | str) -> dict[str, Any]:
    """A stored record back to a dict."""
    result: dict[str, Any] = orjson.loads(raw)
    return result
