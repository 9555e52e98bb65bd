"""A fake bitFlyer Lightning Realtime API (JSON-RPC 2.0 over websocket, ``/json-rpc``).

* ``subscribe`` / ``unsubscribe`` with ``params: {"channel": …}`` are answered ``true``; a
  batch (an array of requests) is processed in order and answered with an array;
* anything that is not a JSON-RPC 2.0 request is answered with the specification's errors
  (``-32700`` parse error, ``-32600`` invalid request, ``-32601`` method not found) and
  recorded in :attr:`FakeExchange.violations`;
* a ``reject``-ed product is subscribed ``true`` and never served, as an unknown one is;
* tickers arrive as ``channelMessage`` notifications with every field of the documented
  ticker, ``tick_id`` growing per product;
* the server pings with websocket ping frames every ``ping_interval`` seconds (the client's
  websocket layer answers).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from tickerd.exchanges.bitflyer import CHANNEL, native, unified
from tickerd.testing.server import FakeConnection, FakeExchange


def _timestamp(epoch: float) -> str:
    """RFC 3339 with seven fractional digits, as bitFlyer writes it."""
    whole = int(epoch)
    ticks = round((epoch - whole) * 1e7)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks:07d}Z"


class FakeBitflyer(FakeExchange):
    name = "bitflyer"
    path = "/json-rpc"

    def __init__(self, *, ping_interval: float = 20.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        self._tick_ids: dict[str, int] = {}

    async def on_connect(self, conn: FakeConnection) -> None:
        await self.ping_forever(conn, self.ping_interval)

    def _invalid(self, request: Any, code: int, message: str) -> dict[str, Any]:
        self.violations.append(f"{message}: {request!r}")
        request_id = request.get("id") if isinstance(request, dict) else None
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if isinstance(message, str | bytes):
            await conn.send(orjson.dumps(self._invalid(message, -32700, "Parse error")).decode())
            return
        batch = isinstance(message, list)
        answers = [await self._call(conn, request) for request in (message if batch else [message])]
        await conn.send(orjson.dumps(answers if batch else answers[0]).decode())

    async def _call(self, conn: FakeConnection, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or "id" not in request:
            return self._invalid(request, -32600, "Invalid Request")
        method = request.get("method")
        channel = (request.get("params") or {}).get("channel")
        if method not in ("subscribe", "unsubscribe") or not isinstance(channel, str):
            return self._invalid(request, -32601, "Method not found")
        if channel.startswith(CHANNEL):
            symbol = unified(channel.removeprefix(CHANNEL))
            if method == "unsubscribe":
                conn.unsubscribe(symbol)
            elif symbol not in self.rejected:
                conn.subscribe(symbol)
        return {"jsonrpc": "2.0", "id": request["id"], "result": True}

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        code = native(symbol)
        tick_id = self._tick_ids.get(code, 25965000) + 1
        self._tick_ids[code] = tick_id
        message = {
            "product_code": code,
            "state": "RUNNING",
            "timestamp": _timestamp(state.get("ts", time.time())),
            "tick_id": tick_id,
            "best_bid": state["bid"],
            "best_ask": state["ask"],
            "best_bid_size": state["bid_size"],
            "best_ask_size": state["ask_size"],
            "total_bid_depth": state["bid_size"] * 100,
            "total_ask_depth": state["ask_size"] * 100,
            "market_bid_size": 0,
            "market_ask_size": 0,
            "ltp": state["last"],
            "volume": state["volume"],
            "volume_by_product": state["volume"],
        }
        params = {"channel": CHANNEL + code, "message": message}
        return [orjson.dumps({"jsonrpc": "2.0", "method": "channelMessage", "params": params}).decode()]
