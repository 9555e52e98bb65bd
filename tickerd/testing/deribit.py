"""A fake Deribit JSON-RPC server (``/ws/api/v2``) speaking the ``ticker.{instrument}.{interval}``
channels.

It keeps the rules a client must follow and the habits a client must survive:

* every request is JSON-RPC 2.0 with an ``id`` (a request without one is refused with an error
  and recorded in :attr:`FakeExchange.violations`), one request a message;
* ``public/set_heartbeat`` (``interval`` at least 10 s) starts ``test_request`` heartbeats every
  interval; one still unanswered by ``public/test`` when the next is due closes the connection
  (recorded as a violation), as Deribit closes it;
* ``public/subscribe`` answers with the channels it subscribed: an unknown instrument (or a
  rejected one) is left out of the list without an error; ``raw`` is refused the same way, as
  it needs an authorised connection; a subscribed channel gets the current ticker at once;
* numbers are JSON numbers, ``timestamp`` in milliseconds, perpetuals carry ``current_funding``
  and ``funding_8h``; the fake's listing is every inverse and linear perpetual and future.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import trio

from tickerd.exchanges.deribit import MONTHS, instrument
from tickerd.testing.server import FakeConnection, FakeExchange

#: ``ticker.{instrument}.{interval}``; the intervals public connections may use.
_CHANNEL = re.compile(r"^ticker\.(?P<instrument>[A-Z0-9_-]+)\.(?P<interval>raw|100ms|agg2)$")
_PUBLIC_INTERVALS = ("100ms", "agg2")
#: ``BTC-PERPETUAL``, ``BTC_USDC-PERPETUAL``, ``BTC-25DEC26``, ``BTC_USDC-25DEC26``.
_INSTRUMENT = re.compile(
    r"^(?P<base>[A-Z0-9]+)(?:_(?P<quote>[A-Z0-9]+))?-"
    r"(?:PERPETUAL|(?P<day>[1-9][0-9]?)(?P<month>[A-Z]{3})(?P<year>[0-9]{2}))$"
)
#: The heartbeat a client must answer with ``public/test``.
_TEST_REQUEST = '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'
#: What Deribit's ``public/test`` answers.
_VERSION = {"version": "1.2.26"}


def unified(name: str) -> str | None:
    """The fake's listing, instrument name → unified symbol; ``None`` for what it does not list
    (options, spot, malformed names)."""
    match = _INSTRUMENT.match(name)
    if match is None:
        return None
    base, quote = match["base"], match["quote"]
    settle = base if quote is None else quote
    symbol = f"{base}/{quote or 'USD'}:{settle}"
    if match["month"] is None:
        return symbol
    if match["month"] not in MONTHS:
        return None
    return f"{symbol}-{match['year']}{MONTHS.index(match['month']) + 1:02d}{int(match['day']):02d}"


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


class _Session:
    """What the fake remembers about one client connection."""

    def __init__(self) -> None:
        #: The channel each subscribed symbol was subscribed by (its interval is the client's).
        self.channels: dict[str, str] = {}
        #: Set once the client asked for heartbeats, with their interval.
        self.heartbeat = trio.Event()
        self.interval = 0.0
        #: A test request went out and no ``public/test`` came back yet.
        self.awaiting_test = False


class FakeDeribit(FakeExchange):
    name = "deribit"
    path = "/ws/api/v2"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sessions: dict[FakeConnection, _Session] = {}

    def default_reject_reason(self, symbol: str) -> str:
        return f"{instrument(symbol)} is not listed"

    def _session(self, conn: FakeConnection) -> _Session:
        return self._sessions.setdefault(conn, _Session())

    # -- connection ------------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        """Heartbeats once the client asks for them: a test request every interval, and the
        connection closed when the previous one is still unanswered."""
        session = self._session(conn)
        try:
            await session.heartbeat.wait()
            while not conn.closed:
                await trio.sleep(session.interval)
                if session.awaiting_test:
                    self.violations.append("a test_request went unanswered")
                    await conn.close(1000, "heartbeat test_request not answered")
                    return
                if not self.silent:
                    session.awaiting_test = True
                    await conn.send(_TEST_REQUEST)
        finally:
            self._sessions.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "id" not in message:
            self.violations.append(f"not a JSON-RPC 2.0 request with an id: {message!r}")
            await self._error(conn, None, -32600, "Invalid Request")
            return
        request_id, method = message["id"], message.get("method")
        params = message.get("params") or {}
        session = self._session(conn)
        if method == "public/set_heartbeat":
            interval = params.get("interval")
            if not isinstance(interval, int | float) or interval < 10:
                await self._error(conn, request_id, -32602, "Invalid params", {"param": "interval"})
                return
            session.interval = float(interval)
            session.heartbeat.set()
            await self._result(conn, request_id, "ok")
        elif method == "public/test":
            if session.awaiting_test:
                session.awaiting_test = False
                self.keepalives += 1
            await self._result(conn, request_id, _VERSION)
        elif method in ("public/subscribe", "public/unsubscribe"):
            channels = params.get("channels")
            if not isinstance(channels, list):
                await self._error(conn, request_id, -32602, "Invalid params", {"param": "channels"})
                return
            await self._subscription(conn, session, request_id, method == "public/subscribe", channels)
        else:
            await self._error(conn, request_id, -32601, "Method not found")

    async def _subscription(
        self,
        conn: FakeConnection,
        session: _Session,
        request_id: object,
        subscribe: bool,
        channels: list[Any],
    ) -> None:
        """Answer with the channels (un)subscribed, leaving out what Deribit would not serve;
        a new subscription gets its ticker at once."""
        done: list[str] = []
        for name in channels:
            match = _CHANNEL.match(str(name))
            symbol = unified(match["instrument"]) if match else None
            if match is None or symbol is None or symbol in self.rejected:
                continue
            if match["interval"] not in _PUBLIC_INTERVALS:
                self.violations.append(f"{name}: raw needs an authorised connection")
                continue
            done.append(match.string)
            if subscribe:
                session.channels[symbol] = match.string
                conn.subscribe(symbol)
            elif session.channels.get(symbol) == match.string:
                del session.channels[symbol]
                conn.unsubscribe(symbol)
        await self._result(conn, request_id, done)
        if subscribe:
            for name in done:
                symbol = unified(name.split(".")[1])
                assert symbol is not None
                for frame in self.ticker_frames(conn, symbol, self.state(symbol)):
                    await conn.send(frame)

    @staticmethod
    async def _result(conn: FakeConnection, request_id: object, result: Any) -> None:
        now = int(time.time() * 1e6)
        answer = {"jsonrpc": "2.0", "id": request_id, "result": result}
        await conn.send(_dump(answer | {"usIn": now, "usOut": now + 40, "usDiff": 40, "testnet": False}))

    @staticmethod
    async def _error(
        conn: FakeConnection, request_id: object, code: int, message: str, data: dict[str, Any] | None = None
    ) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        await conn.send(_dump({"jsonrpc": "2.0", "id": request_id, "error": error, "testnet": False}))

    # -- frames ----------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        session = self._sessions.get(conn)
        name = instrument(symbol)
        channel = session.channels.get(symbol) if session else None
        data: dict[str, Any] = {
            "timestamp": int(state.get("ts", time.time()) * 1000),
            "stats": {
                "volume_usd": round(state["volume"] * state["last"]),
                "volume": state["volume"],
                "price_change": state["change_pct"],
                "low": state["low"],
                "high": state["high"],
            },
            "state": "open",
            "settlement_price": state["last"] - state["change"],
            "open_interest": state["open_interest"],
            "min_price": round(state["mark"] * 0.985, 2),
            "max_price": round(state["mark"] * 1.015, 2),
            "mark_price": state["mark"],
            "last_price": state["last"],
            "instrument_name": name,
            "index_price": state["index"],
            "estimated_delivery_price": state["index"],
            "best_bid_price": state["bid"],
            "best_bid_amount": state["bid_size"],
            "best_ask_price": state["ask"],
            "best_ask_amount": state["ask_size"],
        }
        if name.endswith("-PERPETUAL"):
            data |= {
                "interest_value": 1.7362511643080387,
                "funding_8h": state["funding_rate"],
                "current_funding": state["funding_rate"],
            }
        params = {"channel": channel or f"ticker.{name}.100ms", "data": data}
        return [_dump({"jsonrpc": "2.0", "method": "subscription", "params": params})]
