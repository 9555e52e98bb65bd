"""Reading what tickerd writes: typed tickers from Redis, the latest and live.

Programs that consume tickerd's tickers (bots, dashboards, risk services) read them through
:class:`TickerClient` (blocking, redis-py) or :class:`AsyncTickerClient` (asyncio, redis-py's
asyncio client), instead of each spelling the key names, the record's JSON and the freshness
rule again.  Both have the same methods:

* ``latest(exchange, symbol, max_age=None)``: the latest :class:`~tickerd.model.Ticker`, or
  ``None`` when none is stored; with ``max_age``, a ticker received longer ago than that
  raises :class:`StaleTicker` (a price nobody refreshed is worse than none);
* ``latest_many(pairs, max_age=None)``: many ``(exchange, symbol)`` in one round trip;
* ``all(exchange)``: every stored ticker of an exchange, by symbol;
* ``updates(exchange=None, symbols=None)``: each ticker as tickerd writes it (pub/sub), for
  ``for ticker in …`` / ``async for ticker in …``.

The key names and the record decoding are :class:`~tickerd.layout.RedisLayout`'s (the writer's
own), so a client reads whatever the daemon writes, under any ``redis.prefix``, in either
record layout: the fullon record stores fewer fields (those it lacks are ``None``) and no
receive time, so its ``time`` serves as one (:func:`~tickerd.layout.record_ticker`).  Ages are
this machine's clock minus the ticker's ``received_ts``, the daemon's clock: keep both synced.

Updates are pub/sub: what is published while a subscriber is disconnected is lost (redis-py
reconnects and subscribes again by itself; a longer outage raises ``redis.ConnectionError``
from the iteration).  The subscription is in place once ``updates()`` (the synchronous
client) or ``async with client.updates(…)`` (asyncio) returns, so the way to miss nothing is
to subscribe first, then read the latest values, then iterate.

trio programs use :class:`TickerClient` through trio's thread bridge, as tickerd itself uses
redis-py (redis-py has no trio client; :class:`AsyncTickerClient` needs an asyncio loop)::

    with TickerClient.from_url(url) as client, client.updates("kraken") as updates:
        btc = await trio.to_thread.run_sync(client.latest, "kraken", "BTC/USD")
        while True:
            ticker = await trio.to_thread.run_sync(updates.get, 1.0)  # None after 1 s

A wait of at most ``timeout`` seconds per call keeps the task cancellable (a worker thread
cannot be interrupted; trio waits for it to return).  A trio program that shares asyncio code
can run :class:`AsyncTickerClient` the same way, in an asyncio loop of its own in a worker
thread (``trio.to_thread.run_sync(asyncio.run, …)``-style), handing tickers over with
``trio.from_thread.run(send_channel.send, ticker)`` and calling
``trio.from_thread.check_cancelled()`` between ``await updates.get(timeout)`` calls so that
it ends when its trio task is cancelled (tests/test_client.py shows it whole).

This module imports neither trio nor the daemon: a reader pays only for redis-py and the
layout.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import redis.asyncio.cluster

from tickerd import topology
from tickerd.layout import RedisLayout, decode, record_ticker
from tickerd.model import Ticker

__all__ = ["AsyncTickerClient", "AsyncUpdates", "StaleTicker", "TickerClient", "Updates"]

#: ``(exchange, symbol)``.
Pair = tuple[str, str]
#: A pub/sub message as redis-py returns it.
_Message = Mapping[str, Any]
#: The message types that carry a published ticker (the others confirm (un)subscriptions).
_DATA = ("message", "pmessage")
#: The message types that confirm a subscription.
_CONFIRMATIONS = ("subscribe", "psubscribe")


class StaleTicker(Exception):
    """The latest ticker of ``(exchange, symbol)`` was received ``age`` seconds ago, longer
    than the ``max_age`` the reader accepts: its feed stopped, or tickerd did.  The ticker
    itself is :attr:`ticker`, for a reader that would rather show it marked old."""

    def __init__(self, ticker: Ticker, age: float, max_age: float) -> None:
        super().__init__(
            f"{ticker.exchange} {ticker.symbol}: the latest ticker is {age:.1f} s old "
            f"(received {_clock(ticker.received_ts)}), older than max_age {max_age:g} s"
        )
        self.ticker = ticker
        self.exchange = ticker.exchange
        self.symbol = ticker.symbol
        self.age = age
        self.max_age = max_age


def _clock(epoch: float) -> str:
    """An epoch time as a UTC wall-clock time, for a message a person reads."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _checked(ticker: Ticker | None, max_age: float | None, now: float) -> Ticker | None:
    """``ticker``, unless it is older than ``max_age`` seconds at ``now``: :class:`StaleTicker`."""
    if ticker is not None and max_age is not None:
        age = now - ticker.received_ts
        if age > max_age:
            raise StaleTicker(ticker, age, max_age)
    return ticker


