"""A fake Kraken Futures ``/ws/v1`` server: ``info`` greeting, per-request acks, the documented
``Invalid product id`` error, the ``heartbeat`` feed, full ticker objects, and the idle rule."""

from __future__ import annotations

import time
from typing import Any

import orjson
import trio

from tickerd.exchanges.kraken_futures import native
from tickerd.testing.server import FakeConnection, FakeExchange

#: Quote currencies of the fake's listing.
_QUOTES = ("USD", "EUR", "GBP")
#: Seconds without a client message after which Kraken closes a connection.
IDLE_LIMIT = 60.0


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def unified(name: str) -> str | None:
    """The fake's listing, native → unified: ``PF_``/``FF_`` settle in the quote, ``PI_``/``FI_``
    in the base; ``FI_XBTUSD_261225`` expires on 25 December 2026."""
    prefix, _, rest = name.partition("_")
    pair, _, expiry = rest.partition("_")
    quote = next((q for q in _QUOTES if pair.endswith(q) and len(pair) > len(q)), None)
    dated = prefix in ("FF", "FI")
    if quote is None or prefix not in ("PF", "PI", "FF", "FI") or dated != bool(expiry):
        return None
    base = pair[: -len(quote)].replace("XBT", "BTC")
    settle = base if prefix.endswith("I") else quote
    return f"{base}/{quote}:{settle}" + (f"-{expiry}" if expiry else "")


class FakeKrakenFutures(FakeExchange):
    """``push(symbol, ...)`` sends one full ``ticker`` message.

    An unknown or ``reject``-ed product is answered with ``{"event":"error","message":"Invalid
    product id"}`` and the request subscribes nothing (what Kraken does with a request mixing
    good and bad products is not documented; the fake refuses it whole).  A connection that sends
    nothing for :data:`IDLE_LIMIT` seconds is closed, as Kraken does, and recorded as a violation.
    Each ``heartbeat`` subscription counts as a keepalive.
    """

    name = "kraken_futures"
    path = "/ws/v1"

    def __init__(self, *, heartbeat_interval: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_interval = heartbeat_interval
        #: When (trio clock) each connection last sent a message.
        self._heard: dict[FakeConnection, float] = {}
        self._heartbeats: set[FakeConnection] = set()

    def default_reject_reason(self, symbol: str) -> str:
        return "Invalid product id"

    async def on_connect(self, conn: FakeConnection) -> None:
        self._heard[conn] = trio.current_time()
        await conn.send('{"event":"info","version":1}')
        try:
            while not conn.closed:
                await trio.sleep(self.heartbeat_interval)
                if conn in self._heartbeats:
                    await conn.send(_dump({"feed": "heartbeat", "time": int(time.time() * 1000)}))
                if trio.current_time() - self._heard[conn] >= IDLE_LIMIT:
                    self.violations.append(f"no message for {IDLE_LIMIT:g} s: connection closed")
                    await conn.close(1000, "idle")
        finally:
            self._heard.pop(conn, None)
            self._heartbeats.discard(conn)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        self._heard[conn] = trio.current_time()
        event = message.get("event") if isinstance(message, dict) else None
        if event not in ("subscribe", "unsubscribe"):
            await conn.send('{"event":"alert","message":"Bad websocket message"}')
            return
        feed = message.get("feed")
        if feed == "heartbeat":
            if event == "subscribe":
                self.keepalives += 1
                self._heartbeats.add(conn)
            else:
                self._heartbeats.discard(conn)
            await conn.send(_dump({"event": f"{event}d", "feed": "heartbeat"}))
            return
        if feed != "ticker":
            await conn.send('{"event":"error","message":"Invalid feed"}')
            return
        names = message.get("product_ids") or []
        symbols = [unified(str(name)) for name in names]
        if not names or any(symbol is None or symbol in self.rejected for symbol in symbols):
            await conn.send('{"event":"error","message":"Invalid product id"}')
            return
        for symbol in symbols:
            assert symbol is not None
            if event == "subscribe":
                conn.subscribe(symbol)
            else:
                conn.unsubscribe(symbol)
        await conn.send(_dump({"event": f"{event}d", "feed": "ticker", "product_ids": names}))
        if event == "subscribe":
            for symbol in symbols:
                assert symbol is not None
                await conn.send(self.ticker_frames(conn, symbol, self.state(symbol))[0])

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        """Kraken's full ticker object, fields in its order; funding fields only for perpetuals
        and only when not zero ("if zero, field is not populated")."""
        name = native(symbol)
        prefix, _, rest = name.partition("_")
        pair, _, expiry = rest.partition("_")
        now = time.time()
        last = state["last"]
        frame: dict[str, Any] = {"time": int(state.get("ts", now) * 1000), "product_id": name}
        if not expiry:
            rate, index = state["funding_rate"], state["index"]
            absolute = rate * index if prefix == "PF" else rate / index  # per contract: base or USD
            if rate:
                frame |= {
                    "funding_rate": absolute,
                    "funding_rate_prediction": absolute,
                    "relative_funding_rate": rate,
                    "relative_funding_rate_prediction": rate,
                }
            frame["next_funding_rate_time"] = int(state["next_funding"] * 1000)
        maturity = 0 if not expiry else int(time.mktime(time.strptime(expiry, "%y%m%d")) * 1000)
        frame |= {
            "feed": "ticker",
            "bid": state["bid"],
            "ask": state["ask"],
            "bid_size": state["bid_size"],
            "ask_size": state["ask_size"],
            "volume": state["volume"],
            "dtm": 0 if not expiry else max(0, int((maturity / 1000 - now) // 86400)),
            "leverage": "50x",
            "index": state["index"],
            "premium": 0.0,
            "last": last,
            "change": state["change_pct"],
            "suspended": False,
            "tag": "quarter" if expiry else "perpetual",
            "pair": f"{pair[:-3]}:{pair[-3:]}",
            "openInterest": state["open_interest"],
            "markPrice": state["mark"],
            "maturityTime": maturity,
            "post_only": False,
            "volumeQuote": state["volume"] * (1.0 if prefix.endswith("I") else last),
            "open": round(last - state["change"], 8),
            "high": state["high"],
            "low": state["low"],
        }
        return [_dump(frame)]
