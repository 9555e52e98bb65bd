"""The machinery every fake exchange shares: a trio-websocket server on 127.0.0.1.

A fake speaks one exchange's real protocol (subclasses format real frames) and can be told
to misbehave, every fake the same way, so that one conformance suite drives them all: reject a
symbol (:meth:`FakeExchange.reject`), drop every connection (:meth:`FakeExchange.drop`), go
silent (:attr:`FakeExchange.silent`), send junk (:meth:`FakeExchange.send_raw`), ask clients to
reconnect (:meth:`FakeExchange.request_reconnect`), close connections at a forced lifetime
(:attr:`FakeExchange.lifetime`), refuse new connections (:attr:`FakeExchange.refuse`).  What a
client did is recorded the same way too: subscription changes (:attr:`FakeExchange.changes`),
keepalive duties performed (:attr:`FakeExchange.keepalives`), protocol rules broken
(:attr:`FakeExchange.violations`).  Tests wait on it with
:meth:`FakeExchange.wait_until` (a condition re-checked on every change), never with sleeps.
"""

from __future__ import annotations

import math
import random
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import orjson
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from tickerd.broadcast import Broadcast


class FakeConnection:
    """One client connection as the fake sees it."""

    def __init__(self, fake: FakeExchange, ws: WebSocketConnection) -> None:
        self.fake = fake
        self.ws = ws
        #: Unified symbols this client is subscribed to (per the fake's protocol).
        self.subscribed: set[str] = set()
        self.opened_at = trio.current_time()
        self.closed = False

    @classmethod
    def detached(cls, fake: FakeExchange, symbols: list[str]) -> FakeConnection:
        """A connection with no socket, subscribed to ``symbols`` (frame generation only)."""
        conn = cls.__new__(cls)
        conn.fake, conn.subscribed, conn.opened_at, conn.closed = fake, set(symbols), 0.0, True
        return conn

    def subscribe(self, symbol: str) -> None:
        """Record that this client is now subscribed to ``symbol`` (the fake's protocol said so)."""
        if symbol not in self.subscribed:
            self.subscribed.add(symbol)
            self.fake.changes.append((self, "subscribe", symbol))

    def unsubscribe(self, symbol: str) -> None:
        """Record that this client is no longer subscribed to ``symbol``."""
        if symbol in self.subscribed:
            self.subscribed.discard(symbol)
            self.fake.changes.append((self, "unsubscribe", symbol))

    async def send(self, text: str | bytes) -> None:
        """Send unless the fake went silent; a vanished client is not an error here."""
        if self.fake.silent or self.closed:
            return
        try:
            await self.ws.send_message(text)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    async def drop(self) -> None:
        """Close the TCP connection without a websocket close handshake."""
        self.closed = True
        await self.ws._close_stream()

    async def close(self, code: int, reason: str) -> None:
        """Close with a websocket close frame, as a server that means it does."""
        if not self.closed:
            self.closed = True
            await self.ws.aclose(code, reason)


