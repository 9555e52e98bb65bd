"""KuCoin's websocket protocol, as its futures and spot feeds share it: a token from a REST call,
a ``welcome`` before anything else, JSON pings, and ``subscribe`` requests answered by ``ack``
or ``error``.

Documentation: KuCoin API docs, WebSocket "Introduction" and "Get Public Token"
(https://www.kucoin.com/docs-new/websocket-api/base-info/introduction, the futures token
``POST https://api-futures.kucoin.com/api/v1/bullet-public``; spot's is
``POST https://api.kucoin.com/api/v1/bullet-public``; tokens of one cannot be used on the other).

* Before every connection: ``POST …/bullet-public`` (public, no body) answers
  ``{"code":"200000","data":{"token":…,"instanceServers":[{"endpoint":"wss://…",
  "pingInterval":18000,"pingTimeout":10000,…}]}}``.  The docs recommend taking the endpoint
  from the answer each time ("a dynamic URL, which may change"); the token is valid for 24 h
  for new connections, so asking again on every reconnect (:func:`bullet`) never hands out a
  stale one.
* Connect to ``{endpoint}?token={token}&connectId={id}``; the server greets with
  ``{"id":"{id}","type":"welcome"}``, and subscriptions go out only after it (the decoder
  holds them until then: :class:`KucoinDecoder`).
* Keepalive: ``{"id":…,"type":"ping"}`` within every ``pingInterval`` ms, answered by ``pong``;
  without a pong within ``pingTimeout`` the connection is dead.  The adapter pings at half the
  interval (as cryptofeed does, so a late timer never misses the deadline) and the watchdog
  gives up after ``pingInterval + pingTimeout`` without a frame (:attr:`Resolved.silence_timeout
  <tickerd.exchanges.base.Resolved.silence_timeout>`).
* ``{"id":…,"type":"subscribe","topic":"/prefix:SYMBOL","privateChannel":false,"response":true}``
  is answered by ``{"id":…,"type":"ack"}`` or ``{"id":…,"type":"error","code":…,"data":"…"}``.
  A topic may name up to 100 symbols, comma-separated, where its page documents the form
  (``{symbol},{symbol}``; a topic documented for one symbol gets a request a symbol:
  :attr:`KucoinDecoder.single_symbol_topics`); an error then names none of them (the decoder
  asks again one by one to find the refused one).  At most 100 requests may go up in
  10 s (hence :data:`SEND_INTERVAL`).

Both feeds split a ticker over several topics and merge them (:class:`MergingKucoinDecoder`,
one :class:`Record` a symbol that outlives reconnects); their adapters differ only in the
topics, the symbol forms and the token host (:class:`KucoinExchange`).
"""

from __future__ import annotations

import abc
import itertools
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, cast
from urllib.parse import urlencode

import httpx
import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    Rejected,
    Reply,
    Resolved,
    ResolveError,
    Subscribed,
    chunks,
)
from tickerd.model import Ticker

#: Seconds the token call may take (connect, send, answer), as a websocket handshake may.
BULLET_TIMEOUT = 10.0
#: The ping; its id comes back in the pong, which the decoder ignores whatever it is.
PING = '{"id":"tickerd","type":"ping"}'
#: KuCoin takes at most 100 messages from a client in 10 s.
SEND_INTERVAL = 0.1
#: Symbols one subscription request may name (comma-separated in its topic).
MAX_TOPIC_SYMBOLS = 100
#: The ``code`` of a successful REST answer.
_OK = "200000"


