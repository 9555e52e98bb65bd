"""HTX USDT-margined contracts: ``market.$contract_code.bbo`` merged with ``market.$contract_code.detail``.

Documentation (www.htx.com/en-us/opend/newApiPages, USDT-margined contracts, "WebSocket Market
Interface"): "[General] Subscribe market BBO data push" (``market.$contract_code.bbo``),
"[General] Subscribe Market Detail Data" (``market.$contract_code.detail``) and "Swap
WebSocket Reference" (addresses, *Market Heartbeat*, *Data Compression*, rate limits).  The
framing, ping/pong and request protocol are HTX's own, shared with spot
(:mod:`tickerd.exchanges.htx`).

Both topics are served on ``wss://api.hbdm.com/linear-swap-ws`` for perpetual swaps
(``BTC-USDT``) and dated futures (``BTC-USDT-261225``).  ``bbo`` pushes the best bid and ask
(``[price, contracts]``, either side absent when the book side is empty) whenever one changes,
with ``version``, the match id, which only grows: it is the ticker's ``sequence``, and an older
book than the one merged is dropped.  ``detail`` carries the last price (``close``), ``open``,
``high``, ``low`` and the traded volume in coins (``amount``, the base asset; ``vol`` counts
contracts); the change is ``close - open``.  Its own best prices lag the book by ~500 ms, per
the docs, and are not read (the documentation's field table names them ``ask``/``bid``, its
example ``asks``/``bids``).  Each frame of either topic produces one complete ticker from the
latest of both, the sanity rule applied to the merged candidate before it is kept
(:attr:`Decoder.merges`).  Bid and ask sizes are in contracts (each of the contract's face
value, ``contract_size`` in ``/linear-swap-api/v1/swap_contract_info``: 0.001 BTC for
``BTC-USDT``).

Mark price, index, funding and open interest are not on this endpoint.  HTX publishes the mark
and index prices only as klines on another endpoint, ``wss://api.hbdm.com/ws_index``
(``market.$contract_code.mark_price.$period``, ``market.$contract_code.index.$period``; their
pages mark them "Signature verification: Yes"), the funding rate on the order-push endpoint
``/linear-swap-notification`` with its own ``op``/``topic``/``cid`` protocol
(``public.$contract_code.funding_rate``: ``funding_rate`` of the period settled at
``settlement_time``; no authentication), and open interest by REST alone
(``/linear-swap-api/v1/swap_open_interest``).  This adapter leaves those fields ``None``: the
funding rate would take a second endpoint group (:attr:`Exchange.groups`) whose decoder speaks the
notification protocol (``{"op":"sub","topic":…,"cid":…}``, ``{"op":"ping","ts":"…"}`` answered
with ``op: pong``) into the state this one merges, with nothing to subscribe there for a dated
future; the mark and index klines a third, on a channel documented as signed.

Limits: at most 40 subscriptions a second on a connection; unknown contract codes are refused
with an error (reported as rejected).  HTX announces no forced reconnects or connection lifetime.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tickerd.exchanges.base import Exchange, market
from tickerd.exchanges.htx import HtxDecoder
from tickerd.model import Ticker


def native(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTC-USDT``, ``BTC/USDT:USDT-261225`` → ``BTC-USDT-261225``: HTX's
    contract code."""
    parts = market(symbol)
    code = f"{parts.base}-{parts.quote}"
    return code if parts.expiry is None else f"{code}-{parts.expiry}"


#: Best bid, best ask, bid size, ask size: in :class:`Ticker`'s field order.
Book = tuple[float | None, float | None, float | None, float | None]
#: 24 h volume, high, low, change, change percent: in :class:`Ticker`'s field order.
Statistics = tuple[float | None, float | None, float | None, float | None, float | None]


class _Merged:
    """The latest book and statistics of one contract; a frame of either topic refreshes it."""

    __slots__ = ("book", "last", "statistics", "symbol", "version")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.version = -1
        self.book: Book = (None, None, None, None)
        self.last: float | None = None
        self.statistics: Statistics = (None, None, None, None, None)


