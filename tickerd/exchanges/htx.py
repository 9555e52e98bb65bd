"""HTX (formerly Huobi): the market-data websocket protocol its spot and derivatives feeds share.

Documentation: HTX's API pages (www.htx.com/en-us/opend/newApiPages), USDT-margined contracts,
"WebSocket Heartbeat and Authentication Interface" (*Market Heartbeat*, *Data Compression*) and
each channel's "Subscription Example" / "Example of a Successful Subscription"; the spot API
(huobiapi.github.io/docs/spot/v1/en, *Websocket Market Data*) describes the same framing.

Every frame the server sends is binary, gzip-compressed JSON; the client speaks plain JSON
text.  The server pings (``{"ping":1603707934525}``, every 5 s) and the client must answer with
the same number (``{"pong":1603707934525}``), or it is disconnected: the decoder answers each
ping with a :class:`Reply`.  Subscriptions carry one topic and an id the answer echoes:
``{"sub":"market.BTC-USDT.bbo","id":"1"}`` → ``{"id":"1","status":"ok","subbed":…,"ts":…}``,
and a topic the server does not know (an unknown contract code) →
``{"id":"1","status":"error","err-code":"bad-request","err-msg":"invalid topic …","ts":…}``
(the error form is the spot documentation's and other clients' observation; the derivatives
pages show only the successful subscription).  Data frames carry their topic in ``ch``.

:class:`HtxDecoder` holds all of that, so a feed of either market names only its topics and
decodes its data frames; :class:`MergingHtxDecoder` adds what both feeds do with them: a book
topic and a rolling-day statistics topic a symbol (spot ``ticker``, contracts ``detail``, both
carrying ``open``, ``high``, ``low``, ``amount``: :func:`rolling_day`), merged into one state.
"""

from __future__ import annotations

import abc
import itertools
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

import orjson

from tickerd.exchanges.base import Decoder, Rejected, Reply, Subscribed
from tickerd.model import Ticker

#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
Book = tuple[float | None, float | None, float | None, float | None]
#: 24 h volume, high, low, change, change percent: in :class:`Ticker`'s field order.
Statistics = tuple[float | None, float | None, float | None, float | None, float | None]

#: A feed's merged per-symbol state.
S = TypeVar("S")

#: ``wbits`` for :func:`zlib.decompress` of a gzip stream (header and trailer checked).
GZIP = 16 + zlib.MAX_WBITS


def gunzip(frame: str | bytes) -> Any:
    """The JSON value an HTX frame carries; ``ValueError`` for a text frame (HTX sends only
    binary ones), ``zlib.error`` for one that is not gzip: either is junk to a decoder."""
    if not isinstance(frame, bytes):
        raise ValueError("a text frame: HTX sends gzip-compressed binary frames")
    return orjson.loads(zlib.decompress(frame, GZIP))


class HtxDecoder(Decoder):
    """The HTX websocket protocol of one connection: gzip frames, ping answered with pong,
    ``sub``/``unsub`` requests with ids, their acks and errors.

    Subclasses name a symbol's topics (:meth:`topics`; the first one's answer speaks for the
    symbol: its ack subscribes it, its error rejects it) and decode the data frames
    (:meth:`_data`).  Ids are decimal strings, counted from 1 per connection.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self._ids = itertools.count(1)
        #: Request id → the symbol whose first topic it subscribes.
        self._requests: dict[str, str] = {}
        super().__init__(symbols)

    @abc.abstractmethod
    def topics(self, symbol: str) -> list[str]:
        """The topics (``market.BTC-USDT.bbo``) that carry ``symbol``; the first speaks for it."""

    @abc.abstractmethod
    def _data(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        """The tickers of a data frame of topic ``channel``; ``[]`` for a topic no longer tracked."""

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = gunzip(frame)
        channel = msg.get("ch")
        if channel is not None:
            return self._data(channel, msg)
        if "ping" in msg:
            self.events.append(Reply(orjson.dumps({"pong": msg["ping"]}).decode()))
            return []
        if "status" in msg:
            self._answer(msg)
            return []
        return self.junk_frame()

    def _answer(self, msg: dict[str, Any]) -> None:
        """An ack subscribes the symbol whose first topic it answers, an error rejects it;
        answers to its other topics, to ``unsub`` requests and errors naming no request change
        nothing."""
        symbol = self._requests.pop(str(msg.get("id")), None)
        if symbol is None or symbol not in self.symbols:
            return
        if msg["status"] == "ok":
            self.events.append(Subscribed(symbol))
        else:
            self.events.append(Rejected(symbol, f"{msg.get('err-code')}: {msg.get('err-msg')}"))

    def _request(self, verb: str, topic: str) -> tuple[str, str]:
        """A new request id and the frame of ``verb`` (``sub``, ``unsub``) for ``topic``."""
        request_id = str(next(self._ids))
        return request_id, orjson.dumps({verb: topic, "id": request_id}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        frames = []
        for symbol in symbols:
            for n, topic in enumerate(self.topics(symbol)):
                request_id, frame = self._request("sub", topic)
                if n == 0:
                    self._requests[request_id] = symbol
                frames.append(frame)
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("unsub", topic)[1] for symbol in symbols for topic in self.topics(symbol)]


def rolling_day(last: float, tick: dict[str, Any]) -> Statistics:
    """The statistics of a tick of HTX's rolling day: ``amount`` (the base asset), ``high``,
    ``low``, and the change from ``open`` to ``last`` (HTX sends no change); a missing field
    raises, making the frame junk."""
    first = float(tick["open"])
    change = last - first
    return (
        float(tick["amount"]),
        float(tick["high"]),
        float(tick["low"]),
        change,
        change / first * 100.0 if first else None,
    )


class MergingHtxDecoder(HtxDecoder, Generic[S]):
    """Two topics a symbol, its book first (:meth:`topics`), then its statistics; a frame of
    either updates the symbol's merged state ``S`` (:meth:`_state`), found with its kind by one
    lookup of the frame's topic."""

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Topic → the state it updates, one map per topic kind.
        self._books: dict[str, S] = {}
        self._statistics: dict[str, S] = {}
        super().__init__(symbols)

    @abc.abstractmethod
    def _state(self, symbol: str) -> S:
        """The merged state ``symbol``'s topics update from now on."""

    @abc.abstractmethod
    def _book(self, state: S, tick: dict[str, Any]) -> list[Ticker]:
        """The tickers of a book frame's ``tick``."""

    @abc.abstractmethod
    def _day(self, state: S, msg: dict[str, Any]) -> list[Ticker]:
        """The tickers of a statistics frame."""

    def track(self, symbol: str) -> None:
        super().track(symbol)
        book, statistics = self.topics(symbol)
        self._books[book] = self._statistics[statistics] = self._state(symbol)

    def untrack(self, symbol: str) -> None:
        """Forget the symbol's topics: a late frame of them finds nothing."""
        super().untrack(symbol)
        book, statistics = self.topics(symbol)
        self._books.pop(book, None)
        self._statistics.pop(statistics, None)

    def _data(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        state = self._books.get(channel)
        if state is not None:
            return self._book(state, msg["tick"])
        state = self._statistics.get(channel)
        if state is not None:
            return self._day(state, msg)
        return []  # a topic unsubscribed a moment ago
