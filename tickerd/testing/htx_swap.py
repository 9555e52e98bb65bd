"""A fake HTX USDT-margined contracts server (``/linear-swap-ws``): the HTX protocol of
:class:`~tickerd.testing.htx.FakeHtx` with the ``market.$contract_code.bbo`` and
``market.$contract_code.detail`` topics.

The fake lists every ``BASE-USDT`` perpetual and ``BASE-USDT-YYMMDD`` future.  ``push(symbol,
...)`` sends each subscribed connection a ``bbo`` frame (sizes in contracts, ``version`` growing)
and a ``detail`` frame (``amount`` in coins, ``vol`` in contracts of 0.001 coin), the shapes of
the documentation's examples.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from tickerd.exchanges.htx_swap import native
from tickerd.testing.htx import FakeHtx, gzipped
from tickerd.testing.server import FakeConnection

#: ``market.BTC-USDT.bbo``, ``market.BTC-USDT-261225.detail``.
_TOPIC = re.compile(r"^market\.(?P<base>[A-Z0-9]+)-USDT(?:-(?P<expiry>[0-9]{6}))?\.(?P<kind>bbo|detail)$")
#: The face value of the fake's contracts, in coins.
_CONTRACT = 0.001


class FakeHtxSwap(FakeHtx):
    name = "htx_swap"
    path = "/linear-swap-ws"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._versions = itertools.count(131599726)

    def topic_symbol(self, topic: str) -> str | None:
        match = _TOPIC.match(topic)
        if match is None:
            return None
        expiry = f"-{match['expiry']}" if match["expiry"] else ""
        return f"{match['base']}/USDT:USDT{expiry}"

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[bytes]:
        code = native(symbol)
        subscribed = self.subscribed_topics(conn)
        now = int(state.get("ts", time.time()) * 1000)
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
