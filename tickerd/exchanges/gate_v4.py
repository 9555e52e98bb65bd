"""Gate.io API v4 websocket: the request and answer protocol its spot and futures feeds share.

Documentation: "Gate Futures WebSocket v4" (https://www.gate.com/docs/developers/futures/ws/en/,
sections "Request", "Response", "Error", "Ping and Pong"); "Gate Spot WebSocket v4" describes
the same protocol under the ``spot.`` channel prefix:

* a request is ``{"time": <s>, "id": <n>, "channel": "futures.tickers", "event": "subscribe",
  "payload": ["BTC_USDT"]}``; ``time`` signs authenticated requests, and ``id`` is "sent back
  by the server to help you identify which request the server responds to";
* the answer repeats the request's ``channel`` and ``event`` (and ``id``) with ``result``
  ``{"status": "success"}``; "to verify if subscription request is successful or not, you
  only need to check if ``error`` field is null" (the docs' own answers leave it out).  An
  ``error`` is ``{"code", "message"}``; the docs list the codes (1 invalid argument struct,
  2 invalid argument, 3 service error, 4 authentication fail) but not which one, nor which
  message, a contract Gate does not list earns;
* pushes are ``{"time", "time_ms", "channel", "event": "update", "result"}``;
* ``{"time": <s>, "channel": "futures.ping"}`` (``spot.ping``) is answered with
  ``futures.pong`` (``spot.pong``), ``event`` empty: an application ping for a client that
  wants to check the connection, beside the protocol pings the server sends (the transport
  answers those).  The docs' own example sends ``"time" : 123456``, so one fixed frame serves.

Whether a request that names several symbols, one of them unknown, still subscribes the others
is not documented; so every symbol is subscribed by requests of its own, and the ``id`` alone
tells which symbol an error refuses, whatever its message says (two requests a symbol: a Gate
maintainer wrote "No limit for message sent", gateio/gatews#25).  Both markets name a pair
``BASE_QUOTE``.

Both feeds merge the same two channels, ``<prefix>.tickers`` and ``<prefix>.book_ticker``, into
per-symbol state (:class:`MergingGateDecoder`); the futures' tickers add the derivative fields.
"""

from __future__ import annotations

import abc
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import orjson

from tickerd.exchanges.base import Decoder, Rejected, Subscribed, market
from tickerd.model import Ticker

_F = float | None
#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
Book = tuple[_F, _F, _F, _F]
#: 24 h volume, high, low, change (never sent), change percent: in :class:`Ticker`'s order.
Statistics = tuple[_F, _F, _F, _F, _F]
#: Mark, index, funding rate, next funding time (never sent), open interest: ``None`` on spot.
Derivative = tuple[_F, _F, _F, _F, _F]


def native(symbol: str) -> str:
    """``BTC/USDT`` and ``BTC/USDT:USDT`` → ``BTC_USDT``: Gate names spot pairs and contracts
    alike."""
    parts = market(symbol)
    return f"{parts.base}_{parts.quote}"


def ping(prefix: str) -> str:
    """The application ping of the ``prefix`` (``spot``, ``futures``) channels."""
    return f'{{"time":0,"channel":"{prefix}.ping"}}'


def request(request_id: int, channel: str, event: str, payload: list[str]) -> str:
    """One request frame, as the docs spell it."""
    frame = {
        "time": int(time.time()),
        "id": request_id,
        "channel": channel,
        "event": event,
        "payload": payload,
    }
    return orjson.dumps(frame).decode()


