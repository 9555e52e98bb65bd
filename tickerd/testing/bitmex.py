"""A fake BitMEX ``/realtime`` server: welcome frame, per-argument acks, ``partial`` snapshots,
``quote`` inserts, ``instrument`` updates carrying only the changed fields, text ping/pong."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from tickerd.exchanges.base import market
from tickerd.exchanges.bitmex import MONTH_CODES, TABLES, native
from tickerd.testing.server import FakeConnection, FakeExchange

#: Quote currencies of the fake's listing, longest first so ``USDT`` wins over ``USD``.
_QUOTES = ("USDT", "USDC", "USD", "EUR")
#: The unit BitMEX names as the settlement currency of a contract.
_UNITS = {"BTC": "XBt", "USDT": "USDt"}
#: A dated future's name: the perpetual's (or, USD-quoted inverse, the base's), month code, year.
_FUTURE = re.compile(rf"^([A-Z0-9]+?)([{MONTH_CODES}])([0-9]{{2}})$")
#: What BitMEX sends as a perpetual's ``fundingInterval``: 8 hours.
_EIGHT_HOURS = "2000-01-01T08:00:00.000Z"


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _last_friday(year: int, month: int) -> date:
    """The day BitMEX's quarterlies of that month expire."""
    day = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - 4) % 7)


def unified(name: str) -> str | None:
    """The fake's listing, native → unified: spot has an underscore; ``USD``/``EUR`` contracts
    settle in bitcoin (inverse for ``XBT``, quanto otherwise); ``USDT``/``USDC`` ones in the quote.
    Every perpetual has quarterlies expiring on the last Friday of their month; those of a
    USD-quoted inverse name only its base (``XBTZ26``)."""
    base, underscore, quote = name.partition("_")
    if underscore:
        return f"{base.replace('XBT', 'BTC')}/{quote.replace('XBT', 'BTC')}"
    root, expiry = name, ""
    if future := _FUTURE.match(name):
        root, code, year = future.groups()
        expiry = _last_friday(2000 + int(year), MONTH_CODES.index(code) + 1).strftime("-%y%m%d")
    for quote in _QUOTES:
        if root.endswith(quote) and len(root) > len(quote):
            base = root[: -len(quote)].replace("XBT", "BTC")
            settle = "BTC" if quote in ("USD", "EUR") else quote
            return f"{base}/{quote}:{settle}{expiry}"
    if expiry:
        base = root.replace("XBT", "BTC")
        return f"{base}/USD:{base}{expiry}"
    return None


