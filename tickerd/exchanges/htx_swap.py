"""HTX USDT-margined contracts: ``bbo`` and ``detail`` merged with the funding rate of another endpoint.

Documentation (www.htx.com/en-us/opend/newApiPages, USDT-margined contracts): "[General] Subscribe
market BBO data push" (``market.$contract_code.bbo``), "[General] Subscribe Market Detail Data"
(``market.$contract_code.detail``), "[General] Subscribe funding rate (no authentication)（sub）"
(``public.$contract_code.funding_rate``) and "Swap WebSocket Reference" (addresses, *Market
Heartbeat*, *Order Push Heartbeat*, *Data Compression*, rate limits).  The market endpoint's
framing, ping/pong and request protocol are HTX's own, shared with spot
(:mod:`tickerd.exchanges.htx`).

``wss://api.hbdm.com/linear-swap-ws`` serves both market topics for perpetual swaps
(``BTC-USDT``) and dated futures (``BTC-USDT-261225``).  ``bbo`` pushes the best bid and ask
(``[price, contracts]``, either side absent when the book side is empty) whenever one changes,
with ``version``, the match id, which only grows: it is the ticker's ``sequence``, and an older
book than the one merged is dropped.  ``detail`` carries the last price (``close``), ``open``,
``high``, ``low`` and the traded volume in coins (``amount``, the base asset; ``vol`` counts
contracts); the change is ``close - open``.  Its own best prices lag the book by ~500 ms, per
the docs, and are not read (the documentation's field table names them ``ask``/``bid``, its
example ``asks``/``bids``).  Bid and ask sizes are in contracts (each of the contract's face
value, ``contract_size`` in ``/linear-swap-api/v1/swap_contract_info``: 0.001 BTC for
``BTC-USDT``).

The funding rate is published on the order-push endpoint, ``/linear-swap-notification``, without
authentication, in that endpoint's own protocol (:class:`HtxFundingDecoder`): ``funding_rate`` is
the rate of the period settled at ``settlement_time`` (the next funding, epoch ms as a string;
every 8 h).  So one set of symbols takes two connections, the endpoint groups ``market`` and
``funding`` (the second's URL is the first's sibling path, :meth:`HtxSwap.endpoint`), whose
decoders share one merged state (:meth:`HtxSwap.merged_state`); each frame of any topic
produces one complete ticker from the latest of all three, the sanity rule applied to the merged
candidate before it is kept (:attr:`Decoder.merges`).  Dated futures have no funding.

Not read: the mark and index prices, which HTX publishes only as klines on a third endpoint,
``wss://api.hbdm.com/ws_index`` (``market.$contract_code.mark_price.$period``,
``market.$contract_code.index.$period``), pages marked "Signature verification: Yes"; and open
interest, REST-only (``/linear-swap-api/v1/swap_open_interest``).

Limits: at most 40 subscriptions a second on a connection; unknown contract codes are refused
with an error (reported as rejected).  HTX announces no forced reconnects or connection lifetime.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Rejected, Reply, Subscribed, market
from tickerd.exchanges.htx import Book, MergingHtxDecoder, Statistics, gunzip, rolling_day
from tickerd.model import Ticker


def native(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTC-USDT``, ``BTC/USDT:USDT-261225`` → ``BTC-USDT-261225``: HTX's
    contract code."""
    parts = market(symbol)
    code = f"{parts.base}-{parts.quote}"
    return code if parts.expiry is None else f"{code}-{parts.expiry}"


#: Funding rate, next funding time: in :class:`Ticker`'s field order.
Funding = tuple[float | None, float | None]


class Merged:
    """The latest book, statistics and funding of one contract, shared by the decoders of every
    connection that carries one of its topics; a frame of any of them refreshes it."""

    __slots__ = ("book", "funding", "last", "statistics", "symbol", "version")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.version = -1
        self.book: Book = (None, None, None, None)
        self.last: float | None = None
        self.statistics: Statistics = (None, None, None, None, None)
        self.funding: Funding = (None, None)


#: Contract code → its merged record: what :meth:`HtxSwap.merged_state` makes.
MergedState = dict[str, Merged]


