"""A fake Bybit v5 public server: ``/v5/public/spot``, ``/linear`` and ``/inverse`` on one port.

It behaves the way the real one does where tickerd must cope: at most 10 topics per subscribe
request, a whole request refused when one topic in it is bad or already subscribed, snapshot
then *deltas* (only the changed fields) on linear and inverse ``tickers``, which carry the mark
and index price, funding and open interest (dated futures: no funding), spot ``tickers`` without
bid/ask beside an ``orderbook.1`` snapshot stream, ``{"op":"ping"}`` answered with a pong, and a
connection that hears no ping for ``idle_timeout`` seconds (10 minutes on Bybit) is closed.
Native names follow Bybit's list (``BTCUSDT-25DEC26``, ``BTCPERP``, ``BTC-25DEC26``,
``BTCUSD``, ``BTCUSDZ26``); an inverse future's day is the last Friday of its quarter's month.
"""

from __future__ import annotations

import calendar
import datetime
import itertools
import re
import time
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

_QUOTES = ("USDT", "USDC", "BTC", "ETH", "EUR")
_TOPICS_PER_REQUEST = 10
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Inverse futures' quarter codes: March, June, September, December.
_QUARTERS = "HMUZ"
_LINEAR_FUTURE = re.compile(r"^([A-Z0-9]+?)(USDT)?-(\d{2})([A-Z]{3})(\d{2})$")
_INVERSE_FUTURE = re.compile(r"^([A-Z0-9]+)USD([HMUZ])(\d{2})$")