class GateDecoder(Decoder):
    """Requests with ids, their answers resolved by id, pongs; subclasses decode the pushes.

    A symbol is subscribed on each of :attr:`channels` by a request of its own; the answer to
    the first channel's request speaks for the symbol (:class:`Subscribed`), and an error to
    any of them refuses it (:class:`Rejected`, once).
    """

    #: ``spot`` or ``futures``: the prefix of every channel name.
    prefix: ClassVar[str]
    #: The channels each symbol is subscribed to; the first one's answer speaks for it.
    channels: ClassVar[tuple[str, ...]]

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Native name → unified symbol, for the symbols tracked.
        self.by_name: dict[str, str] = {}
        #: Request ids, unique per connection, so answers can be told apart.
        self._ids = itertools.count(1)
        #: Subscribe requests not yet answered: id → (channel, symbol).
        self._pending: dict[int, tuple[str, str]] = {}
        #: Symbols already refused on this connection (the other channel's error says it again).
        self._refused: set[str] = set()
        self._pong = f"{self.prefix}.pong"
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self.by_name[native(symbol)] = symbol
        self._refused.discard(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self.by_name.pop(native(symbol), None)

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        frames = []
        for symbol in symbols:
            name = native(symbol)
            for channel in self.channels:
                request_id = next(self._ids)
                self._pending[request_id] = (channel, symbol)
                frames.append(request(request_id, channel, "subscribe", [name]))
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        """One request a channel: an unsubscribe needs no attribution."""
        names = [native(symbol) for symbol in symbols]
        return [request(next(self._ids), channel, "unsubscribe", names) for channel in self.channels]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = orjson.loads(frame)
        event = msg.get("event")
        if event == "update":
            return self._update(msg["channel"], msg)
        if event in ("subscribe", "unsubscribe"):
            return self._answer(msg)
        if msg["channel"] == self._pong:
            return []
        return self.junk_frame()

    @abc.abstractmethod
    def _update(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        """The tickers of one push of ``channel``."""

    def _request_id(self, msg: dict[str, Any]) -> int:
        """The id of the request ``msg`` answers: its ``id`` (perpetual and spot servers send it
        back, gateio/gatews#18), else the pending request of its ``channel`` and ``payload``,
        which answers echo too; ``0`` (no request's) when neither tells."""
        request_id = msg.get("id")
        if isinstance(request_id, int):
            return request_id
        payload, channel = msg.get("payload"), msg["channel"]
        for pending, (asked, symbol) in self._pending.items():
            if asked == channel and payload == [native(symbol)]:
                return pending
        return 0

    def _answer(self, msg: dict[str, Any]) -> list[Ticker]:
        """A subscribe answer resolves its symbol; an error to an unsubscribe (or to a request
        this connection did not make) is counted as junk, so that its reason is logged."""
        error = msg.get("error")
        asked = self._pending.pop(self._request_id(msg), None)
        if asked is None:
            if error is None:
                return []
            return self.junk_frame(f"{msg['channel']} {msg['event']} failed: {error}")
        channel, symbol = asked
        if symbol not in self.symbols or symbol in self._refused:
            return []  # removed meanwhile, or refused already
        if error is not None:
            self._refused.add(symbol)
            self.events.append(
                Rejected(symbol, f"{channel}: {error.get('message')} (code {error.get('code')})")
            )
        elif channel == self.channels[0]:
            self.events.append(Subscribed(symbol))
        return []


class State:
    """One symbol's latest fields of both channels (``None`` before their first push)."""

    __slots__ = ("book", "derivative", "last", "sequence", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.last: float | None = None
        self.book: Book = (None, None, None, None)
        self.statistics: Statistics = (None, None, None, None, None)
        #: Stays all ``None`` on spot, so one ticker shape serves both markets.
        self.derivative: Derivative = (None, None, None, None, None)
        self.sequence: int | None = None


class MergingGateDecoder(GateDecoder):
    """``<prefix>.tickers`` merged with ``<prefix>.book_ticker`` into per-symbol :class:`State`.

    The book push is the same on both markets and decoded here; subclasses decode their
    ``tickers`` push (:meth:`_tickers`), whose fields differ (futures add the derivative ones).
    """

    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Native name → its merged state.
        self._states: dict[str, State] = {}
        self._tickers_channel, self._book_channel = self.channels
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._states.setdefault(native(symbol), State(symbol))

    def untrack(self, symbol: str) -> None:
        """Forget the merged state too: a symbol added again starts afresh."""
        super().untrack(symbol)
        self._states.pop(native(symbol), None)

    def _update(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        if channel == self._book_channel:
            return self._book(msg["result"])
        if channel == self._tickers_channel:
            return self._tickers(msg)
        return self.junk_frame(f"a push of {channel}, never subscribed")

    @abc.abstractmethod
    def _tickers(self, msg: dict[str, Any]) -> list[Ticker]:
        """The tickers of one ``tickers`` push, merged with the latest book."""

    def _book(self, result: dict[str, Any]) -> list[Ticker]:
        """``s``, ``t``, ``u`` and both sizes are always sent; a price may be empty (spot's
        pages do not say what an empty side looks like; the futures' say ``""``)."""
        state = self._states.get(result["s"])
        if state is None:  # a late push of a symbol just unsubscribed
            return []
        bid, ask = result["b"], result["a"]
        book = (
            float(bid) if bid else None,
            float(ask) if ask else None,
            float(result["B"]),
            float(result["A"]),
        )
        sequence: int = result["u"]
        ticker = Ticker(
            self.exchange,
            state.symbol,
            state.last,
            *book,
            *state.statistics,
            result["t"] / 1000.0,
            time.time(),
            *state.derivative,
            sequence,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.book, state.sequence = book, sequence
        return [ticker]