async def bullet(rest_url: str) -> Resolved:
    """Ask ``rest_url`` (a ``bullet-public`` endpoint) where to connect: the endpoint with a fresh
    token and connect id, the ping to send and the silence after which the connection is dead.

    Every failure is a :class:`ResolveError` naming the endpoint and what went wrong (no
    answer, an HTTP error, KuCoin's error code, an answer of another shape); the token itself
    never appears in it.
    """
    where = f"bullet-public {rest_url}"
    try:
        async with httpx.AsyncClient(timeout=BULLET_TIMEOUT) as client:
            response = await client.post(rest_url)
    except httpx.HTTPError as exc:
        raise ResolveError(f"{where}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise ResolveError(f"{where}: HTTP {response.status_code} {response.reason_phrase}")
    try:
        answer: Any = orjson.loads(response.content)
        if answer["code"] != _OK:
            raise ResolveError(f"{where}: code {answer['code']}: {answer.get('msg', '')}")
        token = answer["data"]["token"]
        server = answer["data"]["instanceServers"][0]
        endpoint = server["endpoint"]
        interval, timeout = float(server["pingInterval"]) / 1000.0, float(server["pingTimeout"]) / 1000.0
        if not (isinstance(token, str) and isinstance(endpoint, str) and interval > 0 and timeout > 0):
            raise ValueError("token, endpoint or ping times of the wrong kind")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ResolveError(f"{where}: not a token answer ({type(exc).__name__}: {exc})") from None
    query = urlencode({"token": token, "connectId": secrets.token_hex(8)})
    return Resolved(f"{endpoint}?{query}", Keepalive(interval / 2, PING), interval + timeout)


class KucoinDecoder(Decoder):
    """The protocol every KuCoin feed shares: requests held until the ``welcome``, one request
    per topic for up to :data:`MAX_TOPIC_SYMBOLS` symbols, the last topic's answers speaking for
    its symbols (it is asked for last, so a symbol counts as subscribed once all its topics are).

    KuCoin's ``error`` names no symbol of a request, so a refused request of several symbols is
    asked again one symbol a request (:class:`Reply`): the good ones subscribe, and the refusal
    of the one left alone rejects it.  Subclasses name their :attr:`topics`, the native symbol
    (:meth:`native`) and decode the data frames (:meth:`_message`).
    """

    #: Topic prefixes subscribed for every symbol, in this order; the last one's answer accepts
    #: or refuses the symbols it names.
    topics: ClassVar[tuple[str, ...]]
    #: Topics whose page documents one symbol a topic (spot's ``/market/snapshot:{symbol}``):
    #: asked for one request a symbol, never the last of :attr:`topics`.
    single_symbol_topics: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, symbols: Iterable[str]) -> None:
        self._welcomed = False
        #: Requests made before the welcome, sent when it comes.
        self._held: list[str] = []
        #: Subscription id → its topic and symbols, until answered.
        self._requests: dict[str, tuple[str, Sequence[str]]] = {}
        self._ids = itertools.count(1)
        #: Native symbol → unified, of the tracked symbols.
        self.unified: dict[str, str] = {}
        super().__init__(symbols)

    @staticmethod
    @abc.abstractmethod
    def native(symbol: str) -> str:
        """The venue's name of the unified ``symbol``."""

    @abc.abstractmethod
    def _message(self, msg: dict[str, Any]) -> list[Ticker]:
        """Decode a data frame (``"type":"message"``)."""

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self.unified[self.native(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self.unified.pop(self.native(symbol), None)

    def _request(self, kind: str, topic: str, symbols: Sequence[str]) -> str:
        request = str(next(self._ids))
        if kind == "subscribe":
            self._requests[request] = (topic, symbols)
        names = ",".join(self.native(symbol) for symbol in symbols)
        return (
            f'{{"id":"{request}","type":"{kind}","topic":"{topic}:{names}",'
            '"privateChannel":false,"response":true}'
        )

    def _requests_for(self, kind: str, symbols: Sequence[str]) -> list[str]:
        frames: list[str] = []
        for batch in chunks(symbols, MAX_TOPIC_SYMBOLS):
            for topic in self.topics:
                if topic in self.single_symbol_topics:
                    frames += (self._request(kind, topic, [symbol]) for symbol in batch)
                else:
                    frames.append(self._request(kind, topic, batch))
        if self._welcomed:
            return frames
        self._held += frames
        return []

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests_for("subscribe", symbols)

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests_for("unsubscribe", symbols)

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        if "subject" in msg:  # data: ``"type":"message"``, which some of the docs' examples leave out
            return self._message(msg)
        kind = msg["type"]
        if kind == "pong":
            return []
        if kind == "ack":
            topic, symbols = self._requests.pop(msg["id"], ("", ()))
            if topic == self.topics[-1]:
                self.events.extend(Subscribed(symbol) for symbol in symbols if symbol in self.symbols)
            return []
        if kind == "error":
            return self._error(msg)
        if kind == "welcome":
            self._welcomed = True
            self.events.extend(Reply(held) for held in self._held)
            self._held.clear()
            return []
        return self.junk_frame()

    def _error(self, msg: dict[str, Any]) -> list[Ticker]:
        """A refused subscription: asked again symbol by symbol, or its one symbol rejected
        (by the last topic; the others' refusals of it say nothing new)."""
        reason = f"code {msg.get('code')}: {msg.get('data')}"
        asked = self._requests.pop(str(msg.get("id")), None)
        if asked is None:  # an unsubscription's, or of no request at all
            return [] if msg.get("id") is not None else self.junk_frame(f"error {reason}")
        topic, symbols = asked
        symbols = [symbol for symbol in symbols if symbol in self.symbols]
        if len(symbols) > 1:
            self.events.extend(Reply(self._request("subscribe", topic, [symbol])) for symbol in symbols)
        elif symbols and topic == self.topics[-1]:
            self.events.append(Rejected(symbols[0], f"{symbols[0]}: {reason}"))
        return []


#: bid, ask, bid size, ask size.
Book = tuple[float | None, float | None, float | None, float | None]
#: volume, high, low, change, change %.
Statistics = tuple[float | None, float | None, float | None, float | None, float | None]
#: mark, index, funding rate (``None`` on spot).
Derivative = tuple[float | None, float | None, float | None]
#: A spot record's derivative part.
NO_DERIVATIVE: Derivative = (None, None, None)


class Record:
    """One symbol's latest parts, shared by its decoders across reconnects."""

    __slots__ = ("book", "derivative", "exchange_ts", "last", "sequence", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book: Book = (None, None, None, None)
        self.last: float | None = None
        self.statistics: Statistics = (None, None, None, None, None)
        self.derivative: Derivative = NO_DERIVATIVE
        self.exchange_ts: float | None = None
        self.sequence: int | None = None


#: Native symbol → its record: what the adapters' ``merged_state`` makes.
MergedState = dict[str, Record]


class MergingKucoinDecoder(KucoinDecoder):
    """A KuCoin feed whose topics each carry part of a ticker: every frame produces a complete
    one from the latest of all parts (a :class:`Record` per symbol, in the merged state that
    outlives reconnects), the sanity rule applied to the merged candidate before it is kept."""

    merges = True

    def __init__(self, symbols: Iterable[str], merged: MergedState) -> None:
        self._merged = merged
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._merged.setdefault(self.native(symbol), Record(symbol))

    def untrack(self, symbol: str) -> None:
        """Forget the record too: a symbol added again must not start from old statistics."""
        super().untrack(symbol)
        self._merged.pop(self.native(symbol), None)

    def _ticker(
        self,
        state: Record,
        book: Book,
        last: float | None,
        statistics: Statistics,
        derivative: Derivative,
        exchange_ts: float,
        sequence: int | None,
    ) -> list[Ticker]:
        """The ticker of the merged parts, kept in ``state`` only if it passes the sanity rule.
        Built positionally, in :class:`Ticker`'s field order: this runs for every frame."""
        ticker = Ticker(
            self.exchange,
            state.symbol,
            last,
            *book,
            *statistics,
            exchange_ts,
            time.time(),
            *derivative,
            None,
            None,
            sequence,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.book, state.last, state.statistics, state.derivative = book, last, statistics, derivative
        state.exchange_ts, state.sequence = exchange_ts, sequence
        return [ticker]


class KucoinExchange(Exchange):
    """A KuCoin feed's adapter: where to connect comes from ``bullet-public`` before every
    connection, and its decoders share one :data:`MergedState` across reconnects."""

    rest_url: ClassVar[str]
    decoder_class: ClassVar[type[MergingKucoinDecoder]]

    async def resolve(self, url: str, group: str, rest_url: str | None) -> Resolved:
        """A fresh token, endpoint and ping interval from ``bullet-public`` (:func:`bullet`) at
        ``rest_url`` (configured, else the adapter's :attr:`rest_url`).  ``url`` plays no part:
        KuCoin says where to connect in its answer, and the docs ask clients to follow it."""
        return await bullet(rest_url or self.rest_url)

    def merged_state(self) -> MergedState:
        return {}

    def decoder(self, symbols: Iterable[str], group: str = "", merged: object = None) -> MergingKucoinDecoder:
        shared = self.merged_state() if merged is None else cast(MergedState, merged)
        return self.decoder_class(symbols, shared)
