"""A fake OKX v5 public server (``/ws/v5/public``): ``tickers`` and the derivative channels
``mark-price``, ``funding-rate``, ``open-interest`` and ``index-tickers``.

Like the real one it acks each subscribe arg separately and follows the ack with the channel's
current data, refuses an unknown instrument (or a channel the instrument does not have:
funding on a dated future) with an ``error`` event naming channel and instrument only in the
text (the other args still subscribe), answers the plain text ``ping`` with ``pong``, closes a
connection it has pushed nothing to for ``idle_timeout`` seconds (30 s on OKX), and on
:meth:`FakeExchange.request_reconnect` sends the 64008 service-upgrade notice and closes every
connection some seconds later.  A push of a derivative sends its ``tickers`` data and then
every derivative channel the connection subscribed to for it, its index included.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
import trio

from tickerd.testing.natives import NativeIndex
from tickerd.testing.server import FakeConnection, FakeExchange

#: Contracts per unit of base currency in the fake's swaps and futures (OKX's BTC-USDT-SWAP:
#: 0.01 BTC).
_CONTRACTS_PER_BASE = 100
_INDEX = "index-tickers"
#: One funding period (OKX's usual 8 h).
_FUNDING_PERIOD = 8 * 3600


def _inst_id(symbol: str) -> str:
    pair, _, contract = symbol.partition(":")
    _, _, expiry = contract.partition("-")
    return pair.replace("/", "-") + (f"-{expiry or 'SWAP'}" if contract else "")


def _unified(inst_id: str) -> str | None:
    parts = inst_id.split("-")
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3 and (parts[2] == "SWAP" or (len(parts[2]) == 6 and parts[2].isdigit())):
        settle = parts[0] if parts[1] == "USD" else parts[1]
        expiry = "" if parts[2] == "SWAP" else f"-{parts[2]}"
        return f"{parts[0]}/{parts[1]}:{settle}{expiry}"
    return None


def _index(symbol: str) -> str:
    """The index a derivative is marked against: its pair (``BTC-USDT``)."""
    return symbol.partition(":")[0].replace("/", "-")


def _channels(symbol: str) -> tuple[str, ...]:
    """The channels OKX has for the symbol's instrument (its index aside)."""
    if ":" not in symbol:
        return ("tickers",)
    if "-" in symbol:  # a dated future pays no funding
        return ("tickers", "mark-price", "open-interest")
    return ("tickers", "mark-price", "funding-rate", "open-interest")


def _text(value: float) -> str:
    return str(float(value))


