"""Hyperliquid perpetuals: ``bbo`` (best bid/offer with sizes) merged with ``activeAssetCtx``.

Hyperliquid has no ticker channel.  ``bbo`` carries the top of the book with sizes and a
millisecond time; ``activeAssetCtx`` carries the perpetual's context: the 24 h figures
(previous-day price, base and notional volume), mark, mid and oracle prices, funding and open
interest.  ``allMids`` was the alternative, but it carries one mid per coin and nothing else,
and it pushes every listed coin to every connection; the per-coin context adds volume, the
24 h change and the derivative fields, so the pair ``bbo`` + ``activeAssetCtx`` gives the most
complete ticker.  Neither feed carries a last *trade* price or a 24 h high/low: ``last`` is the
mid price the context publishes (the mark price while the book is one-sided and ``midPx`` is
null), and high/low stay ``None``.  A ``trades`` subscription would give real trade prices, but
at the cost of a third of the per-IP subscription budget.

The context's perpetual fields (``PerpsAssetCtx`` in "Subscriptions",
https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/websocket/subscriptions):
``markPx``; ``oraclePx``, the oracle (index) price funding is measured against; ``funding``,
the rate of the current hour as a fraction (Hyperliquid funds every hour, on the hour, at an
eighth of the 8 h rate: "Funding",
https://hyperliquid.gitbook.io/hyperliquid-docs/trading/funding); ``openInterest``, in coins.
The context names no funding time, so ``next_funding_ts`` stays ``None`` rather than being read
off the local clock (it is the next full hour).  Neither feed carries a sequence number.

Symbols: the ``coin`` of a perpetual is its name in Hyperliquid's ``meta`` universe (``BTC``),
and every perpetual is USDC-margined, so the unified form is ``BTC/USDC:USDC``.  Coin names are
case-sensitive and a few "thousand-unit" coins start with a lowercase ``k`` (``kPEPE``), which
the upper-case unified form (``KPEPE/USDC:USDC``) cannot tell apart from coins such as ``KAS``.
The decoder therefore subscribes the upper-case name first and, when Hyperliquid answers
"Invalid subscription" for a ``K…`` coin, tries the ``k…`` name before rejecting the symbol.
Spot pairs (``@107``) and HIP-3 builder perps (``xyz:TSLA``) need the REST listing to name, so
this adapter does not serve them.

Limits (per IP, Hyperliquid docs "Rate limits and user limits" and the df-hyperliquid-core
crate): 1000 subscriptions, 10 connections (older docs said 100), 2000 messages a minute.  Each
symbol takes two subscriptions, so 50 symbols a connection keeps ten connections within the
1000-subscription budget.  Hyperliquid takes one subscription per message.

The server greets each connection with the plain text ``Websocket connection established.``,
answers ``{"method":"ping"}`` with ``{"channel":"pong"}``, and closes a connection it has heard
nothing from for 60 s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    Rejected,
    Reply,
    Subscribed,
    optional_float,
    split_unified,
)
from tickerd.model import Ticker

#: The plain-text frame Hyperliquid sends when a connection opens (the official SDK skips it).
GREETING = "Websocket connection established."
#: The subscriptions one symbol needs, in the order they are sent.
FEEDS = ("bbo", "activeAssetCtx")
#: A ``coin`` named in an error text, whether the text holds JSON or a debug rendering.
_COIN_IN_TEXT = re.compile(r'"?coin"?\s*:\s*"([^"]+)"')


def coin_of(symbol: str) -> str:
    """``BTC/USDC:USDC`` → ``BTC``: the name Hyperliquid subscribes a perpetual by."""
    return split_unified(symbol)[0]


def unified(coin: str) -> str:
    """``BTC`` → ``BTC/USDC:USDC``; ``kPEPE`` → ``KPEPE/USDC:USDC``."""
    return f"{coin.upper()}/USDC:USDC"


def _kilo(coin: str) -> str | None:
    """The lowercase-``k`` spelling to try when an upper-case ``K…`` coin is unknown."""
    if len(coin) > 1 and coin[0] == "K":
        return "k" + coin[1:]
    return None


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order (see ``_merged``).
_Book = tuple[float | None, float | None, float | None, float | None]
#: 24 h volume, high and low (never sent), change, change percent: in :class:`Ticker`'s order.
_Statistics = tuple[float | None, None, None, float | None, float | None]
#: Mark price, index (oracle) price, funding rate, next funding time (never sent), open
#: interest: in :class:`Ticker`'s order.
_Derivatives = tuple[float | None, float | None, float | None, None, float | None]


class _Merged:
    """The latest book and context of one symbol, and the coin name it is subscribed by.

    The context is kept parsed: ``bbo`` frames then build their Ticker from floats at hand.
    """

    __slots__ = ("book", "book_ts", "coin", "derivatives", "last", "statistics", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.coin = coin_of(symbol)
        self.book: _Book = (None, None, None, None)
        self.book_ts: float | None = None
        self.last: float | None = None
        self.statistics: _Statistics = (None, None, None, None, None)
        self.derivatives: _Derivatives = (None, None, None, None, None)


def _context(ctx: dict[str, Any]) -> tuple[float, _Statistics, _Derivatives]:
    """The last price, statistics and derivative fields of an ``activeAssetCtx``.

    A context replaces the previous one whole, so it must carry ``markPx``, ``prevDayPx``,
    ``dayBaseVlm`` and a perpetual's ``oraclePx``, ``funding`` and ``openInterest`` (without one
    the frame is junk); ``midPx`` is null while the book is one-sided, and the mark price stands
    in for it then.
    """
    mark, previous = float(ctx["markPx"]), float(ctx["prevDayPx"])
    mid = optional_float(ctx.get("midPx"))
    last = mark if mid is None else mid
    change = last - previous
    statistics = (
        float(ctx["dayBaseVlm"]),
        None,
        None,
        change,
        change / previous * 100.0 if previous else None,
    )
    return (
        last,
        statistics,
        (mark, float(ctx["oraclePx"]), float(ctx["funding"]), None, float(ctx["openInterest"])),
    )


class HyperliquidDecoder(Decoder):
    """Decodes ``bbo`` and ``activeAssetCtx`` frames; maps errors back to symbols by coin."""

    exchange = "hyperliquid"
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_coin: dict[str, _Merged] = {}
        self._by_symbol: dict[str, _Merged] = {}
        self._rejected: set[str] = set()
        #: The coin each just-untracked symbol was subscribed by, for its unsubscribe frames.
        self._leaving: dict[str, str] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        if symbol not in self._by_symbol:
            state = _Merged(symbol)
            self._by_symbol[symbol] = state
            self._by_coin[state.coin] = state
        self._rejected.discard(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        state = self._by_symbol.pop(symbol, None)
        if state is not None:
            self._by_coin.pop(state.coin, None)
            self._leaving[symbol] = state.coin

    @staticmethod
    def _frames(method: str, coin: str) -> list[str]:
        return [
            orjson.dumps({"method": method, "subscription": {"type": feed, "coin": coin}}).decode()
            for feed in FEEDS
        ]

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [frame for s in symbols for frame in self._frames("subscribe", self._by_symbol[s].coin)]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        coins = [self._leaving.pop(s, coin_of(s)) for s in symbols]
        return [frame for coin in coins for frame in self._frames("unsubscribe", coin)]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        if frame == GREETING:
            return []
        msg = orjson.loads(frame)
        channel = msg["channel"]
        if channel == "bbo":
            return self._bbo(msg["data"])
        if channel == "activeAssetCtx":
            return self._ctx(msg["data"])
        if channel == "pong":
            return []
        if channel == "subscriptionResponse":
            self._ack(msg["data"])
            return []
        if channel == "error":
            self._error(str(msg["data"]))
            return []
        return self.junk_frame()

    def _bbo(self, data: dict[str, Any]) -> list[Ticker]:
        """A ``bbo`` always carries ``time`` and both sides; a side is null when the book is
        empty there, otherwise a level with ``px`` and ``sz``."""
        state = self._by_coin.get(data["coin"])
        if state is None:
            return []
        bid, ask = data["bbo"]
        book = (
            float(bid["px"]) if bid else None,
            float(ask["px"]) if ask else None,
            float(bid["sz"]) if bid else None,
            float(ask["sz"]) if ask else None,
        )
        return self._merged(
            state, book, data["time"] / 1000.0, state.last, state.statistics, state.derivatives
        )

    def _ctx(self, data: dict[str, Any]) -> list[Ticker]:
        state = self._by_coin.get(data["coin"])
        if state is None:
            return []
        return self._merged(state, state.book, state.book_ts, *_context(data["ctx"]))

    def _merged(
        self,
        state: _Merged,
        book: _Book,
        book_ts: float | None,
        last: float | None,
        statistics: _Statistics,
        derivatives: _Derivatives,
    ) -> list[Ticker]:
        """The ticker of the book and the context, kept in ``state`` only if it passes the
        sanity rule (a junk frame leaves the merged view as it was).  Built positionally, in
        the Ticker's field order: fewer keyword arguments pay for the check on every frame."""
        now = time.time()
        ticker = Ticker("hyperliquid", state.symbol, last, *book, *statistics, book_ts, now, *derivatives)
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.book, state.book_ts, state.last = book, book_ts, last
        state.statistics, state.derivatives = statistics, derivatives
        return [ticker]

    def _ack(self, data: dict[str, Any]) -> None:
        if data.get("method") != "subscribe":
            return
        state = self._by_coin.get(data["subscription"].get("coin", ""))
        if state is not None and state.symbol not in self._rejected:
            self.events.append(Subscribed(state.symbol))

    def _error(self, text: str) -> None:
        """Attribute an error to the symbol whose coin it names.

        ``Already subscribed: {…}`` means the subscription is in place.  ``Invalid
        subscription {…}`` for an upper-case ``K…`` coin is retried under its ``k…`` name (a
        thousand-unit coin such as ``kPEPE``); otherwise the symbol is rejected, once.  An
        error naming no tracked coin (a malformed request, a vanished coin) concerns nobody.
        """
        named = _COIN_IN_TEXT.search(text)
        state = self._by_coin.get(named.group(1)) if named else None
        if state is None or state.symbol in self._rejected:
            return
        if text.startswith("Already subscribed"):
            self.events.append(Subscribed(state.symbol))
            return
        kilo = _kilo(state.coin)
        if kilo is not None and state.coin == coin_of(state.symbol):
            del self._by_coin[state.coin]
            state.coin = kilo
            self._by_coin[kilo] = state
            self.events.extend(Reply(frame) for frame in self._frames("subscribe", kilo))
            return
        self._rejected.add(state.symbol)
        self.events.append(Rejected(state.symbol, text))