def _ticker(raw: bytes | str | None) -> Ticker | None:
    """A hash value (``None``: no such field) as its Ticker."""
    return None if raw is None else record_ticker(decode(raw))


class _Reader:
    """What the two clients share: the layout, and the turning of Redis replies into Tickers
    (each client only sends the commands, blocking or awaited)."""

    def __init__(self, prefix: str) -> None:
        self.layout = RedisLayout(prefix)

    @property
    def prefix(self) -> str:
        """The ``redis.prefix`` of the daemon whose tickers this client reads."""
        return self.layout.prefix

    @staticmethod
    def _grouped(pairs: Iterable[Pair]) -> dict[str, list[str]]:
        """exchange → its symbols, in the order asked (one ``HMGET`` per exchange)."""
        groups: dict[str, list[str]] = {}
        for exchange, symbol in pairs:
            groups.setdefault(exchange, []).append(symbol)
        return groups

    @staticmethod
    def _many(
        groups: Mapping[str, Sequence[str]],
        replies: Sequence[Sequence[bytes | str | None]],
        max_age: float | None,
    ) -> dict[Pair, Ticker | None]:
        now = time.time()
        found: dict[Pair, Ticker | None] = {}
        for (exchange, symbols), values in zip(groups.items(), replies, strict=True):
            for symbol, raw in zip(symbols, values, strict=True):
                found[exchange, symbol] = _checked(_ticker(raw), max_age, now)
        return found

    @staticmethod
    def _all(reply: Mapping[bytes | str, bytes | str]) -> dict[str, Ticker]:
        return {
            symbol if isinstance(symbol, str) else symbol.decode(): record_ticker(decode(raw))
            for symbol, raw in reply.items()
        }

    def _channels(self, exchange: str | None, symbols: Iterable[str] | None) -> tuple[list[str], list[str]]:
        """The channels (for named symbols) or the pattern (one exchange's, or every
        exchange's) that carry the updates asked for."""
        if symbols is None:
            return [], [self.layout.updates_pattern(exchange or "*")]
        if exchange is None:
            raise ValueError("updates: symbols need their exchange")
        channels = [self.layout.updates(exchange, symbol) for symbol in symbols]
        if not channels:
            raise ValueError("updates: no symbols (symbols=None follows every symbol of the exchange)")
        return channels, []


