"""What every fake Gate.io API v4 websocket server shares: requests answered by id, errors,
``<prefix>.ping`` answered with ``<prefix>.pong``, the push envelope (see
:mod:`tickerd.exchanges.gate_v4` for the protocol and its documentation).

It keeps the rules a client must follow: a request carries an integer ``time`` and an ``id``,
a ``channel`` of this server's prefix and a ``payload`` list (a request breaking one is
refused with error code 1, "invalid argument struct", and recorded in
:attr:`FakeExchange.violations`).  A request naming a pair the fake does not list (or a
``reject``-ed one) is refused whole with error code 2, "invalid argument", and subscribes none
of its pairs: the docs say neither what Gate answers then nor whether the other pairs of such a
request subscribe, and this is the strict reading.  The message text is the fake's own.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import orjson
import trio

from tickerd.exchanges.gate_v4 import native
from tickerd.testing.server import FakeConnection, FakeExchange


def dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def decimal(value: float) -> str:
    """A number as Gate writes prices and amounts: a decimal string, integers without ``.0``."""
    return str(int(value)) if value.is_integer() else repr(value)


def envelope(channel: str, event: str, **fields: Any) -> dict[str, Any]:
    """The fields every server frame opens with."""
    now = time.time()
    return {"time": int(now), "time_ms": int(now * 1000), "channel": channel, "event": event} | fields


class FakeGateV4(FakeExchange):
    """Subclasses name their :attr:`prefix`, :attr:`channels` (``tickers`` first, then
    ``book_ticker``) and listing (:meth:`unified`), and format their ``tickers`` push
    (:meth:`tickers_result`) and book sizes (:meth:`size`); the book push is the same on both
    markets.

    A symbol counts as subscribed (:meth:`FakeConnection.subscribe`) once it holds every channel
    of :attr:`channels`, and as unsubscribed from its first channel's unsubscribe on: a push in
    between would carry only part of a ticker.
    """

    #: ``spot`` or ``futures``.
    prefix: ClassVar[str]
    #: The public channels this fake serves: ``tickers``, then ``book_ticker``.
    channels: ClassVar[tuple[str, ...]]
    #: The order book update id a symbol's first book push follows.
    first_update_id: ClassVar[int]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Per connection: symbol → the channels it is subscribed to there.
        self._channels: dict[FakeConnection, dict[str, set[str]]] = {}
        #: Each symbol's order book update id, moved on by every book push.
        self._update_ids: dict[str, int] = {}

    def unified(self, name: str) -> str | None:
        """The fake's listing, native name → unified symbol; ``None`` for what it does not list."""
        raise NotImplementedError

    def size(self, value: float) -> Any:
        """A book size as this market writes it."""
        raise NotImplementedError

    def tickers_result(self, name: str, state: dict[str, float]) -> Any:
        """The ``result`` of a ``tickers`` push carrying ``state`` for the symbol ``name``."""
        raise NotImplementedError

    def frame(self, channel: str, symbol: str, state: dict[str, float]) -> str:
        """One push of ``channel`` carrying ``state`` for ``symbol``."""
        name = native(symbol)
        if channel == self.channels[1]:
            update_id = self._update_ids.get(name, self.first_update_id) + 1
            self._update_ids[name] = update_id
            result = {
                "t": int(state.get("ts", time.time()) * 1000),
                "u": update_id,
                "s": name,
                "b": decimal(state["bid"]),
                "B": self.size(state["bid_size"]),
                "a": decimal(state["ask"]),
                "A": self.size(state["ask_size"]),
            }
            return dump(envelope(channel, "update", result=result))
        return dump(envelope(channel, "update", result=self.tickers_result(name, state)))

    async def on_connect(self, conn: FakeConnection) -> None:
        """Hold the connection's subscriptions while it lives."""
        self._channels[conn] = {}
        try:
            await trio.sleep_forever()
        finally:
            self._channels.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            self.violations.append(f"not a JSON object: {message!r}")
            return
        channel, event = message.get("channel"), message.get("event")
        if channel == f"{self.prefix}.ping":
            self.keepalives += 1
            await conn.send(dump(envelope(f"{self.prefix}.pong", "", error=None, result=None)))
            return
        payload = message.get("payload")
        if (
            not isinstance(message.get("time"), int)
            or "id" not in message
            or channel not in self.channels
            or event not in ("subscribe", "unsubscribe")
            or not isinstance(payload, list)
        ):
            self.violations.append(f"not a request of the protocol: {message!r}")
            await self._answer(conn, message, {"code": 1, "message": "invalid argument struct"})
            return
        symbols = [self.unified(str(name)) for name in payload]
        refused = [
            self.rejected.get(symbol or "") or f"unknown {name}"
            for name, symbol in zip(payload, symbols, strict=True)
            if symbol is None or symbol in self.rejected
        ]
        if refused:
            await self._answer(conn, message, {"code": 2, "message": "; ".join(refused)})
            return
        subscriptions = self._channels.setdefault(conn, {})
        for symbol in symbols:
            assert symbol is not None
            held = subscriptions.setdefault(symbol, set())
            if event == "subscribe":
                held.add(channel)
                if len(held) == len(self.channels):
                    conn.subscribe(symbol)
            else:
                held.discard(channel)
                conn.unsubscribe(symbol)
        await self._answer(conn, message, None)

    @staticmethod
    async def _answer(conn: FakeConnection, request: dict[str, Any], error: dict[str, Any] | None) -> None:
        answer = envelope(
            str(request.get("channel")),
            str(request.get("event")),
            payload=request.get("payload"),
            error=error,
            result={"status": "failed" if error else "success"},
        )
        if "id" in request:
            answer["id"] = request["id"]
        await conn.send(dump(answer))

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        """A push of each channel ``conn`` holds for ``symbol`` (every channel for a detached
        connection: benchmarks)."""
        held = self._channels.get(conn, {}).get(symbol, set(self.channels))
        return [self.frame(channel, symbol, state) for channel in self.channels if channel in held]