class FakeOKX(FakeExchange):
    name = "okx"
    path = "/ws/v5/public"

    def __init__(self, *, idle_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_timeout = idle_timeout
        self._conn_ids = itertools.count(0xA4D3AE55)
        #: Per connection: its id, when it was last pushed a frame, its subscribed args.
        self._ids: dict[FakeConnection, str] = {}
        self._last_sent: dict[FakeConnection, float] = {}
        self._args: dict[FakeConnection, set[tuple[str, str]]] = {}
        #: Index → the first derivative marked against it (:meth:`_symbol`).
        self._on_index = NativeIndex(lambda symbol: _index(symbol) if ":" in symbol else None, self.market)

    def default_reject_reason(self, symbol: str) -> str:
        return f"channel:tickers,instId:{_inst_id(symbol)} doesn't exist"

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        self._ids[conn] = f"{next(self._conn_ids):08x}"
        self._last_sent[conn] = trio.current_time()
        self._args[conn] = set()
        try:
            while True:  # OKX's rule: nothing pushed for 30 s and the connection is cut
                await trio.sleep(1.0)
                if trio.current_time() - self._last_sent[conn] >= self.idle_timeout:
                    await conn.close(1000, "idle")
                    return
        finally:
            del self._ids[conn], self._last_sent[conn], self._args[conn]

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
            channel, inst_id = str(arg.get("channel")), str(arg.get("instId", ""))
            symbol = self._symbol(channel, inst_id, conn)
            if symbol is None or symbol in self.rejected:
                reason = self.rejected.get(symbol or "") or (
                    f"channel:{channel},instId:{inst_id} doesn't exist"
                )
                await self._send(conn, {"event": "error", "code": "60018", "msg": reason, "connId": conn_id})
                continue
            await self._send(conn, {"event": op, "arg": arg, "connId": conn_id})
            if op == "unsubscribe":
                self._args[conn].discard((channel, inst_id))
                if channel == "tickers":
                    conn.unsubscribe(symbol)
                continue
            self._args[conn].add((channel, inst_id))
            if channel == "tickers":
                conn.subscribe(symbol)
            await self._send(conn, self._frame(channel, symbol, self.state(symbol)))

    def _symbol(self, channel: str, inst_id: str, conn: FakeConnection) -> str | None:
        """The symbol an arg is about (for an index: a derivative on it, the connection's own
        first), or ``None`` if OKX has no such channel for it."""
        if channel == _INDEX:
            mine = [s for s in conn.subscribed if ":" in s and _index(s) == inst_id]
            return min(mine) if mine else self._on_index.get(inst_id)
        symbol = _unified(inst_id)
        return symbol if symbol is not None and channel in _channels(symbol) else None

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
        """The pushes of every channel ``conn`` subscribed to for ``symbol``; a detached
        connection (frames for benchmarks) has every channel a client subscribes to."""
        args = [(channel, _inst_id(symbol)) for channel in _channels(symbol)]
        if ":" in symbol:
            args.append((_INDEX, _index(symbol)))
        subscribed = self._args.get(conn)
        return [
            self._frame(channel, symbol, state)
            for channel, inst_id in args
            if subscribed is None or (channel, inst_id) in subscribed
        ]

    def _frame(self, channel: str, symbol: str, state: dict[str, float]) -> str:
        """The push of ``channel`` carrying ``state`` of ``symbol`` (for the index: its index)."""
        ts = str(int(state.get("ts", time.time()) * 1000))
        inst_id = _index(symbol) if channel == _INDEX else _inst_id(symbol)
        inst_type = "SPOT" if ":" not in symbol else "FUTURES" if "-" in symbol else "SWAP"
        if channel == "tickers":
            item = self._ticker_item(symbol, state)
        elif channel == "mark-price":
            item = {"instType": inst_type, "instId": inst_id, "markPx": _text(state["mark"])}
        elif channel == "funding-rate":
            funding_ms = int(state["next_funding"] * 1000)
            item = {
                "formulaType": "noRate",
                "fundingRate": _text(state["funding_rate"]),
                "fundingTime": str(funding_ms),
                "impactValue": "",
                "instId": inst_id,
                "instType": inst_type,
                "interestRate": "",
                "method": "current_period",
                "maxFundingRate": "0.00375",
                "minFundingRate": "-0.00375",
                "nextFundingRate": "",
                "nextFundingTime": str(funding_ms + _FUNDING_PERIOD * 1000),
                "premium": "0.0001233824646391",
                "settFundingRate": _text(state["funding_rate"]),
                "settState": "settled",
            }
        elif channel == "open-interest":
            item = {
                "instId": inst_id,
                "instType": inst_type,
                "oi": _text(state["open_interest"] * _CONTRACTS_PER_BASE),
                "oiCcy": _text(state["open_interest"]),
                "oiUsd": _text(state["open_interest"] * state["mark"]),
            }
        else:
            index = state["index"]
            item = {
                "instId": inst_id,
                "idxPx": _text(index),
                "high24h": _text(index * 1.02),
                "low24h": _text(index * 0.98),
                "open24h": _text(index),
                "sodUtc0": _text(index),
                "sodUtc8": _text(index),
            }
        return orjson.dumps(
            {"arg": {"channel": channel, "instId": inst_id}, "data": [item | {"ts": ts}]}
        ).decode()

    @staticmethod
    def _ticker_item(symbol: str, state: dict[str, float]) -> dict[str, str]:
        derivative = ":" in symbol
        volume = state["volume"]
        return {
            "instType": "SPOT" if not derivative else "FUTURES" if "-" in symbol else "SWAP",
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
            # Derivatives count volume in contracts and give the base amount in volCcy24h; spot
            # counts base in vol24h and quote in volCcy24h.
            "volCcy24h": _text(volume if derivative else volume * state["last"]),
            "vol24h": _text(volume * _CONTRACTS_PER_BASE if derivative else volume),
        }