class FakeExchange:
    """Base fake server.  Subclasses implement the protocol hooks."""

    name: ClassVar[str]
    #: The URL path the real exchange serves its feed on (``/v2``, ``/ws``…).
    path: ClassVar[str] = "/"

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, seed: int = 1) -> None:
        self.ssl_context = ssl_context
        self.connections: list[FakeConnection] = []
        self.connection_count = 0
        #: When (trio clock) each connection attempt arrived, refused ones included.
        self.attempt_times: list[float] = []
        #: Every message clients sent, decoded when it was JSON, and when (trio clock) it came.
        self.received: list[Any] = []
        self.received_times: list[float] = []
        #: symbol → reason: subscriptions to these are refused the exchange's way (or, where
        #: the exchange accepts unknown symbols silently, accepted and never served).
        self.rejected: dict[str, str] = {}
        #: Every subscription change a client made, in order: (connection, op, symbol).
        self.changes: list[tuple[FakeConnection, str, str]] = []
        #: Protocol rules a client broke (fakes that check a rule record it here).
        self.violations: list[str] = []
        #: Keepalive duties clients performed the exchange's way: their pings answered, the
        #: server's pings answered, heartbeats sent because a client asked for them.
        self.keepalives = 0
        #: Close every connection this many seconds after it opened (Binance's 24 h limit).
        self.lifetime: float | None = None
        self.silent = False
        self.refuse = False
        #: Per-symbol market state (unified field names); pushes update and send it.
        self.market: dict[str, dict[str, float]] = {}
        self.port = 0
        self._rng = random.Random(seed)
        self._changed = Broadcast[None]()

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[FakeExchange] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``nursery.start(fake.serve)`` returns once listening."""
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                trio_websocket.serve_websocket,
                self._handle,
                "127.0.0.1",
                self.port,
                self.ssl_context,
            )
            self.port = server.port
            task_status.started(self)

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        host = "localhost" if self.ssl_context else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}{self.path}"

    def endpoints(self) -> dict[str, str]:
        """The ``[exchanges.NAME]`` settings that point tickerd at this fake: its ``url``, and
        whatever else its exchange is reached by (KuCoin's ``rest_url``)."""
        return {"url": self.url}

    # -- waiting ---------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake everything waiting in :meth:`wait_until`."""
        self._changed.fire(None)

    async def wait_until(self, predicate: Callable[[], object]) -> None:
        """Return once ``predicate()`` is true; re-checked on every change to the fake."""
        while not predicate():
            await self._changed.wait()

    def subscribers(self, symbol: str) -> list[FakeConnection]:
        return [c for c in self.connections if symbol in c.subscribed and not c.closed]

    def is_subscribed(self, symbol: str) -> bool:
        return bool(self.subscribers(symbol))

    # -- driving ---------------------------------------------------------------------------

    def reject(self, symbol: str, reason: str | None = None) -> None:
        self.rejected[symbol] = reason or self.default_reject_reason(symbol)

    async def push(self, symbol: str, **fields: float) -> int:
        """Update ``symbol``'s market state with ``fields`` and send it to its subscribers.

        Returns how many connections it was sent to.
        """
        state = self.state(symbol)
        state.update(fields)
        targets = self.subscribers(symbol)
        for conn in targets:
            for frame in self.ticker_frames(conn, symbol, state):
                await conn.send(frame)
        return len(targets)

    async def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as-is to every client (junk, malformed or unexpected frames)."""
        for conn in list(self.connections):
            await conn.send(frame)

    async def drop(self) -> None:
        """Abruptly drop every connection."""
        for conn in list(self.connections):
            await conn.drop()

    async def close_all(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every connection with a websocket close frame."""
        for conn in list(self.connections):
            await conn.close(code, reason)

    async def request_reconnect(self, grace: float = 5.0) -> None:
        """Ask every client to reconnect, the exchange's way, and close the connections that
        are still open ``grace`` seconds later (what a server does before maintenance or a
        restart).  Exchanges without such a request raise ``NotImplementedError``."""
        doomed = [conn for conn in self.connections if not conn.closed]
        for conn in doomed:
            await conn.send(self.reconnect_frame(conn))
        await trio.sleep(grace)
        for conn in doomed:
            await conn.close(1001, "reconnect requested")

    def state(self, symbol: str) -> dict[str, float]:
        """The symbol's market state, invented plausibly on first use.

        Perpetuals and futures (``BASE/QUOTE:SETTLE…``) also have ``mark``, ``index``,
        ``funding_rate`` (one period's rate), ``next_funding`` (epoch s, the next 8 h mark) and
        ``open_interest`` (in the venue's unit); fakes send them where their venue does.
        """
        if symbol not in self.market:
            price = round(self._rng.uniform(1, 60000), 2)
            derivative = {}
            if ":" in symbol:
                derivative = {
                    "mark": round(price * 1.00002, 2),
                    "index": round(price * 0.99998, 2),
                    "funding_rate": 0.0001,
                    "next_funding": (time.time() // 28800 + 1) * 28800,
                    "open_interest": 12345.0,
                }
            self.market[symbol] = derivative | {
                "last": price,
                "bid": round(price * 0.9999, 2),
                "ask": round(price * 1.0001, 2),
                "bid_size": 1.5,
                "ask_size": 2.5,
                "volume": 1234.5,
                "high": round(price * 1.02, 2),
                "low": round(price * 0.98, 2),
                "change": round(price * 0.01, 2),
                "change_pct": 1.0,
            }
        return self.market[symbol]

    def wiggle(self, symbol: str) -> dict[str, float]:
        """Move a symbol's price a little (the demo's lively synthetic market)."""
        state = self.state(symbol)
        last = max(0.0001, state["last"] * math.exp(self._rng.gauss(0, 0.0005)))
        spread = last * 0.0001
        state.update(
            last=round(last, 4),
            bid=round(last - spread, 4),
            ask=round(last + spread, 4),
            high=max(state["high"], last),
            low=min(state["low"], last),
        )
        if "mark" in state:
            state.update(mark=round(last * 1.00002, 4), index=round(last * 0.99998, 4))
        return state

    async def ping_forever(self, conn: FakeConnection, interval: float) -> None:
        """Send ``conn`` a websocket ping every ``interval`` seconds, as exchanges whose
        keepalive is the server's protocol ping do (Binance, bitFlyer); each answered ping is a
        keepalive performed.  Returns when the client is gone."""
        while True:
            await trio.sleep(interval)
            if self.silent or conn.closed:
                continue
            try:
                await conn.ws.ping()  # returns once the client's pong arrived
            except Exception:  # noqa: BLE001 - a vanished client simply stops being pinged
                return
            self.keepalives += 1
            self.notify()

    # -- protocol hooks --------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        """Greet the client and run per-connection background duties (heartbeats, pings)."""

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        """Answer one client message (already JSON-decoded when it was JSON)."""

    def ticker_frames(
        self, conn: FakeConnection, symbol: str, state: dict[str, float]
    ) -> Sequence[str | bytes]:
        """The frames that carry ``state`` for ``symbol`` to ``conn`` (text, or binary where the
        exchange sends binary frames: HTX's gzip)."""
        raise NotImplementedError

    def default_reject_reason(self, symbol: str) -> str:
        return f"unknown symbol {symbol}"

    def reconnect_frame(self, conn: FakeConnection) -> str:
        """The frame by which the exchange asks ``conn``'s client to reconnect."""
        raise NotImplementedError(f"{self.name} has no reconnect request")

    def bench_frames(
        self, symbols: list[str], count: int
    ) -> tuple[Sequence[str | bytes], Sequence[str | bytes]]:
        """Frames for decode benchmarks: ``(setup, updates)``.

        ``setup`` holds what a decoder must see first (acks that assign channel ids,
        snapshots that deltas build on); ``updates`` holds ``count`` ticker frames cycling
        through ``symbols`` with moving prices, exactly as the exchange sends them.
        """
        conn = FakeConnection.detached(self, symbols)
        updates: list[str | bytes] = []
        for i in range(count):
            symbol = symbols[i % len(symbols)]
            updates.extend(self.ticker_frames(conn, symbol, self.wiggle(symbol)))
        return [], updates[:count]

    # -- server ----------------------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        self.attempt_times.append(trio.current_time())
        self.notify()
        if self.refuse:
            await request.reject(503, body=b"refusing connections")
            return
        ws = await request.accept()
        conn = FakeConnection(self, ws)
        self.connections.append(conn)
        self.connection_count += 1
        self.notify()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.on_connect, conn)
                if self.lifetime is not None:
                    nursery.start_soon(self._expire, conn, self.lifetime)
                await self._read(conn)
                nursery.cancel_scope.cancel()
        finally:
            conn.closed = True
            self.connections.remove(conn)
            self.notify()

    async def _expire(self, conn: FakeConnection, lifetime: float) -> None:
        await trio.sleep(lifetime)
        await conn.close(1001, "connection lifetime reached")

    async def _read(self, conn: FakeConnection) -> None:
        while True:
            try:
                raw = await conn.ws.get_message()
            except (ConnectionClosed, trio.BrokenResourceError):
                return
            try:
                message: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                message = raw
            self.received.append(message)
            self.received_times.append(trio.current_time())
            await self.on_message(conn, message)
            self.notify()