class FakeBitMEX(FakeExchange):
    """``push(symbol, ...)`` sends a ``quote`` insert and an ``instrument`` update.

    Unknown tables and rejected symbols get the real server's 400 errors (one per refused
    argument, echoing the request).  The instrument partial reports the settle currency of the
    fake's listing (``ETHUSD`` is a quanto settling in ``XBt``), which the decoder checks.
    """

    name = "bitmex"
    path = "/realtime"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The (table, native symbol) subscriptions of each open connection.
        self.tables: dict[FakeConnection, set[tuple[str, str]]] = {}
        #: The instrument row each connection last saw per native symbol (updates are diffs).
        self._seen: dict[FakeConnection, dict[str, dict[str, Any]]] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return f"Unknown or expired symbol: {native(symbol)}."

    async def on_connect(self, conn: FakeConnection) -> None:
        now = _iso(time.time())
        remaining = max(0, 60 - self.connection_count)
        welcome = {
            "info": "Welcome to the BitMEX Realtime API.",
            "version": "2021-07-14T01:26:29.000Z",
            "timestamp": now,
            "docs": "https://www.bitmex.com/app/wsAPI",
            "limit": {"remaining": remaining},
        }
        await conn.send(_dump(welcome))

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if message == "ping":
            self.keepalives += 1
            await conn.send("pong")
            return
        if not isinstance(message, dict) or message.get("op") not in ("subscribe", "unsubscribe"):
            await conn.send(
                _dump({"status": 400, "error": "Unknown or empty op", "meta": {}, "request": message})
            )
            return
        op = message["op"]
        tables = self.tables.setdefault(conn, set())
        for arg in message.get("args", []):
            table, _, name = str(arg).partition(":")
            symbol = unified(name)
            if table not in TABLES:
                error = f"Unknown table: {table}"
            elif symbol is None or symbol in self.rejected:
                reason = self.rejected.get(symbol or "", f"Unknown or expired symbol: {name}.")
                error = f"{reason} Please see the documentation at https://www.bitmex.com/app/wsAPI."
            else:
                error = ""
            if error:
                await conn.send(_dump({"status": 400, "error": error, "meta": {}, "request": message}))
                continue
            assert symbol is not None
            if op == "subscribe":
                tables.add((table, name))
                conn.subscribe(symbol)
            else:
                tables.discard((table, name))
                if not any(n == name for _, n in tables):
                    conn.unsubscribe(symbol)
            await conn.send(_dump({"success": True, op: arg, "request": message}))
            if op == "subscribe":
                await conn.send(self._partial(conn, table, name, self.state(symbol)))

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        name = native(symbol)
        frames = [_dump({"table": "quote", "action": "insert", "data": [self._quote_row(name, state)]})]
        update = self._instrument_diff(conn, name, state)
        if update:
            frames.append(_dump({"table": "instrument", "action": "update", "data": [update]}))
        return frames

    def bench_frames(self, symbols: list[str], count: int) -> tuple[list[str], Sequence[str | bytes]]:
        """Partials first: the decoder merges instrument updates only onto a partial."""
        setup = [
            self._partial(FakeConnection.detached(self, symbols), table, native(s), self.state(s))
            for s in symbols
            for table in TABLES
        ]
        return setup, super().bench_frames(symbols, count)[1]

    # -- rows ------------------------------------------------------------------------------

    def _partial(self, conn: FakeConnection, table: str, name: str, state: dict[str, float]) -> str:
        if table == "quote":
            row = self._quote_row(name, state)
            keys: list[str] = []
        else:
            row = self._instrument_row(name, state)
            self._seen.setdefault(conn, {})[name] = dict(row)
            keys = ["symbol"]
        return _dump(
            {"table": table, "action": "partial", "keys": keys, "filter": {"symbol": name}, "data": [row]}
        )

    @staticmethod
    def _quote_row(name: str, state: dict[str, float]) -> dict[str, Any]:
        return {
            "timestamp": _iso(state.get("ts", time.time())),
            "symbol": name,
            "bidSize": state["bid_size"],
            "bidPrice": state["bid"],
            "askPrice": state["ask"],
            "askSize": state["ask_size"],
        }

    @staticmethod
    def _instrument_row(name: str, state: dict[str, float]) -> dict[str, Any]:
        """The row BitMEX lists: perpetuals fund every 8 h, dated futures expire at noon UTC
        and have no funding, spot pairs have a mark price only."""
        parts = market(unified(name) or "")
        base, quote, settle = parts.base, parts.quote, parts.settle or ""
        last = state["last"]
        perpetual, future = parts.perpetual, parts.expiry is not None
        expiry = datetime.strptime(f"{parts.expiry}12", "%y%m%d%H").replace(tzinfo=UTC) if future else None
        return {
            "symbol": name,
            "rootSymbol": base.replace("BTC", "XBT"),
            "state": "Open",
            "typ": "FFCCSX" if future else "FFWCSX" if settle else "IFXXXP",
            "expiry": _iso(expiry.timestamp()) if expiry else None,
            "underlying": base.replace("BTC", "XBT"),
            "quoteCurrency": quote,
            "settlCurrency": _UNITS.get(settle or quote, settle or quote),
            "isInverse": settle == base,
            "isQuanto": settle not in (base, quote, ""),
            "fundingTimestamp": _iso(state["next_funding"]) if perpetual else None,
            "fundingInterval": _EIGHT_HOURS if perpetual else None,
            "fundingRate": state["funding_rate"] if perpetual else None,
            "lastPrice": last,
            "highPrice": state["high"],
            "lowPrice": state["low"],
            "prevPrice24h": round(last - state["change"], 8),
            "lastChangePcnt": round(state["change_pct"] / 100.0, 4),
            "homeNotional24h": state["volume"],
            "foreignNotional24h": state["volume"] * last,
            "bidPrice": state["bid"],
            "askPrice": state["ask"],
            "midPrice": (state["bid"] + state["ask"]) / 2,
            "openInterest": state.get("open_interest"),
            "markPrice": state.get("mark", last),
            "indicativeSettlePrice": state.get("index"),
            "timestamp": _iso(state.get("ts", time.time())),
        }

    def _instrument_diff(self, conn: FakeConnection, name: str, state: dict[str, float]) -> dict[str, Any]:
        """The fields that changed since this connection's last row, as BitMEX sends them."""
        row = self._instrument_row(name, state)
        seen = self._seen.setdefault(conn, {})
        previous = seen.get(name, {})
        seen[name] = row
        changed = {k: v for k, v in row.items() if k != "timestamp" and previous.get(k) != v}
        return {"symbol": name, **changed, "timestamp": row["timestamp"]} if changed else {}
