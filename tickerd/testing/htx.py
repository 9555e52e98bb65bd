"""The HTX websocket protocol as a fake server speaks it, for HTX's spot and derivatives fakes.

* every frame the server sends is gzip-compressed JSON in a binary frame (:func:`gzipped`);
* the server pings every ``ping_interval`` seconds (``{"ping":<ms>}``); a pong with the same
  number counts as a keepalive; a connection that leaves :data:`MISSED_PINGS` pings in a row
  unanswered is closed, as HTX closes it, and recorded as a violation;
* ``{"sub":topic,"id":…}`` is acknowledged (``status: ok``, ``subbed``), a topic the fake does not
  list (or a ``reject``-ed symbol's) refused with ``bad-request``/``invalid topic``;
  ``{"unsub":…}`` likewise, an ``unsub`` of a topic not subscribed refused too.

Subclasses map topics to symbols (:meth:`FakeHtx.topic_symbol`) and build the data frames; a
derivatives fake whose connections of another path speak HTX's notification protocol overrides
the four protocol hooks (:meth:`FakeHtx.ping`, :meth:`FakeHtx.pong`, :meth:`FakeHtx.request`,
:meth:`FakeHtx.answer`) for them.
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


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeHtx(FakeExchange):
    """The HTX framing, heartbeat and request protocol; subclasses name the topics."""

    def __init__(self, *, ping_interval: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ping_interval = ping_interval
        #: Per connection, the topics it subscribed.
        self.topics: dict[FakeConnection, set[str]] = {}
        #: Per connection, the pings sent and not answered yet, oldest first.
        self._pending: dict[FakeConnection, list[object]] = {}

    @abc.abstractmethod
    def topic_symbol(self, topic: str) -> str | None:
        """The unified symbol ``topic`` carries, or ``None`` for a topic the venue does not list."""

    def default_reject_reason(self, symbol: str) -> str:
        return "invalid topic"

    # -- protocol hooks (the market-data websocket's) ----------------------------------------

    def ping(self, conn: FakeConnection) -> tuple[object, bytes]:
        """The value a pong must echo, and the ping frame carrying it."""
        ping = now_ms()
        return ping, gzipped({"ping": ping})

    def pong(self, conn: FakeConnection, message: dict[str, Any]) -> object | None:
        """The value ``message`` echoes if it is a pong, else ``None``."""
        return message.get("pong")

    def request(self, conn: FakeConnection, message: dict[str, Any]) -> tuple[bool, str, Any] | None:
        """``(subscribe, topic, request id)`` of a ``sub``/``unsub`` request, else ``None``."""
        for verb in ("sub", "unsub"):
            if verb in message:
                return verb == "sub", str(message[verb]), message.get("id")
        return None

    def answer(self, conn: FakeConnection, subscribe: bool, topic: str, request_id: Any, ok: bool) -> bytes:
        """The acknowledgement of a request (``ok``), or its refusal; ``topic`` is ``""`` for a
        message that is no request at all."""
        if ok:
            done = "subbed" if subscribe else "unsubbed"
            return gzipped({"id": request_id, "status": "ok", done: topic, "ts": now_ms()})
        reason = f"invalid topic {topic}" if topic else "invalid message"
        error = {"status": "error", "err-code": "bad-request", "err-msg": reason, "ts": now_ms()}
        return gzipped(error if request_id is None else {"id": request_id, **error})

    # -- the protocol ------------------------------------------------------------------------

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
                value, frame = self.ping(conn)
                pending.append(value)
                await conn.send(frame)
        finally:
            self._pending.pop(conn, None)
            self.topics.pop(conn, None)

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        if not isinstance(message, dict):
            await conn.send(self.answer(conn, True, "", None, ok=False))
            return
        pong = self.pong(conn, message)
        if pong is not None:
            pending = self._pending.get(conn, [])
            if pong in pending:
                self.keepalives += 1
                pending.clear()
            return
        request = self.request(conn, message)
        if request is None:
            await conn.send(self.answer(conn, True, "", message.get("id"), ok=False))
            return
        subscribe, topic, request_id = request
        symbol = self.topic_symbol(topic)
        topics = self.topics.setdefault(conn, set())
        ok = symbol is not None and symbol not in self.rejected and (subscribe or topic in topics)
        await conn.send(self.answer(conn, subscribe, topic, request_id, ok))
        if not ok or symbol is None:
            return
        if subscribe:
            topics.add(topic)
            conn.subscribe(symbol)
            return
        topics.discard(topic)
        if not any(self.topic_symbol(t) == symbol for t in topics):
            conn.unsubscribe(symbol)

    def subscribed_topics(self, conn: FakeConnection) -> set[str] | None:
        """The topics ``conn`` subscribed; ``None`` for a detached connection (all of them)."""
        return self.topics.get(conn) if hasattr(conn, "ws") else None
