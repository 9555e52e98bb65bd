"""A fake Kraken WebSocket v2 server: status greeting, per-symbol acks, heartbeats, pong."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKraken(FakeExchange):
    name = "kraken"
    path = "/v2"

    def __init__(self, *, heartbeat_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat_interval = heartbeat_interval

    def default_reject_reason(self, symbol: str) -> str:
        return f"Currency pair not supported {symbol}"

    async def on_connect(self, conn: FakeConnection) -> None:
        await conn.send(
            orjson.dumps(
                {
                    "channel": "status",
                    "data": [
                        {
                            "api_version": "v2",
                            "connection_id": 13834774380200032777,
                            "system": "online",
                            "version": "2.0.0",
                        }
                    ],
                    "type": "update",
                }
            ).decode()
        )
        while True:  # heartbeats, once there is a subscription (as Kraken does)
            await trio.sleep(self.heartbeat_interval)
            if conn.subscribed:
                await conn.send('{"channel":"heartbeat"}')

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            return
        method = message.get("method")
        base = {"method": method, "time_in": _now(), "time_out": _now()}
        if "req_id" in message:
            base["req_id"] = message["req_id"]
        if method == "ping":
            self.keepalives += 1
            await conn.send(orjson.dumps(base | {"method": "pong"}).decode())
            return
        params = message.get("params", {})
        if method not in ("subscribe", "unsubscribe") or params.get("channel") != "ticker":
            await conn.send(orjson.dumps(base | {"success": False, "error": "Event(s) not found"}).decode())
            return
        for symbol in params.get("symbol", []):
            if method == "subscribe" and symbol in self.rejected:
                error = {"success": False, "error": self.rejected[symbol], "symbol": symbol}
                await conn.send(orjson.dumps(base | error).decode())
                continue
            result = {"channel": "ticker", "symbol": symbol}
            if method == "subscribe":
                result["snapshot"] = params.get("snapshot", True)
                conn.subscribe(symbol)
            else:
                conn.unsubscribe(symbol)
            await conn.send(orjson.dumps(base | {"result": result, "success": True}).decode())
            if method == "subscribe" and params.get("snapshot", True):
                await conn.send(self._frame("snapshot", symbol, self.state(symbol)))

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        return [self._frame("update", symbol, state)]

    def _frame(self, kind: str, symbol: str, state: dict[str, float]) -> str:
        data = {
            "symbol": symbol,
            "bid": state["bid"],
            "bid_qty": state["bid_size"],
            "ask": state["ask"],
            "ask_qty": state["ask_size"],
            "last": state["last"],
            "volume": state["volume"],
            "vwap": state["last"],
            "low": state["low"],
            "high": state["high"],
            "change": state["change"],
            "change_pct": state["change_pct"],
            "timestamp": datetime.fromtimestamp(state.get("ts", time.time()), UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
        }
        return orjson.dumps({"channel": "ticker", "type": kind, "data": [data]}).decode()
