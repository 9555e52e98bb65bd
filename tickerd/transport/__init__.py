"""The websocket transport seam: connect, send, receive, close.

Everything above this module speaks :class:`Connection` and :class:`TransportError` only, so
the websocket engine can be swapped (per exchange or globally) without touching the I/O loop.
Each engine module implements :func:`connect` for its library; nothing else imports them.

The error contract, the same for every engine: a connection that cannot be opened, fails or
closes raises :class:`TransportError` (from ``connect``, ``send``, ``receive`` and the close
on exit), never an exception group and never a library's own exception; the caller's own
exceptions, ``trio.Cancelled`` and ``KeyboardInterrupt`` pass through ``connect`` untouched.
"""

from __future__ import annotations

import importlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol
from urllib.parse import urlsplit

import attrs
import trio

from tickerd.redact import redact

#: The largest message accepted; a bigger one closes the connection (a broken or hostile peer).
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: The engine used unless configuration picks another: websockets' sans-I/O protocol parses a
#: burst of frames per socket read in the reader's own task (see ``websockets_engine``).
DEFAULT_ENGINE = "websockets"
#: Seconds a TCP + TLS + websocket handshake may take.
CONNECT_TIMEOUT = 10.0


class TransportError(Exception):
    """The connection could not be opened, or it closed; the loop reconnects.

    Its message reaches the log and the health records, and usually names the URL (which
    may carry a token in its query): it is redacted here, once, for every raiser.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class Connection(Protocol):
    """One open websocket, as the I/O loop sees it."""

    #: Socket reads completed so far: messages, and also the protocol pings and pongs
    #: the engine answers by itself, which :meth:`receive` never returns.  The loop's sign of
    #: life: a quiet subscription on a server that pings is not a dead connection.
    reads: int

    @property
    def buffered(self) -> int:
        """Messages already read from the socket that :meth:`receive` has not handed over yet:
        the loop hands the tickers of one socket read on together, once this is 0."""

    def ready(self) -> bool:
        """Whether :meth:`receive` would return (or fail) without waiting for the network:
        messages parsed ahead, bytes waiting in the socket or the TLS layer, an ended
        connection.  ``True`` when unsure; the paced reader polls with it."""

    async def send(self, message: str) -> None:
        """Send one text message."""

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`TransportError` once the connection is gone."""


Connector = Callable[[str, "ssl.SSLContext | None"], AbstractAsyncContextManager[Connection]]


@attrs.frozen
class Target:
    """Where a websocket URL points: what the handshake needs besides the stream."""

    host: str
    port: int
    resource: str
    secure: bool

    @classmethod
    def parse(cls, url: str) -> Target:
        try:
            parts = urlsplit(url)
            port = parts.port  # a port that is not a number, or above 65535, raises here
        except ValueError:
            raise TransportError(f"not a websocket URL: {url!r}") from None
        if parts.scheme not in ("ws", "wss") or not parts.hostname or port == 0:
            raise TransportError(f"not a websocket URL: {url!r}")
        secure = parts.scheme == "wss"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port or (443 if secure else 80), resource, secure)


async def open_stream(
    target: Target, ssl_context: ssl.SSLContext | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """TCP (and, for ``wss``, TLS with SNI and verification) with the handshake done.

    Doing the TLS handshake here, before any websocket library sees the stream, turns a bad
    certificate into an immediate, clear error instead of a stalled websocket handshake.
    """
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await _open_tcp(target)
            if not target.secure:
                return tcp
            tls = trio.SSLStream(
                tcp,
                ssl_context or ssl.create_default_context(),
                server_hostname=target.host,
                https_compatible=True,
            )
            try:
                await tls.do_handshake()
            except BaseException:
                await drop(tcp)
                raise
            return tls
    except trio.TooSlowError:
        raise TransportError(f"{target.host}:{target.port}: connect timed out") from None
    except trio.BrokenResourceError as exc:
        raise TransportError(f"{target.host}:{target.port}: TLS failed: {exc.__cause__ or exc}") from exc
    except OSError as exc:
        raise TransportError(f"{target.host}:{target.port}: {exc.strerror or exc}") from exc


async def _open_tcp(target: Target) -> trio.SocketStream:
    """TCP to ``target``, failing with what an operator needs to hear: a name that does not
    resolve (offline, or a typo) is not a server that refuses, and neither is a lost
    connection (nothing was ever connected)."""
    try:
        return await trio.open_tcp_stream(target.host, target.port)
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {target.host} ({exc.strerror or exc})") from exc
    except OSError as exc:
        # trio tries every address and raises one OSError caused by the group of attempts.
        cause = exc.__cause__
        attempts = list(cause.exceptions) if isinstance(cause, BaseExceptionGroup) else [exc]
        if all(isinstance(attempt, ConnectionRefusedError) for attempt in attempts):
            why = "refused"
        else:
            first = attempts[0]
            why = (first.strerror if isinstance(first, OSError) else None) or str(first)
        raise TransportError(f"cannot connect to {target.host}:{target.port}: {why}") from exc


async def drop(stream: trio.abc.AsyncResource) -> None:
    """Close ``stream`` at once (no close handshake), without a checkpoint that could raise.

    Engines call it while an exception is in flight: an outer cancellation must not replace
    that exception (a KeyboardInterrupt, the caller's own error) with a ``Cancelled``, which
    ``trio.aclose_forcefully`` alone would raise in an already cancelled scope.
    """
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(stream)


#: The selectable engines, by the module implementing each one's ``connect``: imported when a
#: connection uses it, so loading the configuration (as ``tickerd status`` does) loads none.
_ENGINES = {
    "trio-websocket": "tickerd.transport.trio_websocket_engine",
    "websockets": "tickerd.transport.websockets_engine",
}


def _engine(name: str) -> Connector:
    connect: Connector = importlib.import_module(_ENGINES[name]).connect
    return connect


def engine_names() -> list[str]:
    """The selectable engines."""
    return sorted(_ENGINES)


def ssl_context_for(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """Certificate-verifying TLS for ``wss://`` (system store, or ``ca_file`` if given)."""
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=ca_file)


@asynccontextmanager
async def connect(
    url: str, *, engine: str = DEFAULT_ENGINE, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Connection]:
    """Open a websocket with the chosen engine; closes it on exit.

    ``ssl_context`` defaults to certificate verification against the system store for
    ``wss://`` URLs.
    """
    if ssl_context is None:
        ssl_context = ssl_context_for(url)
    async with _engine(engine)(url, ssl_context) as connection:
        yield connection