class _Subscription:
    """The state both kinds of :meth:`updates` share: what to subscribe to, the confirmations
    still awaited, and tickers that came before the last confirmation."""

    def __init__(self, channels: list[str], patterns: list[str]) -> None:
        self.channels = channels
        self.patterns = patterns
        self.unconfirmed = len(channels) + len(patterns)
        self.early: list[Ticker] = []

    def take(self, message: _Message | None) -> Ticker | None:
        """The ticker a message carries, counting confirmations meanwhile (``None`` for them;
        after a reconnect redis-py subscribes again and they come again: still ``None``)."""
        if message is None:
            return None
        kind = message["type"]  # redis-py decodes it, whatever the client's decode_responses
        if kind in _DATA:
            return record_ticker(decode(message["data"]))
        if kind in _CONFIRMATIONS and self.unconfirmed:
            self.unconfirmed -= 1
        return None


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Updates:
    """Each ticker of the subscribed symbols as tickerd writes it (:meth:`TickerClient.updates`).

    Iterate it (``for ticker in updates``: blocks until the next one, forever), or call
    :meth:`get` with a timeout.  The subscription is in place when the object is made; it ends
    with :meth:`close` (``with`` does it), or when the object is collected.
    """

    def __init__(self, client: topology.Client, subscription: _Subscription) -> None:
        self._pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        self._subscription = subscription
        if subscription.channels:
            self._pubsub.subscribe(*subscription.channels)
        else:
            self._pubsub.psubscribe(*subscription.patterns)
        while subscription.unconfirmed:  # each message before the last confirmation is kept
            ticker = subscription.take(self._pubsub.get_message(timeout=None))
            if ticker is not None:
                subscription.early.append(ticker)

    def get(self, timeout: float | None = None) -> Ticker | None:
        """The next ticker, or ``None`` once ``timeout`` seconds passed without one
        (``None``: wait as long as it takes)."""
        if self._subscription.early:
            return self._subscription.early.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ticker = self._subscription.take(self._pubsub.get_message(timeout=_remaining(deadline)))
            if ticker is not None:
                return ticker
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Ticker:
        ticker = self.get()
        assert ticker is not None  # no timeout: get returns only with a ticker
        return ticker

    def close(self) -> None:
        """End the subscription and give its connection back."""
        self._pubsub.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TickerClient(_Reader):
    """Reads tickerd's tickers with redis-py (blocking).

    ``TickerClient.from_url(url, prefix=…)`` opens (and on :meth:`close` closes) its own client;
    ``TickerClient(redis_client, prefix=…)`` reads through one the program already has, and
    leaves it open.  ``prefix`` is the daemon's ``redis.prefix``.
    """

    def __init__(self, client: topology.Client, *, prefix: str = "") -> None:
        super().__init__(prefix)
        self.redis = client
        self._owned = False

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "", **options: Any) -> Self:
        """A client of its own for ``url`` (``redis://``, ``rediss://``, ``unix://``, a Redis
        Cluster's ``redis+cluster://…`` or Sentinel's ``redis+sentinel://…/MASTERNAME``:
        :mod:`tickerd.topology`; redis-py's URL options apply, e.g. ``?ssl_ca_certs=…``);
        ``options`` go to redis-py's client as to ``redis.Redis.from_url``."""
        reader = cls(topology.client(url, **options), prefix=prefix)
        reader._owned = True
        return reader

    def latest(self, exchange: str, symbol: str, max_age: float | None = None) -> Ticker | None:
        """The latest ticker of ``(exchange, symbol)``, ``None`` when none is stored (never
        written, or the symbol was removed); :class:`StaleTicker` if it was received more than
        ``max_age`` seconds ago."""
        raw = self.redis.hget(self.layout.tickers(exchange), symbol)
        return _checked(_ticker(raw), max_age, time.time())

    def latest_many(self, pairs: Iterable[Pair], max_age: float | None = None) -> dict[Pair, Ticker | None]:
        """The latest ticker of each ``(exchange, symbol)`` (``None`` where none is stored), by
        pair in the order asked, in one round trip; with ``max_age``, the first stale one in
        that order raises :class:`StaleTicker`."""
        groups = self._grouped(pairs)
        with self.redis.pipeline(transaction=False) as pipeline:
            for exchange, symbols in groups.items():
                pipeline.hmget(self.layout.tickers(exchange), symbols)
            replies = pipeline.execute()
        return self._many(groups, replies, max_age)

    def all(self, exchange: str) -> dict[str, Ticker]:
        """Every stored ticker of ``exchange``, by symbol."""
        return self._all(self.redis.hgetall(self.layout.tickers(exchange)))

    def updates(self, exchange: str | None = None, symbols: Iterable[str] | None = None) -> Updates:
        """Live tickers: of ``symbols`` of ``exchange``, of every symbol of ``exchange``
        (``symbols=None``), or of every exchange (neither).  Subscribed on return."""
        return Updates(self.redis, _Subscription(*self._channels(exchange, symbols)))

    def close(self) -> None:
        """Close the Redis client if this client opened it (:meth:`from_url`)."""
        if self._owned:
            self.redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncUpdates:
    """:class:`Updates` for asyncio (:meth:`AsyncTickerClient.updates`).

    ``async with`` subscribes on entry (so the subscription is in place before the body reads
    anything) and ends it on exit; a bare ``async for`` subscribes on its first step, and the
    subscription ends with :meth:`aclose` or with the client.
    """

    def __init__(self, client: topology.AsyncClient, subscription: _Subscription) -> None:
        self._client = client
        self._pubsub = client.pubsub()
        self._subscription = subscription
        self._subscribed = False

    async def subscribe(self) -> None:
        """Subscribe now (once; every other method does it first if it was not done)."""
        if self._subscribed:
            return
        self._subscribed = True
        if isinstance(self._client, redis.asyncio.cluster.RedisCluster):
            # redis-py's asyncio cluster pub/sub picks its node from the slot map without
            # loading it first (a client that ran no command yet has none): load it.
            await self._client.initialize()
        subscription = self._subscription
        if subscription.channels:
            await self._pubsub.subscribe(*subscription.channels)
        else:
            await self._pubsub.psubscribe(*subscription.patterns)
        while subscription.unconfirmed:
            ticker = subscription.take(await self._pubsub.get_message(timeout=None))
            if ticker is not None:
                subscription.early.append(ticker)

    async def get(self, timeout: float | None = None) -> Ticker | None:  # noqa: ASYNC109
        """The next ticker, or ``None`` once ``timeout`` seconds passed without one.

        A timeout of redis-py's own rather than ``asyncio.timeout``: a read cancelled half-way
        makes redis-py drop the connection (and what was published meanwhile with it)."""
        await self.subscribe()
        if self._subscription.early:
            return self._subscription.early.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = await self._pubsub.get_message(timeout=_remaining(deadline))
            ticker = self._subscription.take(message)
            if ticker is not None:
                return ticker
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Ticker:
        ticker = await self.get()
        assert ticker is not None  # no timeout: get returns only with a ticker
        return ticker

    async def aclose(self) -> None:
        """End the subscription and give its connection back."""
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        await self.subscribe()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncTickerClient(_Reader):
    """:class:`TickerClient` for asyncio, on redis-py's asyncio client: the same methods,
    awaited (``updates`` is iterated with ``async for``), ``async with`` for closing."""

    def __init__(self, client: topology.AsyncClient, *, prefix: str = "") -> None:
        super().__init__(prefix)
        self.redis = client
        self._owned = False

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "", **options: Any) -> Self:
        """A client of its own for ``url`` (as :meth:`TickerClient.from_url`)."""
        reader = cls(topology.async_client(url, **options), prefix=prefix)
        reader._owned = True
        return reader

    async def latest(self, exchange: str, symbol: str, max_age: float | None = None) -> Ticker | None:
        """As :meth:`TickerClient.latest`."""
        raw = await self.redis.hget(self.layout.tickers(exchange), symbol)
        return _checked(_ticker(raw), max_age, time.time())

    async def latest_many(
        self, pairs: Iterable[Pair], max_age: float | None = None
    ) -> dict[Pair, Ticker | None]:
        """As :meth:`TickerClient.latest_many`."""
        groups = self._grouped(pairs)
        async with self.redis.pipeline(transaction=False) as pipeline:
            for exchange, symbols in groups.items():
                pipeline.hmget(self.layout.tickers(exchange), symbols)
            replies = await pipeline.execute()
        return self._many(groups, replies, max_age)

    async def all(self, exchange: str) -> dict[str, Ticker]:
        """As :meth:`TickerClient.all`."""
        return self._all(await self.redis.hgetall(self.layout.tickers(exchange)))

    def updates(self, exchange: str | None = None, symbols: Iterable[str] | None = None) -> AsyncUpdates:
        """As :meth:`TickerClient.updates`; subscribed on ``async with`` or the first step."""
        return AsyncUpdates(self.redis, _Subscription(*self._channels(exchange, symbols)))

    async def aclose(self) -> None:
        """Close the Redis client if this client opened it (:meth:`from_url`)."""
        if self._owned:
            await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()