class HtxSwapDecoder(HtxDecoder):
    """Decodes ``bbo`` and ``detail`` frames of USDT-margined contracts into merged tickers."""

    exchange = "htx_swap"
    merges = True

    def __init__(self, symbols: Iterable[str]) -> None:
        #: Topic → the merged record it updates, one map per topic kind: the topic of a data
        #: frame finds both its symbol and its kind in one lookup.
        self._books: dict[str, _Merged] = {}
        self._details: dict[str, _Merged] = {}
        super().__init__(symbols)

    def topics(self, symbol: str) -> list[str]:
        code = native(symbol)
        return [f"market.{code}.bbo", f"market.{code}.detail"]

    def track(self, symbol: str) -> None:
        super().track(symbol)
        book, detail = self.topics(symbol)
        if book not in self._books:
            self._books[book] = self._details[detail] = _Merged(symbol)

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        book, detail = self.topics(symbol)
        self._books.pop(book, None)
        self._details.pop(detail, None)

    def _data(self, channel: str, msg: dict[str, Any]) -> list[Ticker]:
        state = self._books.get(channel)
        if state is not None:
            return self._book(state, msg["tick"])
        state = self._details.get(channel)
        if state is not None:
            return self._detail(state, msg)
        return []  # a topic unsubscribed a moment ago

    def _book(self, state: _Merged, tick: dict[str, Any]) -> list[Ticker]:
        """A ``bbo`` tick always carries ``version`` and ``ts`` (ms); ``bid`` and ``ask`` are
        ``[price, contracts]``, absent for an empty side."""
        version = tick["version"]
        if version < state.version:
            return []  # an older book than the one merged
        bid, ask = tick.get("bid"), tick.get("ask")
        book = (
            float(bid[0]) if bid else None,
            float(ask[0]) if ask else None,
            float(bid[1]) if bid else None,
            float(ask[1]) if ask else None,
        )
        return self._ticker(state, version, book, state.last, state.statistics, tick["ts"] / 1000.0)

    def _detail(self, state: _Merged, msg: dict[str, Any]) -> list[Ticker]:
        """A ``detail`` tick always carries ``open``, ``close``, ``high``, ``low``, ``amount``;
        the frame's ``ts`` (ms) dates it."""
        tick = msg["tick"]
        last, first = float(tick["close"]), float(tick["open"])
        change = last - first
        statistics = (
            float(tick["amount"]),
            float(tick["high"]),
            float(tick["low"]),
            change,
            change / first * 100.0 if first else None,
        )
        return self._ticker(state, state.version, state.book, last, statistics, msg["ts"] / 1000.0)

    def _ticker(
        self,
        state: _Merged,
        version: int,
        book: Book,
        last: float | None,
        statistics: Statistics,
        exchange_ts: float,
    ) -> list[Ticker]:
        """The ticker of the merged parts, kept in ``state`` only if it passes the sanity rule
        (a junk frame leaves the merged view as it was); built positionally, in
        :class:`Ticker`'s field order, as this runs for every frame."""
        ticker = Ticker(
            "htx_swap",
            state.symbol,
            last,
            *book,
            *statistics,
            exchange_ts,
            time.time(),
            None,  # mark_price … open_interest: not on this endpoint (module docstring)
            None,
            None,
            None,
            None,
            version if version >= 0 else None,
        )
        if (reason := self.flaw(ticker)) is not None:
            return self.junk_frame(reason)
        state.version, state.book, state.last, state.statistics = version, book, last, statistics
        return [ticker]


class HtxSwap(Exchange):
    """HTX USDT-margined perpetual swaps and dated futures; ``BTC/USDT:USDT`` ↔ ``BTC-USDT``."""

    name = "htx_swap"
    url = "wss://api.hbdm.com/linear-swap-ws"
    decoder_class = HtxSwapDecoder
    #: Two topics a symbol; HTX documents no per-connection limit.
    max_symbols_per_connection = 100
    #: HTX accepts at most 40 subscriptions a second on a connection.
    send_interval = 0.05
    dated_futures = True
    lacks = ("mark_price", "index_price", "funding_rate", "next_funding_ts", "open_interest")
    fake = "tickerd.testing.htx_swap:FakeHtxSwap"
    sample_symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT:USDT-261225")
    feeds = (
        "`market.$contract_code.bbo` (real-time BBO) + `market.$contract_code.detail` (24 h stats), "
        "merged; gzip frames"
    )
    symbol_forms = (
        "`BTC/USDT:USDT` ↔ `BTC-USDT` (perpetual), `BTC/USDT:USDT-261225` ↔ `BTC-USDT-261225` (dated)"
    )
    keepalive_note = 'answers the server\'s `{"ping":n}` (every 5 s) with `{"pong":n}`'
    lacks_note = (
        "funding (`/linear-swap-notification`) and mark and index klines (`/ws_index`) are on other "
        "endpoints, not read; open interest REST-only; bid/ask sizes in contracts; `volume_24h` in "
        "the base asset"
    )
    sequence_source = "`bbo` `version` (match id)"

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.quote != "USDT" or parts.settle != "USDT":
            raise ValueError(
                f"{symbol!r}: htx_swap serves USDT-margined contracts only "
                "(BASE/USDT:USDT, BASE/USDT:USDT-YYMMDD)"
            )
