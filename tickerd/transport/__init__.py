"""The websocket transport seam: connect, send, receive, close.

Everything above this module speaks :class:`Connection` and :class:`TransportError` only, so
the websocket engine can be swapped (per exchange or globally) without touching the I/O loop.
Each engine module implements :func:`connect` for its library; nothing else imports them.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

#: The largest message accepted; a bigger one closes the connection (a broken or hostile peer).
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: Seconds a TCP + TLS + websocket handshake may take.
CONNECT_TIMEOUT = 10.0


class TransportError(Exception):
    """The connection could not be opened, or it closed; the loop reconnects."""


class Connection(Protocol):
    """One open websocket, as the I/O loop sees it."""

    async def send(self, message: str) -> None:
        """Send one text message."""

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`TransportError` once the connection is gone."""


Connector = Callable[[str, "ssl.SSLContext | None"], AbstractAsyncContextManager[Connection]]


def _engines() -> dict[str, Connector]:
    from tickerd.transport import trio_websocket_engine

    return {"trio-websocket": trio_websocket_engine.connect}


def engine_names() -> list[str]:
    """The selectable engines."""
    return sorted(_engines())


def ssl_context_for(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """Certificate-verifying TLS for ``wss://`` (system store, or ``ca_file`` if given)."""
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=ca_file)


@asynccontextmanager
async def connect(
    url: str, *, engine: str = "trio-websocket", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Connection]:
    """Open a websocket with the chosen engine; closes it on exit.

    ``ssl_context`` defaults to certificate verification against the system store for
    ``wss://`` URLs.
    """
    if ssl_context is None:
        ssl_context = ssl_context_for(url)
    async with _engines()[engine](url, ssl_context) as connection:
        yield connection
