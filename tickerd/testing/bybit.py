"""A fake Bybit v5 public server: ``/v5/public/spot`` and ``/v5/public/linear`` on one port.

It behaves the way the real one does where tickerd must cope: at most 10 topics per subscribe
request, a whole request refused when one topic in it is bad or already subscribed, snapshot
then *deltas* (only the changed fields) on linear ``tickers``, spot ``tickers`` without bid/ask
beside an ``orderbook.1`` snapshot stream, ``{"op":"ping"}`` answered with a pong, and a
connection that hears no ping for ``idle_timeout`` seconds (10 minutes on Bybit) is closed.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

_QUOTES = ("USDT", "USDC", "BTC", "ETH", "EUR")
_TOPICS_PER_REQUEST = 10


def _native(symbol: str) -> str:
    return symbol.partition(":")[0].replace("/", "")


def _category(conn: FakeConnection) -> str:
    path: str = conn.ws.path or ""
    return path.rstrip("/").rpartition("/")[2]


def _text(value: float) -> str:
    return str(float(value))


class FakeBybit(FakeExchange):
    """``push(symbol, ...)`` sends a spot symbol's ticker and book snapshots, or a linear
    symbol's delta holding only what changed since this connection's last frame."""

    name = "bybit"
    path = "/v5/public"

    def __init__(self, *, idle_timeout: float = 600.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        self._conn_ids = itertools.count(1)
        #: Per connection: its subscribed topics, and the linear ticker data it last saw.
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
            symbol = self._unified(conn, topic.rpartition(".")[2])
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
            if kind not in ("tickers", "orderbook.1") or category not in ("spot", "linear"):
                return f"error:handler not found,topic:{topic}"
            symbol = self._unified(conn, name)
            if symbol is None or (op == "subscribe" and symbol in self.rejected):
                reason = self.rejected.get(symbol or "", "Invalid symbol")
                return f"{reason} :[{topic}]"
            if op == "subscribe" and topic in self._topics[conn]:
                return f"error:already subscribed,topic:{topic}"
        return None

    def _unified(self, conn: FakeConnection, name: str) -> str | None:
        """Native → unified on this connection's category (the same name differs by URL)."""
        linear = _category(conn) == "linear"
        for quote in _QUOTES:
            if name.endswith(quote) and len(name) > len(quote):
                symbol = f"{name[: -len(quote)]}/{quote}"
                if not linear:
                    return symbol
                return f"{symbol}:{quote}" if quote == "USDT" else None
        return None

    # -- frames ----------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        if ":" in symbol:
            return [self._ticker_frame(conn, symbol, state, snapshot=symbol not in self._seen.get(conn, {}))]
        return [self._ticker_frame(conn, symbol, state, snapshot=True), self._book_frame(symbol, state)]

    def _ticker_frame(
        self, conn: FakeConnection, symbol: str, state: dict[str, float], *, snapshot: bool
    ) -> str:
        data = {
            "symbol": _native(symbol),
            "lastPrice": _text(state["last"]),
            "highPrice24h": _text(state["high"]),
            "lowPrice24h": _text(state["low"]),
            "prevPrice24h": _text(state["last"] - state["change"]),
            "volume24h": _text(state["volume"]),
            "turnover24h": _text(state["volume"] * state["last"]),
            "price24hPcnt": _text(round(state["change_pct"] / 100, 6)),
        }
        if ":" in symbol:  # linear tickers carry the book's top; spot ones do not
            data |= {
                "bid1Price": _text(state["bid"]),
                "bid1Size": _text(state["bid_size"]),
                "ask1Price": _text(state["ask"]),
                "ask1Size": _text(state["ask_size"]),
                "markPrice": _text(state["last"]),
                "fundingRate": "0.0001",
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
        """Linear deltas need their snapshots first; spot frames are all snapshots."""
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
