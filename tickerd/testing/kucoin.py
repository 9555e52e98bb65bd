"""What KuCoin's fakes share: the ``bullet-public`` REST endpoint beside the websocket, the
token check and ``welcome`` on connect, ping/pong, and subscribe/unsubscribe answered by ``ack``
or ``error``.

The REST endpoint is a small HTTP/1.1 server on 127.0.0.1 (:attr:`FakeKucoin.rest_url`) that
hands out a fresh token with every answer, pointing at the fake's websocket, and can fail on
command (:attr:`FakeKucoin.bullet_fault`): ``"error"`` answers HTTP 500, ``"junk"`` answers 200
with a body that is not a token answer, ``"hangup"`` closes the connection without a word.  A
websocket client must bring a token the endpoint handed out (else it gets KuCoin's ``error``
and is closed, and the fake records a violation), and must wait for the ``welcome`` before it
subscribes.  A request naming several symbols (comma-separated) of which one is unknown or
:meth:`~FakeExchange.reject`-ed fails as a whole with one ``error``, as nothing in KuCoin's docs
promises more; a topic whose page documents one symbol (:attr:`FakeKucoin.single_symbol_topics`)
refuses a list.  Subclasses name the topics (:attr:`FakeKucoin.topics`, the last one accepting or
refusing a symbol), map symbols and build the data frames.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from tickerd.testing.server import FakeConnection, FakeExchange

#: The path of the token endpoint, as on KuCoin.
BULLET_PATH = "/api/v1/bullet-public"
#: KuCoin's ping times (ms), as its answers carry them today.
PING_INTERVAL = 18000
PING_TIMEOUT = 10000


class FakeKucoin(FakeExchange):
    #: Topic prefixes the fake serves; subscribing the last one subscribes the symbol (tickerd
    #: asks for it last).
    topics: ClassVar[tuple[str, ...]]
    #: Topics documented for one symbol a topic: a comma-separated list is a bad request.
    single_symbol_topics: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rest_port = 0
        #: ``None`` (answer), ``"error"``, ``"junk"`` or ``"hangup"``: see the module docstring.
        self.bullet_fault: str | None = None
        #: Every token handed out, in order, and the token each websocket connection came with.
        self.tokens: list[str] = []
        self.tokens_used: list[str] = []
        #: Token calls received, failed ones included, and when (trio clock).
        self.bullet_times: list[float] = []
        self._serial = itertools.count(1)
        #: Per connection: its ``(topic, native symbol)`` subscriptions, once it was welcomed.
        self._topics: dict[FakeConnection, set[tuple[str, str]]] = {}

    def native(self, symbol: str) -> str:
        raise NotImplementedError

    def unified(self, name: str) -> str | None:
        """The unified symbol of a native name, ``None`` for a name of no market."""
        raise NotImplementedError

    def default_reject_reason(self, symbol: str) -> str:
        return f"topic {self.topics[-1]}:{self.native(symbol)} is not found"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}{BULLET_PATH}"

    def endpoints(self) -> dict[str, str]:
        return super().endpoints() | {"rest_url": self.rest_url}

    async def serve(self, *, task_status: trio.TaskStatus[FakeExchange] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the websocket and the token endpoint until cancelled."""
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, self._http, 0)
            self.rest_port = listeners[0].socket.getsockname()[1]
            await nursery.start(super().serve)
            task_status.started(self)

    # -- the token endpoint ----------------------------------------------------------------

    async def _http(self, stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            self.bullet_times.append(trio.current_time())
            self.notify()
            method, target = request.split(b" ", 2)[:2]
            if self.bullet_fault == "hangup":
                return
            status, body = self._bullet(method.decode(), target.decode())
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            await stream.send_all(head.encode() + body)

    def _bullet(self, method: str, target: str) -> tuple[str, bytes]:
        if method != "POST" or target != BULLET_PATH:
            return "404 Not Found", b'{"code":"404000","msg":"Not Found"}'
        if self.bullet_fault == "error":
            return "500 Internal Server Error", b'{"code":"500000","msg":"Internal Server Error"}'
        if self.bullet_fault == "junk":
            return "200 OK", b"<html>maintenance</html>"
        token = f"fake-token-{next(self._serial)}"
        self.tokens.append(token)
        server = {
            "endpoint": self.url,
            "encrypt": bool(self.ssl_context),
            "protocol": "websocket",
            "pingInterval": PING_INTERVAL,
            "pingTimeout": PING_TIMEOUT,
        }
        return "200 OK", orjson.dumps(
            {"code": "200000", "data": {"token": token, "instanceServers": [server]}}
        )

    # -- the websocket ---------------------------------------------------------------------

    async def on_connect(self, conn: FakeConnection) -> None:
        query = parse_qs(urlsplit(str(conn.ws.path)).query)
        token = query.get("token", [""])[0]
        connect_id = query.get("connectId", [""])[0]
        self.tokens_used.append(token)
        if token not in self.tokens:
            self.violations.append(f"connected with a token never handed out: {token!r}")
            await self._send(
                conn, {"id": connect_id, "type": "error", "code": 401, "data": "token is invalid"}
            )
            await conn.close(1000, "token is invalid")
            return
        await self._send(conn, {"id": connect_id, "type": "welcome"})
        self._topics[conn] = set()
        self.notify()
        try:
            await trio.sleep_forever()
        finally:
            del self._topics[conn]

    async def _send(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        await conn.send(orjson.dumps(frame).decode())

    async def on_message(self, conn: FakeConnection, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        request = message.get("id") if isinstance(message, dict) else None
        if kind == "ping":
            self.keepalives += 1
            await self._send(conn, {"id": request, "type": "pong"})
            return
        topics = self._topics.get(conn)
        if topics is None:
            self.violations.append(f"sent {message!r} before the welcome")
            return
        prefix, _, names = str(message.get("topic", "")).partition(":")
        if (
            kind not in ("subscribe", "unsubscribe")
            or prefix not in self.topics
            or (prefix in self.single_symbol_topics and "," in names)
        ):
            await self._send(
                conn, {"id": request, "type": "error", "code": 400, "data": f"bad request {message!r}"}
            )
            return
        symbols = [self.unified(name) for name in names.split(",")]
        refused = next(
            (n for n, symbol in enumerate(symbols) if symbol is None or symbol in self.rejected), None
        )
        if refused is not None:  # the whole request fails, naming no symbol in particular
            reason = self.rejected.get(symbols[refused] or "") or f"topic {prefix}:{names} is not found"
            await self._send(conn, {"id": request, "type": "error", "code": 404, "data": reason})
            return
        for name, symbol in zip(names.split(","), symbols, strict=True):
            assert symbol is not None
            if kind == "subscribe":
                topics.add((prefix, name))
                if prefix == self.topics[-1]:
                    conn.subscribe(symbol)
            else:
                topics.discard((prefix, name))
                if prefix == self.topics[-1]:
                    conn.unsubscribe(symbol)
        if message.get("response"):
            await self._send(conn, {"id": request, "type": "ack"})

    def subscribed_topics(self, conn: FakeConnection, symbol: str) -> list[str]:
        """The topics of :attr:`topics` that ``conn`` subscribed for ``symbol``, in that order
        (all of them for a connection without a socket: :meth:`FakeConnection.detached`)."""
        if conn.closed and conn not in self._topics:
            return list(self.topics)
        name = self.native(symbol)
        mine = self._topics.get(conn, set())
        return [topic for topic in self.topics if (topic, name) in mine]
