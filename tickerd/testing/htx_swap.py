"""A fake HTX USDT-margined contracts server: ``/linear-swap-ws`` speaks the HTX market protocol of
:class:`~tickerd.testing.htx.FakeHtx` with the ``market.$contract_code.bbo`` and
``market.$contract_code.detail`` topics, ``/linear-swap-notification`` the notification protocol
with ``public.$contract_code.funding_rate``.

The fake lists every ``BASE-USDT`` perpetual and ``BASE-USDT-YYMMDD`` future (funding topics:
perpetuals only).  ``push(symbol, ...)`` sends each subscribed connection what its path serves:
a ``bbo`` frame (sizes in contracts, ``version`` growing) and a ``detail`` frame (``amount`` in
coins, ``vol`` in contracts of 0.001 coin), or a funding ``notify``, in the shapes of the
documentation's examples.  Notification connections are pinged ``{"op":"ping","ts":"<ms>"}`` and
must answer ``{"op":"pong","ts":…}``; their requests are ``{"op":"sub","topic":…,"cid":…}``,
answered with ``err-code`` 0, or 2011 (``Contract doesn't exist.``) for an unknown contract.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from tickerd.exchanges.htx_swap import native
from tickerd.testing.htx import FakeHtx, gzipped, now_ms
from tickerd.testing.server import FakeConnection

#: ``market.BTC-USDT.bbo``, ``market.BTC-USDT-261225.detail``.
_TOPIC = re.compile(r"^market\.(?P<base>[A-Z0-9]+)-USDT(?:-(?P<expiry>[0-9]{6}))?\.(?P<kind>bbo|detail)$")
#: ``public.BTC-USDT.funding_rate``: perpetuals only, and HTX takes the code in either case.
_FUNDING = re.compile(r"^public\.(?P<base>[A-Za-z0-9]+)-usdt\.funding_rate$", re.IGNORECASE)
#: The path of the notification protocol's connections.
NOTIFICATION = "/linear-swap-notification"
#: The face value of the fake's contracts, in coins.
_CONTRACT = 0.001


class FakeHtxSwap(FakeHtx):
    name = "htx_swap"
    path = "/linear-swap-ws"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._versions = itertools.count(131599726)

    def topic_symbol(self, topic: str) -> str | None:
        funding = _FUNDING.match(topic)
        if funding is not None:
            return f"{funding['base'].upper()}/USDT:USDT"
        match = _TOPIC.match(topic)
        if match is None:
            return None
        expiry = f"-{match['expiry']}" if match["expiry"] else ""
        return f"{match['base']}/USDT:USDT{expiry}"

    # -- the notification protocol, on its path ----------------------------------------------

    @staticmethod
    def _notification(conn: FakeConnection) -> bool:
        return hasattr(conn, "ws") and conn.ws.path == NOTIFICATION

    def ping(self, conn: FakeConnection) -> tuple[object, bytes]:
        if not self._notification(conn):
            return super().ping(conn)
        ping = str(now_ms())
        return ping, gzipped({"op": "ping", "ts": ping})

    def pong(self, conn: FakeConnection, message: dict[str, Any]) -> object | None:
        if not self._notification(conn):
            return super().pong(conn, message)
        return message.get("ts") if message.get("op") == "pong" else None

    def request(self, conn: FakeConnection, message: dict[str, Any]) -> tuple[bool, str, Any] | None:
        if not self._notification(conn):
            return super().request(conn, message)
        if message.get("op") not in ("sub", "unsub") or "topic" not in message:
            return None
        return message["op"] == "sub", str(message["topic"]), message.get("cid")

    def answer(self, conn: FakeConnection, subscribe: bool, topic: str, request_id: Any, ok: bool) -> bytes:
        if not self._notification(conn):
            return super().answer(conn, subscribe, topic, request_id, ok)
        answer = {"op": "sub" if subscribe else "unsub", "cid": request_id, "topic": topic, "ts": now_ms()}
        if ok:
            return gzipped(answer | {"err-code": 0})
        if not topic:
            return gzipped({"op": "error", "ts": now_ms()})
        return gzipped(answer | {"err-code": 2011, "err-msg": "Contract doesn't exist."})

    # -- data --------------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[bytes]:
        code = native(symbol)
        subscribed = self.subscribed_topics(conn)
        now = int(state.get("ts", time.time()) * 1000)
        if self._notification(conn):
            return self._funding(subscribed, code, state, now)
        frames = []
        book, detail = f"market.{code}.bbo", f"market.{code}.detail"
        if subscribed is None or book in subscribed:
            version = next(self._versions)
            tick = {
                "mrid": version,
                "id": now // 1000,
                "bid": [state["bid"], state["bid_size"]],
                "ask": [state["ask"], state["ask_size"]],
                "ts": now,
                "version": version,
                "ch": book,
            }
            frames.append(gzipped({"ch": book, "ts": now, "tick": tick}))
        if subscribed is None or detail in subscribed:
            last = state["last"]
            tick = {
                "id": now // 1000 // 60 * 60,
                "mrid": next(self._versions),
                "open": round(last - state["change"], 8),
                "close": last,
                "high": state["high"],
                "low": state["low"],
                "amount": state["volume"],
                "vol": round(state["volume"] / _CONTRACT),
                "trade_turnover": round(state["volume"] * last, 4),
                "count": 2983,
                "asks": [state["ask"], state["ask_size"]],
                "bids": [state["bid"], state["bid_size"]],
            }
            frames.append(gzipped({"ch": detail, "ts": now, "tick": tick}))
        return frames

    def _funding(
        self, subscribed: set[str] | None, code: str, state: dict[str, float], now: int
    ) -> list[bytes]:
        """The funding ``notify`` of a perpetual whose topic ``subscribed`` holds (in any case)."""
        topic = f"public.{code}.funding_rate"
        if subscribed is None or not any(t.lower() == topic.lower() for t in subscribed):
            return []
        base = code.partition("-")[0]
        data = {
            "symbol": base,
            "contract_code": code,
            "fee_asset": "USDT",
            "funding_time": str(now // 60_000 * 60_000),
            "funding_rate": str(state["funding_rate"]),
            "estimated_rate": None,
            "settlement_time": str(int(state["next_funding"] * 1000)),
        }
        return [gzipped({"op": "notify", "topic": topic, "ts": now, "data": [data]})]
