"""The writer's own Redis connection: redis-py's pieces over a trio stream, no thread.

redis-py has no trio API, and reaching it through a thread cost more than the write itself
at moderate rates: a futex wake-up of the thread, a hand-over of the GIL both ways and a
wake-up of trio's loop for the result, for every batch (~140 µs of CPU per round trip on a
2-core machine, against ~40 µs for the same round trip from trio's own loop).  So the writer
speaks RESP itself, with the pieces redis-py is built from: ``hiredis`` packs the commands
and parses the replies, redis-py's URL parser reads ``redis://``, ``rediss://`` and
``unix://`` URLs exactly as the rest of tickerd (``status``, the lease) does, and error
replies become redis-py's exception classes (``WRONGPASS`` an ``AuthenticationError``,
``LOADING`` a ``BusyLoadingError`` …), so :func:`tickerd.redis_errors.refusal` judges them
the same way.  Every failure is a :class:`redis.RedisError`.

Behind Sentinel (``redis+sentinel://``, :mod:`tickerd.topology`) the connection is the same,
to the master the Sentinels name: at each (re)connect it asks them where the master is
(redis-py's ``Sentinel.discover_master``, in a worker thread: once per connection, not per
batch), checks with ``ROLE`` in the handshake that the server it reached is the master (the
Sentinels may still name a master they are demoting), and a ``READONLY`` reply (a master
demoted under an open connection) drops the connection like an outage, so the batch is held
and written again to the new master.  (Sentinel itself closes the clients of a master it
demotes.)  A Redis Cluster is served by :mod:`tickerd.writer.cluster`.

Timeouts are wall-clock: a server that accepts the bytes and never answers (``SIGSTOP``, a
host gone quiet) fails the round trip after :data:`REPLY_TIMEOUT` real seconds, also when
trio's clock is a virtual one that jumps while the loop waits for the reply.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import hiredis
import redis
import trio
from redis._parsers.base import BaseParser  # redis-py's map of error replies to its exceptions
from redis.connection import parse_url
from redis.exceptions import InvalidResponse, NoScriptError, ReadOnlyError

from tickerd import topology
from tickerd.layout import Command
from tickerd.monotonic import Script

#: Seconds a connection attempt (TCP and the AUTH/SELECT handshake) may take.
CONNECT_TIMEOUT = 2.0
#: Seconds the replies of a round trip may take before the server counts as hung.
REPLY_TIMEOUT = 5.0
#: Bytes asked of the socket per read: the replies of a batch of a thousand commands fit.
RECEIVE_SIZE = 64 * 1024

#: What a broken connection raises below redis-py's level.
_BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)


class _Socket:
    """A connected plain socket (TCP or Unix), read and written without trio's stream layer.

    trio's ``SocketStream`` passes through the scheduler on every call, even one the socket
    can do at once; the writer does a send and a read of replies per batch, and each such
    trip is a loop iteration of its own, which at moderate rates costs more than the write.
    Here a call that the socket can do at once returns at once (no checkpoint: the writer's
    loop checkpoints when it waits for the next batch), and one that cannot waits for the
    socket through trio (cancellable).  TLS keeps trio's ``SSLStream``.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock

    @classmethod
    def of(cls, stream: trio.SocketStream) -> _Socket:
        """Take over ``stream``'s connection (a duplicate of its descriptor; the stream's own
        one is closed)."""
        sock = socket.socket(fileno=os.dup(stream.socket.fileno()))
        stream.socket.close()
        return cls(sock)

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)

    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """What the socket holds (``b""`` at EOF), or ``None`` if nothing arrived yet."""
        try:
            data: bytes = self._sock.recv(max_bytes)
        except BlockingIOError:
            return None
        return data

    async def receive_some(self, max_bytes: int) -> bytes:
        while True:
            try:
                data: bytes = self._sock.recv(max_bytes)
                return data
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # outside trio: no one can be waiting on it
            trio.lowlevel.notify_closing(self._sock)
        self._sock.close()


_Stream = _Socket | trio.SSLStream[trio.SocketStream]


class Connection(Protocol):
    """What the writer's loop needs of its connection: :class:`RedisConnection`, or
    :class:`~tickerd.writer.cluster.ClusterConnection` for a cluster."""

    #: Round trips that needed a new connection (the server may have lost everything).
    reconnects: int

    async def send(self, commands: Sequence[Command]) -> None: ...

    async def replies(self) -> list[Any]: ...

    def close(self) -> None: ...


