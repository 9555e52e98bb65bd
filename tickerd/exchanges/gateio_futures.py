"""Gate.io USDT-margined perpetual futures: ``futures.tickers`` merged with ``futures.book_ticker``.

Documentation: "Gate Futures WebSocket v4", https://www.gate.com/docs/developers/futures/ws/en/
(sections "Server URL", "Ping and Pong", "Tickers API", "Best ask/bid API"); the request and
answer protocol it shares with Gate's spot feed is :mod:`tickerd.exchanges.gate_v4`.

Two channels make one ticker, both on ``wss://fx-ws.gateio.ws/v4/ws/usdt``:

* ``futures.tickers``: a list of full ticker objects, carrying
  ``last``, ``change_percentage`` (24 h, in percent: the change itself is not sent),
  ``high_24h``/``low_24h``, ``volume_24h`` (contracts; ``volume_24h_base`` is read, the base
  asset), ``mark_price``, ``index_price``, ``funding_rate`` (the current period's rate, a
  fraction; ``funding_rate_indicative``, the next period's, is deprecated in the docs) and
  ``total_size``, which the docs call only "Total size": the contracts held open, read as the
  open interest (no other figure of the channel could be; no live frame here confirmed it).
  It names no funding time (the REST contract's ``funding_next_apply`` does), so
  ``next_funding_ts`` stays ``None``.  The envelope's ``time_ms`` (``time`` in seconds on
  frames older than 2022) stamps it.
* ``futures.book_ticker``: best bid ``b``/``B`` and ask ``a``/``A``, pushed in real time, the
  sizes in contracts (integers; strings of decimals for a client that asks with the
  ``X-Gate-Size-Decimal`` header, which this one does not), each contract being
  ``quanto_multiplier`` of the base asset (0.0001 BTC for ``BTC_USDT``), a REST-only figure;
  ``t`` in ms; ``u``, the order book update id, becomes ``sequence``.  "If no bids", ``b`` is
  an empty string and ``B`` 0 (asks likewise).

Each push of either produces one complete ticker from the latest of both, the sanity rule applied
to the merged candidate before it is kept (:attr:`Decoder.merges`); a book that arrives before
the contract's first ``tickers`` push is sent without a last price.

Gate documents no limit on subscriptions (a maintainer: "No limit on subscriptions", "100
connections at most from one host are recommended", gateio/gatews#25), no request to reconnect
and no connection lifetime.  The server pings and closes a connection that does not answer (the
transport answers); the adapter also sends ``futures.ping`` every 10 s, the interval of the
docs' demo client, so a quiet contract's connection feeds the silence watchdog with pongs.
Delivery (dated) futures live on other URLs (``/v4/ws/delivery/usdt``) and are not served.
"""

from __future__ import annotations

import time
from typing import Any

from tickerd.exchanges.base import Exchange, Keepalive, market
from tickerd.exchanges.gate_v4 import MergingGateDecoder, State, ping
from tickerd.model import Ticker

TICKERS = "futures.tickers"
BOOK = "futures.book_ticker"


class GateioFuturesDecoder(MergingGateDecoder):
    """Decodes both channels' pushes into per-contract merged state."""

    exchange = "gateio_futures"
    prefix = "futures"
    channels = (TICKERS, BOOK)

    def _tickers(self, msg: dict[str, Any]) -> list[Ticker]:
        """Every field read is sent on every push (a missing one makes the frame junk); a value
        may be empty (a contract not yet traded), read as ``None``.  Converted inline, as a call
        per field would cost a tenth of the frame.  The frame is junk as a whole if any of its
        tickers breaks the sanity rule: nothing of it is kept then."""
        ms = msg.get("time_ms")
        exchange_ts = ms / 1000.0 if ms is not None else float(msg["time"])
        now = time.time()
        changes: list[tuple[State, Ticker]] = []
        for item in msg["result"]:
            state = self._states.get(item["contract"])
            if state is None:
                continue
            last, volume, high, low = item["last"], item["volume_24h_base"], item["high_24h"], item["low_24h"]
            pct, mark, index = item["change_percentage"], item["mark_price"], item["index_price"]
            funding, size = item["funding_rate"], item["total_size"]
            ticker = Ticker(
                "gateio_futures",
                state.symbol,
                float(last) if last else None,
                *state.book,
                float(volume) if volume else None,
                float(high) if high else None,
                float(low) if low else None,
                None,
                float(pct) if pct else None,
                exchange_ts,
                now,
                float(mark) if mark else None,
                float(index) if index else None,
                float(funding) if funding else None,
                None,
                float(size) if size else None,
                state.sequence,
            )
            if (reason := self.flaw(ticker)) is not None:
                return self.junk_frame(reason)
            changes.append((state, ticker))
        for state, t in changes:
            state.last = t.last
            state.statistics = (t.volume_24h, t.high_24h, t.low_24h, None, t.change_pct_24h)
            state.derivative = (t.mark_price, t.index_price, t.funding_rate, None, t.open_interest)
        return [ticker for _, ticker in changes]


class GateioFutures(Exchange):
    """Gate.io USDT-margined perpetuals (see the module docstring)."""

    name = "gateio_futures"
    url = "wss://fx-ws.gateio.ws/v4/ws/usdt"
    #: Two channels a contract; Gate documents no limit, so this only spreads the load.
    max_symbols_per_connection = 100
    keepalive = Keepalive(interval=10.0, frame=ping("futures"))
    keepalive_note = "answers server ping frames"
    lacks = ("change_24h", "next_funding_ts")
    decoder_class = GateioFuturesDecoder
    fake = "tickerd.testing.gateio_futures:FakeGateioFutures"
    sample_symbols = ("BTC/USDT:USDT", "ETH/USDT:USDT")
    feeds = (
        "`futures.tickers` (last, 24 h stats, mark, index, funding, open interest) + "
        "`futures.book_ticker` (BBO with sizes), merged"
    )
    symbol_forms = "`BTC/USDT:USDT` ↔ `BTC_USDT` (USDT-margined perpetuals)"
    lacks_note = (
        "no next funding time on the websocket (REST `funding_next_apply` only); the 24 h change "
        "comes as a percentage only; bid/ask sizes in contracts (`quanto_multiplier` of the base "
        "each), `volume_24h` in the base asset"
    )
    open_interest_unit = "contracts (`total_size`)"
    sequence_source = "`futures.book_ticker` `u` (order book update id)"

    def check_symbol(self, symbol: str) -> None:
        """USDT-margined perpetuals only: quoted and settled in USDT."""
        super().check_symbol(symbol)
        parts = market(symbol)
        if parts.settle != "USDT" or parts.quote != "USDT" or parts.expiry is not None:
            raise ValueError(
                f"{symbol!r}: the gateio_futures adapter serves USDT-margined perpetuals only "
                "(BASE/USDT:USDT)"
            )
