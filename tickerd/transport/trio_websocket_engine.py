"""The trio-websocket engine (wsproto underneath); it answers protocol pings by itself."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio_websocket

from tickerd.transport import CONNECT_TIMEOUT, MAX_MESSAGE_SIZE, TransportError

_FAILURES = (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError, ssl.SSLError)


class _Connection:
    """Adapts :class:`trio_websocket.WebSocketConnection` to the seam's error contract."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def send(self, message: str) -> None:
        try:
            await self._ws.send_message(message)
        except (trio_websocket.ConnectionClosed, *_FAILURES) as exc:
            raise TransportError(f"send failed: {exc!r}") from exc

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise TransportError(f"closed by peer: {exc.reason}") from exc
        except _FAILURES as exc:
            raise TransportError(f"receive failed: {exc!r}") from exc


@asynccontextmanager
async def connect(url: str, ssl_context: ssl.SSLContext | None) -> AsyncIterator[_Connection]:
    """Open ``url``; every failure to connect or to close becomes a :class:`TransportError`."""
    try:
        async with trio_websocket.open_websocket_url(
            url,
            ssl_context,
            message_queue_size=64,
            max_message_size=MAX_MESSAGE_SIZE,
            connect_timeout=CONNECT_TIMEOUT,
            disconnect_timeout=2.0,
        ) as ws:
            yield _Connection(ws)
    except (*_FAILURES, trio_websocket.ConnectionClosed) as exc:
        raise TransportError(f"{url}: {exc!r}") from exc
