"""The HTX websocket protocol as a fake server speaks it, for HTX's spot and derivatives fakes.

* every frame the server sends is gzip-compressed JSON in a binary frame (:func:`gzipped`);
* the server pings every ``ping_interval`` seconds (``{"ping":<ms>}``); a pong with the same
  number counts as a keepalive; a connection that leaves :data:`MISSED_PINGS` pings in a row
  unanswered is closed, as HTX closes it, and recorded as a violation;
* ``{"sub":topic,"id":…}`` is acknowledged (``status: ok``, ``subbed``), a topic the fake does not
  list (or a ``reject``-ed symbol's) refused with ``bad-request``/``invalid topic``;
  ``{"unsub":…}`` likewise, an ``unsub`` of a topic not subscribed refused too.

Subclasses map topics to symbols (:meth:`FakeHtx.topic_symbol`) and build the data frames.
"""

from __future__ import annotations

import abc
import gzip
import time
from typing import Any

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

#: Pings left unanswered in a row after which HTX closes the connection.
MISSED_PINGS = 5


def gzipped(value: Any) -> bytes:
    """``value`` as HTX sends it: JSON, gzip-compressed."""
    return gzip.compress(orjson.dumps(value), compresslevel=1, mtime=0)


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeHtx(FakeExchange):
    """The HTX framing, heartbeat and request protocol; subclasses name the topics."""

    def __init__(self, *, ping_interval: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        #: Per connection, the topics it subscribed.
        self.topics: dict[FakeConnection, set[str]] = {}
        #: Per connection, the pings sent and not answered yet, oldest first.
        self._pending: dict[FakeConnection, list[int]] = {}

    @abc.abstractmethod
    def topic_symbol(self, topic: str) -> str | None:
        """The unified symbol ``topic`` carries, or ``None`` for a topic the venue does not list."""

    def default_reject_reason(self, symbol: str) -> str:
        return "invalid topic"

    async def on_connect(self, conn: FakeConnection) -> None:
        self.topics[conn] = set()
        pending = self._pending[conn] = []
        try:
            while not conn.closed:
                await trio.sleep(self.ping_interval)
                if len(pending) >= MISSED_PINGS:
                    self.violations.append(f"{MISSED_PINGS} pings unanswered: connection closed")
                    await conn.close(1000, "heartbeat timeout")
                    return
                ping = _now_ms()
                pending.append(ping)
                await conn.send(gzipped({"ping": ping}))
        finally:
            self._pending.pop(conn, None)
            self.topics.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            await conn.send(self._error(None, "bad-request", "invalid message"))
            return
        if "pong" in message:
            pending = self._pending.get(conn, [])
            if message["pong"] in pending:
                self.keepalives += 1
                pending.clear()
            return
        request_id = message.get("id")
        for verb, done in (("sub", "subbed"), ("unsub", "unsubbed")):
            if verb in message:
                await self._request(conn, verb == "sub", str(message[verb]), request_id, done)
                return
        await conn.send(self._error(request_id, "bad-request", "invalid message"))

    async def _request(
        self, conn: FakeConnection, subscribe: bool, topic: str, request_id: Any, done: str
    ) -> None:
        symbol = self.topic_symbol(topic)
        topics = self.topics.setdefault(conn, set())
        if symbol is None or symbol in self.rejected or (not subscribe and topic not in topics):
            await conn.send(self._error(request_id, "bad-request", f"invalid topic {topic}"))
            return
        await conn.send(gzipped({"id": request_id, "status": "ok", done: topic, "ts": _now_ms()}))
        if subscribe:
            topics.add(topic)
            conn.subscribe(symbol)
            return
        topics.discard(topic)
        if not any(self.topic_symbol(t) == symbol for t in topics):
            conn.unsubscribe(symbol)

    def _error(self, request_id: Any, code: str, message: str) -> bytes:
        error = {"status": "error", "err-code": code, "err-msg": message, "ts": _now_ms()}
        return gzipped(error if request_id is None else {"id": request_id, **error})

    def subscribed_topics(self, conn: FakeConnection) -> set[str] | None:
        """The topics ``conn`` subscribed; ``None`` for a detached connection (all of them)."""
        return self.topics.get(conn) if hasattr(conn, "ws") else None