def merged_ticker(
    decoder: Decoder,
    state: Merged,
    version: int,
    book: Book,
    last: float | None,
    statistics: Statistics,
    funding: Funding,
    exchange_ts: float,
) -> list[Ticker]:
    """The ticker of the merged parts, kept in ``state`` only if it passes ``decoder``'s sanity
    rule (a junk frame leaves the merged view as it was); built positionally, in
    :class:`Ticker`'s field order, as this runs for every frame."""
    ticker = Ticker(
        "htx_swap",
        state.symbol,
        last,
        *book,
        *statistics,
        exchange_ts,
        time.time(),
        None,  # mark_price, index_price: not on these endpoints (module docstring)
        None,
        *funding,
        None,  # open_interest: REST only
        version if version >= 0 else None,
    )
    if (reason := decoder.flaw(ticker)) is not None:
        return decoder.junk_frame(reason)
    state.version, state.book, state.last, state.statistics = version, book, last, statistics
    state.funding = funding
    return [ticker]


class HtxSwapDecoder(MergingHtxDecoder[Merged]):
    """Decodes ``bbo`` and ``detail`` frames of USDT-margined contracts into the ``merged`` state
    it shares with the set's funding connection."""

    exchange = "htx_swap"
    merges = True

    def __init__(self, symbols: Iterable[str], merged: MergedState) -> None:
        self._merged = merged
        super().__init__(symbols)

    def topics(self, symbol: str) -> list[str]:
        code = native(symbol)
        return [f"market.{code}.bbo", f"market.{code}.detail"]

    def _state(self, symbol: str) -> Merged:
        return self._merged.setdefault(native(symbol), Merged(symbol))

    def untrack(self, symbol: str) -> None:
        """Forget ``symbol``'s merged record too: a symbol added again starts afresh."""
        super().untrack(symbol)
        self._merged.pop(native(symbol), None)

    def _book(self, state: Merged, tick: dict[str, Any]) -> list[Ticker]:
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
        return merged_ticker(
            self, state, version, book, state.last, state.statistics, state.funding, tick["ts"] / 1000.0
        )

    def _day(self, state: Merged, msg: dict[str, Any]) -> list[Ticker]:
        """A ``detail`` tick always carries ``close`` and the rolling day's fields; the frame's
        ``ts`` (ms) dates it."""
        tick = msg["tick"]
        last = float(tick["close"])
        statistics = rolling_day(last, tick)
        return merged_ticker(
            self, state, state.version, state.book, last, statistics, state.funding, msg["ts"] / 1000.0
        )


