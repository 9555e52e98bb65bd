"""The trio-websocket engine (wsproto underneath); it answers protocol pings by itself.

Like the other engine it raises :class:`~tickerd.transport.TransportError` only, never an
exception group, although the library runs a task of its own (see :func:`connect`).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio
import trio_websocket
import wsproto.utilities

from tickerd.transport import CONNECT_TIMEOUT, MAX_MESSAGE_SIZE, Target, TransportError, drop, open_stream

_FAILURES = (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError, ssl.SSLError)
#: trio-websocket answers an invalid handshake *response* (a wrong ``Sec-WebSocket-Accept``)
#: with an HTTP rejection that h11 refuses to send as a client; wsproto's complaint about the
#: response is up that error's ``__context__`` chain.
_BAD_RESPONSE = h11.LocalProtocolError
#: What may leave the connection's nursery when the connection fails (its reader task, the
#: handshake's time limit): each becomes a TransportError.
_CONNECTION_FAILURES = (trio.TooSlowError, trio_websocket.ConnectionClosed, _BAD_RESPONSE, *_FAILURES)


def _reported(error: BaseException) -> BaseException:
    """The error worth reporting: wsproto's complaint rather than h11's refusal to answer it."""
    if isinstance(error, _BAD_RESPONSE):
        cause = error.__context__
        while cause is not None:
            if isinstance(cause, wsproto.utilities.RemoteProtocolError):
                return cause
            cause = cause.__context__
    return error


class _CountingStream(trio.abc.Stream):
    """The connection's stream, counting completed reads: trio-websocket answers
    protocol pings in its own task, so its reads are the only sign of them we get."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.reads = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        self.reads += 1
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Connection:
    """Adapts :class:`trio_websocket.WebSocketConnection` to the seam's error contract."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, stream: _CountingStream) -> None:
        self._ws = ws
        self._stream = stream

    @property
    def reads(self) -> int:
        return self._stream.reads

    @property
    def buffered(self) -> int:
        """Always 0: trio-websocket parses in a task of its own and queues what it parsed where
        the seam cannot see, so each message goes on by itself."""
        return 0

    def ready(self) -> bool:
        """Always ``True``: its own task reads the socket and wakes the process per message
        anyway, so there is nothing for the reader to save by polling."""
        return True

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
    """Open ``url``; what goes wrong with the connection is one :class:`TransportError`.

    trio-websocket runs its reader task in a nursery of ours, and under trio's strict
    exception groups everything that leaves a nursery is wrapped in a group, the body's own
    exceptions included.  This context manager unwraps it (see :func:`_unwrapped`), so the
    caller sees what the seam promises and needs no ``except*``.
    """
    target = Target.parse(url)
    stream = await open_stream(target, ssl_context)
    counting = _CountingStream(stream)
    host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    body_error: BaseException | None = None
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    # Any trio stream does: the library checks the type only to name endpoints.
                    counting,  # type: ignore[arg-type]
                    host,
                    target.resource,
                    message_queue_size=64,
                    max_message_size=MAX_MESSAGE_SIZE,
                )
            try:
                yield _Connection(ws, counting)
            except BaseException as exc:
                # Cancelled or failed: the library's reader is being cancelled too and could
                # not complete a close handshake; the connection is dropped below.
                body_error = exc
                raise
            else:
                with trio.move_on_after(2.0, shield=True):
                    await ws.aclose()
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = _unwrapped(group, body_error, url)
    finally:
        # After a protocol failure of its own, trio-websocket leaves the TCP connection
        # open: close it, whatever state the library is in.
        await drop(stream)
    if error is not None:
        # Raised here, outside the handler, so that the group it came from (which contains
        # it) does not become its ``__context__``.
        raise error


def _unwrapped(
    group: BaseExceptionGroup[BaseException], body_error: BaseException | None, url: str
) -> BaseException:
    """The one exception :func:`connect` raises for the ``group`` that left its nursery.

    The group holds at most the body's exception, the library reader's, and a failed
    handshake or close.  In order of precedence: an interrupt (``KeyboardInterrupt``); the
    body's own exception, untouched; a cancellation (a ``Cancelled`` in the group means a
    scope outside this one is cancelled: it must reach that scope, never become a
    TransportError); an exception that is no connection failure (a bug), as it is; and
    last the first connection failure, as :class:`TransportError`.
    """
    first = min(_leaves(group, body_error), key=lambda leaf: _precedence(leaf, body_error))
    if first is body_error or not isinstance(first, _CONNECTION_FAILURES):
        return first
    # The handshake's time limit is the only TooSlowError: say so, as the other engine does.
    detail = (
        "websocket handshake timed out" if isinstance(first, trio.TooSlowError) else repr(_reported(first))
    )
    failure = TransportError(f"{url}: {detail}")
    failure.__cause__ = first
    return failure


def _leaves(error: BaseException, body_error: BaseException | None) -> list[BaseException]:
    """The exceptions in a (nested) group, in order; the body's exception counts as one,
    even if it is a group of its own (that is the body's business, not this engine's)."""
    if error is body_error or not isinstance(error, BaseExceptionGroup):
        return [error]
    return [leaf for inner in error.exceptions for leaf in _leaves(inner, body_error)]


def _precedence(error: BaseException, body_error: BaseException | None) -> int:
    """Rank for :func:`_unwrapped` (lowest first)."""
    if error is body_error:
        return 1
    if isinstance(error, trio.Cancelled):
        return 2
    if not isinstance(error, Exception):
        return 0  # KeyboardInterrupt, SystemExit
    return 4 if isinstance(error, _CONNECTION_FAILURES) else 3
