"""A fake Bitget v2 public server (``/v2/ws/public``): the ``ticker`` channel of ``SPOT``,
``USDT-FUTURES``, ``USDC-FUTURES`` and ``COIN-FUTURES``.

Like the real one it acks each subscribe and unsubscribe arg separately and follows a
subscription's ack with the current ticker, refuses an unknown instrument (or a channel other
than ``ticker``) with an ``error`` event carrying the refused ``arg`` and ``op`` (the other args
still subscribe), answers the text ``ping`` with ``pong`` and closes a connection that sent no
``ping`` for ``ping_timeout`` seconds (2 minutes on Bitget).  It records as violations the rules
Bitget enforces on clients: more than 10 messages in a second, a request whose args exceed
4096 bytes.  Bitget asks no client to reconnect before it closes connections (it closes them
after 24 h: :attr:`FakeExchange.lifetime`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

#: Bitget's limits on what a client sends.
_MESSAGES_PER_SECOND = 10
_ARGS_BYTES = 4096
#: Quote assets a spot instrument name may end with (longest first).
_SPOT_QUOTES = ("USDT", "USDC", "BTC", "ETH", "EUR")


def _inst(symbol: str) -> tuple[str, str]:
    """``symbol``'s product type and instrument name."""
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    if not settle:
        return "SPOT", base + quote
    if settle == "USDC":
        return "USDC-FUTURES", base + "PERP"
    return ("COIN-FUTURES" if settle == base else "USDT-FUTURES"), base + quote


def _unified(inst_type: str, inst_id: str) -> str | None:
    """The unified symbol of an instrument, or ``None`` where Bitget lists no such name."""
    if inst_type == "SPOT":
        quote = next((q for q in _SPOT_QUOTES if inst_id.endswith(q) and inst_id != q), None)
        return None if quote is None else f"{inst_id[: -len(quote)]}/{quote}"
    suffix, form = {
        "USDT-FUTURES": ("USDT", "{b}/USDT:USDT"),
        "USDC-FUTURES": ("PERP", "{b}/USDC:USDC"),
        "COIN-FUTURES": ("USD", "{b}/USD:{b}"),
    }.get(inst_type, ("", ""))
    if not suffix or not inst_id.endswith(suffix) or inst_id == suffix:
        return None
    return form.format(b=inst_id[: -len(suffix)])


def _text(value: float) -> str:
    return str(float(value))


class FakeBitget(FakeExchange):
    name = "bitget"
    path = "/v2/ws/public"

    def __init__(self, *, ping_timeout: float = 120.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_timeout = ping_timeout
        #: Per connection: when it last pinged, when it sent its latest messages.
        self._pinged: dict[FakeConnection, float] = {}
        self._sent: dict[FakeConnection, deque[float]] = {}

    def default_reject_reason(self, symbol: str) -> str:
        inst_type, inst_id = _inst(symbol)
        return f"instType:{inst_type},channel:ticker,instId:{inst_id} doesn't exist"

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        self._pinged[conn] = trio.current_time()
        try:
            while True:  # Bitget's rule: no ping for 2 minutes and the connection is closed
                await trio.sleep(1.0)
                if trio.current_time() - self._pinged[conn] >= self.ping_timeout:
                    await conn.close(1000, "no ping")
                    return
        finally:
            self._pinged.pop(conn, None)
            self._sent.pop(conn, None)

    async def _send(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        await conn.send(orjson.dumps(frame).decode())

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        sent = self._sent.setdefault(conn, deque(maxlen=_MESSAGES_PER_SECOND + 1))
        sent.append(trio.current_time())
        if len(sent) > _MESSAGES_PER_SECOND and sent[-1] - sent[0] < 1.0:
            self.violations.append(f"more than {_MESSAGES_PER_SECOND} messages in a second")
        if message == "ping":
            self.keepalives += 1
            self._pinged[conn] = trio.current_time()
            await conn.send("pong")
            return
        op = message.get("op") if isinstance(message, dict) else None
        args = message.get("args") if isinstance(message, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            await self._send(conn, {"event": "error", "code": 30016, "msg": "param error"})
            return
        if len(orjson.dumps(args)) > _ARGS_BYTES:
            self.violations.append(f"a request's args exceed {_ARGS_BYTES} bytes")
        for arg in args:
            inst_type, inst_id = str(arg.get("instType")), str(arg.get("instId"))
            symbol = _unified(inst_type, inst_id) if arg.get("channel") == "ticker" else None
            if symbol is None or symbol in self.rejected:
                reason = self.rejected.get(symbol or "") or (
                    f"instType:{inst_type},channel:{arg.get('channel')},instId:{inst_id} doesn't exist"
                )
                await self._send(conn, {"event": "error", "arg": arg, "code": 30003, "msg": reason, "op": op})
                continue
            await self._send(conn, {"event": op, "arg": arg})
            if op == "unsubscribe":
                conn.unsubscribe(symbol)
                continue
            conn.subscribe(symbol)
            for frame in self.ticker_frames(conn, symbol, self.state(symbol)):
                await conn.send(frame)

    # -- frames ----------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        inst_type, inst_id = _inst(symbol)
        ts = int(state.get("ts", time.time()) * 1000)
        last, change = state["last"], state["change"]
        item: dict[str, Any] = {
            "instId": inst_id,
            "lastPr": _text(last),
            "open24h": _text(last - change),
            "high24h": _text(state["high"]),
            "low24h": _text(state["low"]),
            "change24h": _text(state["change_pct"] / 100),
            "bidPr": _text(state["bid"]),
            "askPr": _text(state["ask"]),
            "bidSz": _text(state["bid_size"]),
            "askSz": _text(state["ask_size"]),
            "baseVolume": _text(state["volume"]),
            "quoteVolume": _text(state["volume"] * last),
            "openUtc": _text(last - change),
        }
        if inst_type == "SPOT":
            item |= {"changeUtc24h": _text(state["change_pct"] / 100)}
        else:
            item |= {
                "fundingRate": _text(state["funding_rate"]),
                "nextFundingTime": str(int(state["next_funding"] * 1000)),
                "markPrice": _text(state["mark"]),
                "indexPrice": _text(state["index"]),
                "holdingAmount": _text(state["open_interest"]),
                "symbolType": 1,
                "symbol": inst_id,
                "deliveryPrice": "0",
            }
        push = {
            "action": "snapshot",
            "arg": {"instType": inst_type, "channel": "ticker", "instId": inst_id},
            "data": [item | {"ts": str(ts)}],
            "ts": ts + 8,
        }
        return [orjson.dumps(push).decode()]