def _native(symbol: str) -> str:
    """Unified → Bybit's name on the symbol's category URL."""
    pair, _, contract = symbol.partition(":")
    base, _, quote = pair.partition("/")
    settle, _, expiry = contract.partition("-")
    if not settle:
        return base + quote
    if settle == base:  # inverse
        return base + quote + (_QUARTERS[int(expiry[2:4]) // 3 - 1] + expiry[:2] if expiry else "")
    usdc = settle == "USDC"
    if not expiry:
        return base + ("PERP" if usdc else quote)
    day = f"{expiry[4:]}{_MONTHS[int(expiry[2:4]) - 1]}{expiry[:2]}"
    return f"{base}-{day}" if usdc else f"{base}{quote}-{day}"


def _last_friday(year: int, month: int) -> str:
    """``YYMMDD`` of the month's last Friday (when Bybit's quarterly inverse futures expire)."""
    last = datetime.date(year, month, calendar.monthrange(year, month)[1])
    return (last - datetime.timedelta(days=(last.weekday() - 4) % 7)).strftime("%y%m%d")


def _unified(category: str, name: str) -> str | None:
    """Native → unified on a category's URL (the same name differs by URL)."""
    if category == "inverse":
        if future := _INVERSE_FUTURE.match(name):
            base, code, year = future.groups()
            expiry = _last_friday(2000 + int(year), 3 * (_QUARTERS.index(code) + 1))
            return f"{base}/USD:{base}-{expiry}"
        return f"{name[:-3]}/USD:{name[:-3]}" if name.endswith("USD") and len(name) > 3 else None
    if category == "linear":
        if future := _LINEAR_FUTURE.match(name):
            base, usdt, day, month, year = future.groups()
            if month not in _MONTHS:
                return None
            settle = "USDT" if usdt else "USDC"
            return f"{base}/{settle}:{settle}-{year}{_MONTHS.index(month) + 1:02d}{day}"
        if name.endswith("PERP") and len(name) > 4:
            return f"{name[:-4]}/USDC:USDC"
        return f"{name[:-4]}/USDT:USDT" if name.endswith("USDT") and len(name) > 4 else None
    if category != "spot":
        return None
    for quote in _QUOTES:
        if name.endswith(quote) and len(name) > len(quote):
            return f"{name[: -len(quote)]}/{quote}"
    return None


def _category(conn: FakeConnection) -> str:
    path: str = conn.ws.path or ""
    return path.rstrip("/").rpartition("/")[2]


def _text(value: float) -> str:
    return str(float(value))


class FakeBybit(FakeExchange):
    """``push(symbol, ...)`` sends a spot symbol's ticker and book snapshots, or a derivative's
    delta holding only what changed since this connection's last frame."""

    name = "bybit"
    path = "/v5/public"

    def __init__(self, *, idle_timeout: float = 600.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        self._conn_ids = itertools.count(1)
        #: Per connection: its subscribed topics, and the derivatives' ticker data it last saw.
        self._topics: dict[FakeConnection, set[str]] = {}
        self._seen: dict[FakeConnection, dict[str, dict[str, str]]] = {}
        self._last_ping: dict[FakeConnection, float] = {}
        self._update_ids = itertools.count(1000)

    def default_reject_reason(self, symbol: str) -> str:
        return "Invalid symbol"

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        self._topics[conn] = set()
        self._seen[conn] = {}
        self._last_ping[conn] = trio.current_time()
        try:
            while True:  # Bybit's rule: no ping for too long and the connection is cut
                await trio.sleep_until(self._last_ping[conn] + self.idle_timeout)
                if trio.current_time() >= self._last_ping[conn] + self.idle_timeout:
                    await conn.close(1000, "idle")
                    return
        finally:
            del self._topics[conn], self._seen[conn], self._last_ping[conn]

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            return
        op, req_id = message.get("op"), message.get("req_id", "")
        base = {"conn_id": f"fake-{next(self._conn_ids)}", "req_id": req_id, "op": op}
        if op == "ping":
            self._last_ping[conn] = trio.current_time()
            self.keepalives += 1
            await conn.send(orjson.dumps({"success": True, "ret_msg": "pong"} | base).decode())
            return
        if op not in ("subscribe", "unsubscribe"):
            await conn.send(orjson.dumps({"success": False, "ret_msg": f"Invalid op {op}"} | base).decode())
            return
        args: list[str] = list(message.get("args") or [])
        error = self._refusal(conn, op, args)
        if error:
            await conn.send(orjson.dumps({"success": False, "ret_msg": error} | base).decode())
            return
        await conn.send(orjson.dumps({"success": True, "ret_msg": ""} | base).decode())
        for topic in args:
            symbol = _unified(_category(conn), topic.rpartition(".")[2])
            assert symbol is not None  # _refusal checked it
            if op == "unsubscribe":
                self._topics[conn].discard(topic)
                if topic.startswith("tickers."):
                    conn.unsubscribe(symbol)
                    self._seen[conn].pop(symbol, None)
                continue
            self._topics[conn].add(topic)
            if topic.startswith("tickers."):
                conn.subscribe(symbol)
                await conn.send(self._ticker_frame(conn, symbol, self.state(symbol), snapshot=True))
            else:
                await conn.send(self._book_frame(symbol, self.state(symbol)))

    def _refusal(self, conn: FakeConnection, op: str, args: list[str]) -> str | None:
        """Why Bybit would refuse this whole request, if it would."""
        if len(args) > _TOPICS_PER_REQUEST:
            return f"args size >{_TOPICS_PER_REQUEST}"
        category = _category(conn)
        for topic in args:
            kind, _, name = topic.rpartition(".")
            if kind not in ("tickers", "orderbook.1") or category not in ("spot", "linear", "inverse"):
                return f"error:handler not found,topic:{topic}"
            symbol = _unified(category, name)
            if symbol is None or (op == "subscribe" and symbol in self.rejected):
                reason = self.rejected.get(symbol or "", "Invalid symbol")
                return f"{reason} :[{topic}]"
            if op == "subscribe" and topic in self._topics[conn]:
                return f"error:already subscribed,topic:{topic}"
        return None

    # -- frames ----------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        if ":" in symbol:
            return [self._ticker_frame(conn, symbol, state, snapshot=symbol not in self._seen.get(conn, {}))]
        return [self._ticker_frame(conn, symbol, state, snapshot=True), self._book_frame(symbol, state)]

    def _ticker_frame(
        self, conn: FakeConnection, symbol: str, state: dict[str, float], *, snapshot: bool
    ) -> str:
        inverse = symbol.partition("/")[0] == symbol.partition(":")[2].partition("-")[0]
        # Inverse contracts count volume in contracts of 1 USD and turnover in the base asset.
        base, quoted = state["volume"], state["volume"] * state["last"]
        data = {
            "symbol": _native(symbol),
            "lastPrice": _text(state["last"]),
            "highPrice24h": _text(state["high"]),
            "lowPrice24h": _text(state["low"]),
            "prevPrice24h": _text(state["last"] - state["change"]),
            "volume24h": _text(quoted if inverse else base),
            "turnover24h": _text(base if inverse else quoted),
            "price24hPcnt": _text(round(state["change_pct"] / 100, 6)),
        }
        if ":" in symbol:  # derivatives' tickers carry the book's top and more; spot ones do not
            dated = "-" in symbol
            data |= {
                "bid1Price": _text(state["bid"]),
                "bid1Size": _text(state["bid_size"]),
                "ask1Price": _text(state["ask"]),
                "ask1Size": _text(state["ask_size"]),
                "markPrice": _text(state["mark"]),
                "indexPrice": _text(state["index"]),
                "openInterest": _text(state["open_interest"]),
                "openInterestValue": _text(state["open_interest"] * state["mark"]),
                # Dated futures pay no funding: Bybit leaves the fields empty.
                "fundingRate": "" if dated else _text(state["funding_rate"]),
                "nextFundingTime": "0" if dated else str(int(state["next_funding"] * 1000)),
            }
            seen = self._seen.setdefault(conn, {})
            previous = seen.get(symbol)
            seen[symbol] = data
            if not snapshot and previous is not None:
                changed = {k: v for k, v in data.items() if previous.get(k) != v}
                data = {"symbol": data["symbol"]} | changed
        body = {
            "topic": f"tickers.{_native(symbol)}",
            "type": "snapshot" if snapshot else "delta",
            "data": data,
            "cs": next(self._update_ids),
            "ts": self._ts(state),
        }
        return orjson.dumps(body).decode()

    def _book_frame(self, symbol: str, state: dict[str, float]) -> str:
        body = {
            "topic": f"orderbook.1.{_native(symbol)}",
            "type": "snapshot",
            "ts": self._ts(state),
            "data": {
                "s": _native(symbol),
                "b": [[_text(state["bid"]), _text(state["bid_size"])]],
                "a": [[_text(state["ask"]), _text(state["ask_size"])]],
                "u": next(self._update_ids),
                "seq": next(self._update_ids),
            },
            "cts": self._ts(state),
        }
        return orjson.dumps(body).decode()

    @staticmethod
    def _ts(state: dict[str, float]) -> int:
        return int(state.get("ts", time.time()) * 1000)

    def bench_frames(self, symbols: list[str], count: int) -> tuple[list[str], list[str]]:
        """Derivatives' deltas need their snapshots first; spot frames are all snapshots."""
        conn = FakeConnection.detached(self, symbols)
        setup = [
            self._ticker_frame(conn, symbol, self.state(symbol), snapshot=True)
            for symbol in symbols
            if ":" in symbol
        ]
        updates: list[str] = []
        for i in range(count):
            symbol = symbols[i % len(symbols)]
            updates.extend(self.ticker_frames(conn, symbol, self.wiggle(symbol)))
        self._seen.pop(conn, None)
        return setup, updates[:count]