class HtxFundingDecoder(Decoder):
    """The ``/linear-swap-notification`` connection of a set: ``public.$contract_code.funding_rate``
    of its perpetuals, merged into the state it shares with the set's market connection.

    The notification protocol is not the market one: requests are ``{"op":"sub","topic":…,
    "cid":…}``, answered ``{"op":"sub","cid":…,"topic":…,"ts":…,"err-code":0}`` (non-zero: refused,
    2011 for a contract that does not exist), pings are ``{"op":"ping","ts":"…"}`` answered with
    ``{"op":"pong","ts":"…"}``, data ``{"op":"notify","topic":…,"ts":…,"data":[…]}``; frames are
    gzip-compressed all the same.  Dated futures have no funding: nothing is subscribed here for
    them, and they count as subscribed at once.
    """

    exchange = "htx_swap"
    merges = True

    def __init__(self, symbols: Iterable[str], merged: MergedState) -> None:
        self._merged = merged
        self._ids = itertools.count(1)
        #: Request id (``cid``) → the symbol it subscribes.
        self._requests: dict[str, str] = {}
        #: Contract code → merged record, for the perpetuals of this connection.
        self._codes: dict[str, Merged] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        code = native(symbol)
        self._codes[code] = self._merged.setdefault(code, Merged(symbol))

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        code = native(symbol)
        self._codes.pop(code, None)
        self._merged.pop(code, None)

    def _request(self, op: str, symbol: str) -> str:
        cid = str(next(self._ids))
        if op == "sub":
            self._requests[cid] = symbol
        return orjson.dumps({"op": op, "topic": f"public.{native(symbol)}.funding_rate", "cid": cid}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        frames = []
        for symbol in symbols:
            if market(symbol).expiry is None:
                frames.append(self._request("sub", symbol))
            else:  # no funding: nothing to subscribe on this connection
                self.events.append(Subscribed(symbol))
        return frames

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("unsub", symbol) for symbol in symbols if market(symbol).expiry is None]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        msg = gunzip(frame)
        op = msg.get("op")
        if op == "notify":
            return self._funding(msg)
        if op == "ping":
            self.events.append(Reply(orjson.dumps({"op": "pong", "ts": msg["ts"]}).decode()))
            return []
        if op in ("sub", "unsub"):
            self._answer(msg)
            return []
        return self.junk_frame()

    def _answer(self, msg: dict[str, Any]) -> None:
        """A ``sub`` answer subscribes its symbol (``err-code`` 0) or rejects it; ``unsub``
        answers change nothing."""
        symbol = self._requests.pop(str(msg.get("cid")), None)
        if symbol is None or symbol not in self.symbols:
            return
        if msg["err-code"] == 0:
            self.events.append(Subscribed(symbol))
        else:
            self.events.append(Rejected(symbol, f"{msg['err-code']}: {msg.get('err-msg')}"))

    def _funding(self, msg: dict[str, Any]) -> list[Ticker]:
        """Each ``data`` item always carries ``contract_code``, ``funding_rate`` (a decimal
        string: the rate of the period settled at ``settlement_time``) and ``settlement_time``
        (a string of epoch ms)."""
        tickers: list[Ticker] = []
        for item in msg["data"]:
            state = self._codes.get(item["contract_code"])
            if state is None:
                continue  # unsubscribed a moment ago
            funding = float(item["funding_rate"]), int(item["settlement_time"]) / 1000.0
            tickers += merged_ticker(
                self,
                state,
                state.version,
                state.book,
                state.last,
                state.statistics,
                funding,
                msg["ts"] / 1000.0,
            )
        return tickers


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
    lacks = ("mark_price", "index_price", "open_interest")
    #: ``market``: ``/linear-swap-ws`` (books, statistics); ``funding``:
    #: ``/linear-swap-notification`` (funding rates), one connection each per set of symbols.
    groups = ("market", "funding")
    fake = "tickerd.testing.htx_swap:FakeHtxSwap"
    #: Perpetuals only: the shared scenarios expect every symbol on every connection of its set,
    #: and a dated future has nothing to subscribe on the funding one (tests/test_htx_swap.py
    #: runs one through the daemon).
    sample_symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT")
    feeds = (
        "`/linear-swap-ws` `market.$contract_code.bbo` (real-time BBO) + `.detail` (24 h stats) and "
        "`/linear-swap-notification` `public.$contract_code.funding_rate`: two connections merged "
        "into one record; gzip frames"
    )
    symbol_forms = (
        "`BTC/USDT:USDT` ↔ `BTC-USDT` (perpetual), `BTC/USDT:USDT-261225` ↔ `BTC-USDT-261225` (dated)"
    )
    keepalive_note = (
        'answers the server\'s `{"ping":n}` (every 5 s) with `{"pong":n}`, and on the notification '
        'endpoint `{"op":"ping","ts":"n"}` with `{"op":"pong","ts":"n"}`'
    )
    lacks_note = (
        "mark and index only as klines on `/ws_index` (documented as signed), open interest "
        "REST-only; dated futures have no funding; bid/ask sizes in contracts; `volume_24h` in the "
        "base asset"
    )
    sequence_source = "`bbo` `version` (match id)"

    def endpoint(self, url: str, symbol: str, group: str = "") -> str:
        """``url`` for the market topics; the funding group's is its sibling path
        ``/linear-swap-notification`` (``wss://api.hbdm.vn/linear-swap-ws`` →
        ``wss://api.hbdm.vn/linear-swap-notification``)."""
        if group != "funding":
            return url
        return url.rstrip("/").rpartition("/")[0] + "/linear-swap-notification"

    def merged_state(self) -> MergedState:
        return {}

    def decoder(self, symbols: Iterable[str], group: str = "", merged: object = None) -> Decoder:
        """The funding group's decoder, or the market one (also for ``""``: tests, benchmarks)."""
        shared = self.merged_state() if merged is None else cast(MergedState, merged)
        if group == "funding":
            return HtxFundingDecoder(symbols, shared)
        return HtxSwapDecoder(symbols, shared)

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.quote != "USDT" or parts.settle != "USDT":
            raise ValueError(
                f"{symbol!r}: htx_swap serves USDT-margined contracts only "
                "(BASE/USDT:USDT, BASE/USDT:USDT-YYMMDD)"
            )
