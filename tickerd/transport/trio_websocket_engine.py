"""The trio-websocket engine (wsproto underneath); it answers protocol pings by itself."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio
import trio_websocket
import wsproto.utilities

from tickerd.transport import CONNECT_TIMEOUT, MAX_MESSAGE_SIZE, Target, TransportError, open_stream

_FAILURES = (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError, ssl.SSLError)
#: trio-websocket answers an invalid handshake *response* (a wrong ``Sec-WebSocket-Accept``)
#: with an HTTP rejection that h11 refuses to send as a client; wsproto's complaint about the
#: response is up that error's ``__context__`` chain.
_BAD_RESPONSE = h11.LocalProtocolError


def _reported(error: BaseException) -> BaseException:
    """The error worth reporting: wsproto's complaint rather than h11's refusal to answer it."""
    if isinstance(error, _BAD_RESPONSE):
        cause = error.__context__
        while cause is not None:
            if isinstance(cause, wsproto.utilities.RemoteProtocolError):
                return cause
            cause = cause.__context__
    return error


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
    """Open ``url``; failures to connect become :class:`TransportError`.

    Exceptions from the body come out of this context manager inside an exception group
    (the library's reader task lives in a nursery here); callers use ``except*``.
    """
    target = Target.parse(url)
    stream = await open_stream(target, ssl_context)
    host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host,
                    target.resource,
                    message_queue_size=64,
                    max_message_size=MAX_MESSAGE_SIZE,
                )
            try:
                yield _Connection(ws)
            except BaseException:
                # Cancelled or failed: the library's reader is being cancelled too and could
                # not complete a close handshake, so drop the connection at once.
                await trio.aclose_forcefully(stream)
                raise
            else:
                with trio.move_on_after(2.0, shield=True):
                    await ws.aclose()
                # After a protocol failure of its own, trio-websocket leaves the TCP
                # connection open: close it, whatever state the library is in.
                await trio.aclose_forcefully(stream)
            finally:
                nursery.cancel_scope.cancel()
    except* (trio.TooSlowError, trio_websocket.ConnectionClosed, _BAD_RESPONSE, *_FAILURES) as group:
        await trio.aclose_forcefully(stream)
        raise TransportError(f"{url}: {_reported(group.exceptions[0])!r}") from group