class _SentinelMaster:
    """Where the master of a ``redis+sentinel://`` URL is now, asked of its Sentinels."""

    def __init__(self, watched: topology.Topology) -> None:
        assert watched.service is not None
        self.service = watched.service
        timeouts = {"socket_timeout": CONNECT_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
        self._sentinel = topology.sentinel(watched, **timeouts)

    async def address(self) -> tuple[str, int]:
        """The master's host and port (``MasterNotFoundError``, a ``ConnectionError``, when no
        Sentinel names one)."""
        found: tuple[str, int] = await trio.to_thread.run_sync(
            self._sentinel.discover_master, self.service, abandon_on_cancel=True
        )
        return found


class RedisConnection:
    """One connection to the server of ``url``, opened on first use and after any failure.

    :meth:`send` writes commands without waiting for their replies; :meth:`replies` reads
    them all.  A failure closes the connection (replies may be left unread), and the next
    :meth:`send` opens a new one; :attr:`reconnects` counts those re-openings, because a
    server that restarted holds nothing, health records included.
    """

    def __init__(
        self, url: str, *, reply_timeout: float = REPLY_TIMEOUT, scripts: Sequence[Script] = ()
    ) -> None:
        watched = topology.parse(url)
        #: Behind Sentinel: where the master is, asked at each (re)connect.
        self._master: _SentinelMaster | None = None
        options: dict[str, Any]
        if watched.kind == "sentinel":
            self._master = _SentinelMaster(watched)
            options = dict(watched.options)
            self._where = f"master {self._master.service!r}"
        else:
            options = parse_url(url)  # type: ignore[no-untyped-call]
            address = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
            self._where = options.get("path") or address
        self._options = options
        self._reply_timeout = reply_timeout
        self._stream: _Stream | None = None
        self._reader: Any = None  # hiredis.Reader: untyped
        #: Replies sent for and not read yet.
        self.outstanding = 0
        #: Wall-clock time of the oldest unread reply's command (its timeout runs from there).
        self._sent_at = 0.0
        self._opened = 0
        #: Connections opened after the first.
        self.reconnects = 0
        #: ``SCRIPT LOAD`` of each script the commands call by SHA: part of every connection's
        #: handshake (a restarted server, or a cluster's other master, holds none of them) and
        #: sent again before the next commands after a ``NOSCRIPT`` reply (``SCRIPT FLUSH``).
        self._loads: list[Command] = [("SCRIPT", "LOAD", script.source) for script in scripts]
        self._reload = False

    async def send(self, commands: Sequence[Command]) -> None:
        """Write ``commands`` (one ``send_all``), opening the connection first if needed."""
        if self._stream is None:
            await self._open()
        elif self._reload:
            await self._load_scripts()
        assert self._stream is not None
        pack: Callable[[Command], bytes] = hiredis.pack_command  # type: ignore[assignment]  # stub: one-tuples
        data = b"".join([pack(tuple(command)) for command in commands])
        if not self.outstanding:
            self._sent_at = time.monotonic()
        self.outstanding += len(commands)
        # No timeout: one batch is sent at most before its replies are read (and those time
        # out), and it fits the socket buffers many times over, so a send does not block.
        try:
            await self._stream.send_all(data)
        except _BROKEN as exc:
            raise self._broken(exc, "writing to") from None
        except BaseException:  # cancelled half-way: the connection is out of step
            self.close()
            raise

    async def replies(self) -> list[Any]:
        """Read the reply of every command sent, and return them; raise the first error reply
        (after reading them all, so the connection stays in step) or the failure that ended
        the connection.  A ``NOSCRIPT`` reply has the scripts loaded again before the next
        commands go out."""
        first_error: redis.RedisError | None = None
        reader = self._reader
        replies: list[Any] = []
        while self.outstanding:
            reply = reader.gets()
            if reply is False:  # no whole reply buffered: read the socket
                await self._receive()
                continue
            self.outstanding -= 1
            replies.append(reply)
            if isinstance(reply, redis.RedisError) and first_error is None:
                first_error = reply
        if first_error is not None:
            if isinstance(first_error, NoScriptError):
                self._reload = True
            elif isinstance(first_error, ReadOnlyError) and self._master is not None:
                self.close()  # the master was demoted: ask the Sentinels for the new one
                raise redis.ConnectionError(f"{self._where} was demoted to a replica ({first_error})")
            raise first_error
        return replies

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """One round trip: send ``commands`` and read their replies."""
        await self.send(commands)
        return await self.replies()

    async def _load_scripts(self) -> None:
        """``SCRIPT LOAD`` every script (one round trip; a failure closes the connection)."""
        self._reload = False
        try:
            await self.execute(self._loads)
        except redis.RedisError:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection at once (no goodbye: it may be in any state)."""
        stream, self._stream = self._stream, None
        self.outstanding = 0
        if isinstance(stream, _Socket):
            stream.close()
        elif stream is not None:  # TLS: drop its TCP connection
            stream.transport_stream.socket.close()

    async def _receive(self) -> None:
        """Read replies: at once if they are there (the usual case: they are read when the next
        batch goes out, long after they arrived), else waiting for them within the timeout."""
        stream = self._stream
        assert stream is not None
        data = None
        if isinstance(stream, _Socket):
            try:
                data = stream.receive_nowait(RECEIVE_SIZE)
            except OSError as exc:
                raise self._broken(exc, "reading from") from None
        if data is None:
            remaining = self._sent_at + self._reply_timeout - time.monotonic()
            data = await self._within(remaining, stream.receive_some, RECEIVE_SIZE, "reading from")
        if not data:
            self.close()
            raise redis.ConnectionError(f"Connection closed by server ({self._where}).")
        try:
            self._reader.feed(data)
        except InvalidResponse:
            self.close()
            raise

    async def _open(self) -> None:
        options = self._options
        self._sent_at = time.monotonic()
        if self._master is not None:
            host, port = await self._master.address()
            options = {**options, "host": host, "port": port}
            self._where = f"master {self._master.service!r} at {host}:{port}"
        self._stream = await self._within(CONNECT_TIMEOUT, self._connect, options, "connecting to")
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)
        handshake: list[Command] = []
        if options.get("password") is not None:
            credentials = [options["password"]]
            if options.get("username"):
                credentials.insert(0, options["username"])
            handshake.append(("AUTH", *credentials))
        if options.get("db"):
            handshake.append(("SELECT", str(int(options["db"]))))
        handshake += self._loads
        if self._master is not None:
            handshake.append(("ROLE",))
        self._reload = False
        self._opened += 1
        self.reconnects = self._opened - 1
        if handshake:
            try:
                replies = await self.execute(handshake)
                if self._master is not None:
                    self._check_master(replies[-1])
            except redis.RedisError:  # refused (an AuthenticationError too): start over next time
                self.close()
                raise

    def _check_master(self, role: Any) -> None:
        """The server the Sentinels named must say it is the master (``ROLE``): they may still
        name one they are demoting."""
        kind = role[0] if isinstance(role, list) and role else role
        if kind != b"master":
            raise redis.ConnectionError(f"{self._where} is not the master (yet): ROLE says {kind!r}")

    async def _connect(self, options: dict[str, Any]) -> _Stream:
        path = options.get("path")
        if path:
            return _Socket.of(await trio.open_unix_socket(path))
        host = options.get("host", "localhost")
        stream = await trio.open_tcp_stream(host, int(options.get("port", 6379)))
        if options.get("connection_class") is redis.SSLConnection or options.get("ssl"):
            tls = trio.SSLStream(stream, _ssl_context(options), server_hostname=host, https_compatible=True)
            await tls.do_handshake()
            return tls
        return _Socket.of(stream)

    async def _within(self, seconds: float, fn: Callable[[Any], Any], arg: Any, doing: str) -> Any:
        """``await fn(arg)``, failing as a :class:`redis.RedisError` after ``seconds`` of wall
        clock or on any connection error (the connection is closed)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                with trio.move_on_after(max(0.0, deadline - time.monotonic())) as scope:
                    return await fn(arg)
                if scope.cancelled_caught and time.monotonic() >= deadline:
                    raise redis.TimeoutError(f"Timeout {doing} {self._where}.")
                # trio's clock ran ahead of the wall clock (a virtual clock in tests): go on
                # waiting; ``fn`` was cancelled before it did anything, so it is repeated.
        except _BROKEN as exc:
            raise self._broken(exc, doing) from None
        except BaseException:  # timed out or cancelled half-way: the connection is out of step
            self.close()
            raise

    def _broken(self, exc: BaseException, doing: str) -> redis.ConnectionError:
        """Close the connection and name what broke it (trio wraps the socket's or TLS's own
        error: that cause is what a person can act on)."""
        self.close()
        cause = exc.__cause__ or exc
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        return redis.ConnectionError(f"Error {doing} {self._where}: {reason or repr(cause)}.")


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """TLS for ``rediss://``, honouring redis-py's URL parameters for it."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    requirement = str(options.get("ssl_cert_reqs", "required")).lower()
    if requirement in ("none", "optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE if requirement == "none" else ssl.CERT_OPTIONAL
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context
