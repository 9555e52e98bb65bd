"""A fake OKX v5 public server (``/ws/v5/public``) speaking the ``tickers`` channel.

Like the real one it acks each subscribe arg separately and follows the ack with the current
ticker, refuses an unknown instrument with an ``error`` event naming it only in the text (the
other args still subscribe), answers the plain text ``ping`` with ``pong``, closes a connection
it has pushed nothing to for ``idle_timeout`` seconds (30 s on OKX), and on
:meth:`FakeExchange.request_reconnect` sends the 64008 service-upgrade notice and closes every
connection some seconds later.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

#: Contracts per unit of base currency in the fake's swaps (OKX's BTC-USDT-SWAP: 0.01 BTC).
_CONTRACTS_PER_BASE = 100


def _inst_id(symbol: str) -> str:
    pair, _, settle = symbol.partition(":")
    return pair.replace("/", "-") + ("-SWAP" if settle else "")


def _unified(inst_id: str) -> str | None:
    parts = inst_id.split("-")
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3 and parts[2] == "SWAP":
        settle = parts[0] if parts[1] == "USD" else parts[1]
        return f"{parts[0]}/{parts[1]}:{settle}"
    return None


def _text(value: float) -> str:
    return str(float(value))


class FakeOKX(FakeExchange):
    name = "okx"
    path = "/ws/v5/public"

    def __init__(self, *, idle_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        self._conn_ids = itertools.count(0xA4D3AE55)
        #: Per connection: its id, when it was last pushed a frame.
        self._ids: dict[FakeConnection, str] = {}
        self._last_sent: dict[FakeConnection, float] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return f"channel:tickers,instId:{_inst_id(symbol)} doesn't exist"

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        self._ids[conn] = f"{next(self._conn_ids):08x}"
        self._last_sent[conn] = trio.current_time()
        try:
            while True:  # OKX's rule: nothing pushed for 30 s and the connection is cut
                await trio.sleep(1.0)
                if trio.current_time() - self._last_sent[conn] >= self.idle_timeout:
                    await conn.close(1000, "idle")
                    return
        finally:
            del self._ids[conn], self._last_sent[conn]

    async def _send(self, conn: FakeConnection, frame: dict[str, Any] | str) -> None:
        self._last_sent[conn] = trio.current_time()
        await conn.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if message == "ping":
            self.keepalives += 1
            await self._send(conn, "pong")
            return
        conn_id = self._ids[conn]
        op = message.get("op") if isinstance(message, dict) else None
        if op not in ("subscribe", "unsubscribe"):
            await self._send(
                conn,
                {"event": "error", "code": "60012", "msg": f"Illegal request: {message}", "connId": conn_id},
            )
            return
        for arg in message.get("args") or []:
            symbol = _unified(str(arg.get("instId", "")))
            if arg.get("channel") != "tickers" or symbol is None or symbol in self.rejected:
                reason = self.rejected.get(symbol or "") or (
                    f"channel:{arg.get('channel')},instId:{arg.get('instId')} doesn't exist"
                )
                await self._send(conn, {"event": "error", "code": "60018", "msg": reason, "connId": conn_id})
                continue
            await self._send(conn, {"event": op, "arg": arg, "connId": conn_id})
            if op == "unsubscribe":
                conn.unsubscribe(symbol)
                continue
            conn.subscribe(symbol)
            for frame in self.ticker_frames(conn, symbol, self.state(symbol)):
                await self._send(conn, frame)

    # -- driving ---------------------------------------------------------------------------

    async def push(self, symbol: str, **fields: float) -> int:
        sent = await super().push(symbol, **fields)
        now = trio.current_time()
        for conn in self.subscribers(symbol):
            self._last_sent[conn] = now
        return sent

    def reconnect_frame(self, conn: FakeConnection) -> str:
        notice = {
            "event": "notice",
            "code": "64008",
            "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
            "connId": self._ids.get(conn, ""),
        }
        return orjson.dumps(notice).decode()

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        swap = ":" in symbol
        volume = state["volume"]
        item = {
            "instType": "SWAP" if swap else "SPOT",
            "instId": _inst_id(symbol),
            "last": _text(state["last"]),
            "lastSz": "0.1",
            "askPx": _text(state["ask"]),
            "askSz": _text(state["ask_size"]),
            "bidPx": _text(state["bid"]),
            "bidSz": _text(state["bid_size"]),
            "open24h": _text(state["last"] - state["change"]),
            "high24h": _text(state["high"]),
            "low24h": _text(state["low"]),
            "sodUtc0": _text(state["last"]),
            "sodUtc8": _text(state["last"]),
            # Swaps count volume in contracts and give the base amount in volCcy24h; spot
            # counts base in vol24h and quote in volCcy24h.
            "volCcy24h": _text(volume if swap else volume * state["last"]),
            "vol24h": _text(volume * _CONTRACTS_PER_BASE if swap else volume),
            "ts": str(int(state.get("ts", time.time()) * 1000)),
        }
        arg = {"channel": "tickers", "instId": item["instId"]}
        return [orjson.dumps({"arg": arg, "data": [item]}).decode()]