class Hyperliquid(Exchange):
    """Hyperliquid perpetuals; unified ``BTC/USDC:USDC`` ↔ coin ``BTC``."""

    name = "hyperliquid"
    decoder_class = HyperliquidDecoder
    fake = "tickerd.testing.hyperliquid:FakeHyperliquid"
    sample_symbols = ("BTC/USDC:USDC", "ETH/USDC:USDC")
    feeds = "`bbo` + `activeAssetCtx`, merged"
    symbol_forms = "`BTC/USDC:USDC` ↔ coin `BTC` (`KPEPE/USDC:USDC` ↔ `kPEPE`)"
    lacks_note = (
        "`last` is the mid price, the mark price while the book is one-sided; funding is paid "
        "hourly, on the hour, and the feeds name no funding time"
    )
    open_interest_unit = "coins (base currency)"
    url = "wss://api.hyperliquid.xyz/ws"
    #: 1000 subscriptions per IP over at most 10 connections, two subscriptions a symbol.
    max_symbols_per_connection = 50
    #: Well inside the 60 s idle limit (the official SDK pings every 50 s).
    keepalive = Keepalive(interval=30.0, frame='{"method":"ping"}')
    #: 2000 messages a minute per IP: ten connections subscribing at once send 1000 in 5 s.
    send_interval = 0.05
    lacks = ("high_24h", "low_24h", "next_funding_ts", "sequence")

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        _, quote, settle = split_unified(symbol)
        if quote != "USDC" or settle != "USDC":
            raise ValueError(
                f"{symbol!r}: Hyperliquid serves USDC-margined perpetuals only "
                "(expected BASE/USDC:USDC, e.g. BTC/USDC:USDC)"
            )
