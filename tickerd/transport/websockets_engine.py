"""The default engine: ``websockets``' sans-I/O client protocol driven by plain trio streams.

Why it exists: trio-websocket parses frames in a background task and hands each message to
the reader through a memory channel, so every frame costs task switches and channel traffic
(~36k frames/s on a 2-core machine before any work is done with them).  Here the protocol
object runs in the reader's own task: one ``receive_some`` parses every frame that arrived
with it, and :meth:`_Connection.receive` hands those over one by one, without touching the
socket or the scheduler, before it reads the socket again.

Protocol duties are done at the socket read that surfaced them, before any frame of that
read is handed over: pongs for server pings and the echo of a server's close frame are sent
at once, a failed connection (oversized message, protocol error, invalid UTF-8) sends its
close frame.  Messages that arrived before a close are still handed over; then ``receive``
raises :class:`TransportError`.

The frames that carry nearly all of a feed, whole uncompressed text (or binary) messages, are
cut out of the bytes here (:meth:`_Connection._frames`: a header's two to ten bytes and a
slice), and every other frame (pings, close, fragments, anything odd or broken) is handed,
whole and in order, to the protocol object, which answers and judges it as before.  Its
generator-based parser costs ~2 µs a frame, a third of what a frame costs tickerd at full
speed; the cut costs a few hundred nanoseconds.  With permessage-deflate negotiated every
byte goes through the protocol object (its frames need the extension's state).
"""

from __future__ import annotations

import contextlib
import os
import select
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState, InvalidURI
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import USER_AGENT
from websockets.protocol import State
from websockets.uri import parse_uri

from tickerd.transport import CONNECT_TIMEOUT, MAX_MESSAGE_SIZE, Target, TransportError, drop, open_stream

#: Bytes asked of the socket per read: a burst of frames is parsed in one go.
RECEIVE_SIZE = 64 * 1024
#: Seconds a clean close (our close frame, the server's answer and TCP close) may take.
CLOSE_TIMEOUT = 2.0

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
#: The first byte of a whole message in one frame: FIN, no reserved bit, text or binary.
_WHOLE_TEXT, _WHOLE_BINARY = 0x80 | _TEXT.value, 0x80 | _BINARY.value
#: Where an HTTP response's head ends: the opening handshake is parsed up to here and no further.
_END_OF_HEAD = b"\r\n\r\n"
_Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


class _Connection:
    """One websocket: the protocol object, its stream, and the messages parsed ahead."""

    def __init__(self, stream: _Stream, protocol: ClientProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self.reads = 0
        self._messages: deque[str | bytes] = deque()
        #: Parts of a fragmented message, and whether it is text.
        self._fragments: list[bytes] = []
        self._fragmented_text = False
        #: Raised by ``receive`` once the buffered messages are handed over.
        self._closed: TransportError | None = None
        #: Whether whole frames are cut out here (:meth:`_frames`) rather than by the protocol
        #: object: from the open handshake on, unless an extension was negotiated; never again
        #: once the protocol object saw the connection fail or close.
        self._cutting = False
        #: Bytes read and not cut yet: the start of a frame that is still arriving.
        self._partial: bytes | bytearray = b""
        #: The reader (pongs, close echo) and the sender both write to the stream.
        self._send_lock = trio.StrictFIFOLock()
        #: Looks at the socket without reading it (:meth:`ready`): readable, closed or failed.
        self._poll = select.poll()
        transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        self._poll.register(transport.socket.fileno(), select.POLLIN)
        #: A plain connection's socket, read here (:meth:`_receive_plain`); ``None`` over TLS,
        #: read through trio's stream.
        self._socket = None if isinstance(stream, trio.SSLStream) else stream.socket
        #: Whether the last read took all the socket held (less than it asked for).
        self._drained = True

    @property
    def buffered(self) -> int:
        return len(self._messages)

    def ready(self) -> bool:
        if self._messages or self._closed is not None:
            return True
        stream = self._stream
        if isinstance(stream, trio.SSLStream):
            # Decrypted bytes, or records trio read from the socket and has not decrypted yet
            # (its buffer for them is private: if it is not where it was, say "ready").
            incoming = getattr(stream, "_incoming", None)
            if stream.pending() or incoming is None or incoming.pending:
                return True
        return bool(self._poll.poll(0))

    async def send(self, message: str) -> None:
        if self._closed is not None:
            raise TransportError(f"send failed: {self._closed}")
        try:
            self._protocol.send_text(message.encode())
        except InvalidState as exc:
            raise TransportError(f"send failed: connection is {self._protocol.state.name.lower()}") from exc
        await self._flush()

    async def receive(self) -> str | bytes:
        """The next message: from those already parsed, else after reading the socket.

        It does not checkpoint while parsed messages remain (the socket read that parsed
        them did), so a burst is handed over at the cost of a deque pop per frame.
        """
        messages = self._messages
        while not messages:
            await self._read()
        return messages.popleft()

    async def _read(self) -> None:
        """Read the socket once; parse, answer control frames, queue the messages."""
        if self._closed is not None:
            raise self._closed
        protocol = self._protocol
        data = await self._receive_some()
        if not data:
            protocol.receive_eof()
        elif self._cutting:
            self._frames(data)
        else:
            self._parse(data)
        if protocol.writes:  # pongs, the echo of a close frame, our close on failure
            await self._flush()
        if self._closed is None:
            self._closed = self._ended()

    async def _receive_some(self) -> bytes | bytearray:
        try:
            if self._socket is None:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            else:
                data = await self._receive_plain(self._socket.fileno())
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._closed = TransportError(f"connection lost: {exc.__cause__ or exc!r}")
            raise self._closed from exc
        except OSError as exc:  # a plain connection's own read (trio's stream wraps these)
            self._closed = TransportError(f"connection lost: {exc}")
            raise self._closed from exc
        self.reads += 1
        return data

    async def _receive_plain(self, fd: int) -> bytes:
        """Read a plain connection's socket: after a read that took all it held, wait for it
        to be readable first; after a full read, checkpoint and read at once.

        trio's stream always tries the read first and waits after it failed, through a stack
        of wrappers: on a quiet feed, where every frame comes after the socket was drained,
        each frame paid for a failed read, its exception and those wrappers (~15 % of the
        daemon's CPU at 1,000 frames/s each read alone: ``bench/throughput.py --idle``).  The
        checkpoints are trio's: a wait, or a checkpoint when the read can be done at once.
        """
        if self._drained:
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                data = os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
            else:
                self._drained = len(data) < RECEIVE_SIZE
                return data

    def _parse(self, data: bytes | bytearray) -> None:
        """Let the protocol object parse ``data``; queue the messages it found."""
        self._protocol.receive_data(data)
        self._accept(self._protocol.events_received())

    def _frames(self, data: bytes | bytearray) -> None:
        """Queue the messages of the whole frames in ``data`` (after the part of a frame the
        last read left); keep a frame that is still arriving for the next read.

        A whole text or binary message is cut out here; any other frame is handed whole to
        the protocol object (so it is always at a frame boundary: its own parser never holds
        a partial frame while frames are cut here).  A frame too large to be accepted, a
        masked one (a server must not mask) and everything after the connection failed or
        closed go to the protocol object with all that follows, and cutting stops: it fails
        the connection or discards, as the websocket protocol demands.
        """
        buffer = self._partial + data if self._partial else data
        end = len(buffer)
        at = 0
        append = self._messages.append
        protocol = self._protocol
        while end - at >= 2:
            first, length = buffer[at], buffer[at + 1]
            start = at + 2
            if length == 126:
                if end - at < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - at < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            elif length > 127:  # masked: the protocol object fails the connection
                length = MAX_MESSAGE_SIZE + 1
            if length > MAX_MESSAGE_SIZE:
                self._stop_cutting(buffer[at:])
                return
            stop = start + length
            if stop > end:
                break
            if first == _WHOLE_TEXT and protocol.current_size is None:
                try:
                    append(str(buffer[start:stop], "utf-8"))
                except UnicodeDecodeError:
                    self._invalid_text()
                    self._cutting, self._partial = False, b""
                    return
            elif first == _WHOLE_BINARY and protocol.current_size is None:
                append(bytes(buffer[start:stop]))
            else:  # control frames, fragments, reserved bits or opcodes: the protocol's
                self._parse(buffer[at:stop])
                if self._closed is not None or protocol.state is not State.OPEN or protocol.parser_exc:
                    self._stop_cutting(buffer[stop:])
                    return
            at = stop
        self._partial = buffer[at:]

    def _stop_cutting(self, rest: bytes | bytearray) -> None:
        """Hand ``rest`` and everything after it to the protocol object."""
        self._cutting, self._partial = False, b""
        if rest and self._closed is None:
            self._parse(rest)

    def _invalid_text(self) -> None:
        """A text message that is not UTF-8 fails the connection (close code 1007)."""
        if self._protocol.state is State.OPEN:
            self._protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
        self._closed = TransportError("protocol error: invalid UTF-8 in a text message")

    def _accept(self, events: Iterable[object]) -> None:
        """Queue the data frames' messages (assembling fragments); control frames need
        nothing here: the protocol object already queued pongs and the close echo.

        A text message that is not UTF-8 fails the connection (close code 1007); nothing
        after it is handed over.
        """
        append = self._messages.append
        try:
            for frame in events:
                if not isinstance(frame, Frame):
                    continue  # the handshake response
                opcode = frame.opcode
                if opcode is _TEXT:
                    if frame.fin:
                        append(str(frame.data, "utf-8"))
                    else:
                        self._fragments, self._fragmented_text = [bytes(frame.data)], True
                elif opcode is _BINARY:
                    if frame.fin:
                        append(bytes(frame.data))
                    else:
                        self._fragments, self._fragmented_text = [bytes(frame.data)], False
                elif opcode is _CONT:
                    self._fragments.append(bytes(frame.data))
                    if frame.fin:
                        whole = b"".join(self._fragments)
                        self._fragments = []
                        append(str(whole, "utf-8") if self._fragmented_text else whole)
        except UnicodeDecodeError:
            self._invalid_text()

    def _ended(self) -> TransportError | None:
        """Why the connection ended, if it did (a close frame, EOF, a protocol failure)."""
        protocol = self._protocol
        if protocol.close_rcvd is not None:
            return TransportError(f"closed by peer: {protocol.close_rcvd}")
        error = protocol.parser_exc
        if error is None:
            return None
        if isinstance(error, EOFError):
            return TransportError("connection closed without a close frame")
        return TransportError(f"protocol error: {error}")

    async def _flush(self) -> None:
        """Send what the protocol object queued, in order (taken under the lock)."""
        async with self._send_lock:
            data = b"".join(self._protocol.data_to_send())  # b"" = half-close: the exit closes
            if not data:
                return
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportError(f"send failed: {exc.__cause__ or exc!r}") from exc

    async def handshake(self) -> None:
        """The opening handshake; a refusal or a bad response is a clear TransportError."""
        protocol = self._protocol
        request = protocol.connect()
        request.headers["User-Agent"] = f"tickerd {USER_AGENT}"
        protocol.send_request(request)
        await self._flush()
        # A refused handshake leaves the state at CONNECTING (the protocol object waits for
        # the server's EOF): the error is known as soon as the response is parsed.  The
        # protocol object is given the response's head and no more, so that it stands at a
        # frame boundary when the connection opens: the frames that came with the response
        # are cut like all that follow.
        head: bytearray | None = bytearray()
        rest: bytes | bytearray = b""
        while protocol.state is State.CONNECTING and protocol.handshake_exc is None:
            data = await self._receive_some()
            if not data:
                protocol.receive_eof()
                continue
            if head is not None:
                head += data
                if (end := head.find(_END_OF_HEAD)) >= 0:
                    cut = len(data) - (len(head) - end - len(_END_OF_HEAD))
                    data, rest, head = data[:cut], data[cut:], None
            protocol.receive_data(data)
            if rest and protocol.state is State.CONNECTING:  # a refusal's body
                protocol.receive_data(rest)
                rest = b""
        if protocol.handshake_exc is not None:
            cause = protocol.handshake_exc.__cause__
            detail = f" ({cause})" if cause else ""
            raise TransportError(f"handshake failed: {protocol.handshake_exc}{detail}")
        protocol.events_received()  # the response
        self._cutting = not protocol.extensions
        if rest:
            if self._cutting:
                self._frames(rest)
            else:
                self._parse(rest)
        if protocol.writes:
            await self._flush()

    async def close(self) -> None:
        """Send a close frame and wait for the server's answer and its TCP close."""
        protocol = self._protocol
        if protocol.state is State.OPEN:
            protocol.send_close(CloseCode.NORMAL_CLOSURE)
            await self._flush()
        while protocol.state is not State.CLOSED:
            data = await self._stream.receive_some(RECEIVE_SIZE)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()


@asynccontextmanager
async def connect(url: str, ssl_context: ssl.SSLContext | None) -> AsyncIterator[_Connection]:
    """Open ``url``; failures to connect or to complete the handshake are TransportError.

    permessage-deflate is offered and used when the server accepts it; messages larger than
    :data:`MAX_MESSAGE_SIZE` fail the connection (close code 1009).
    """
    target = Target.parse(url)
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise TransportError(f"not a websocket URL: {exc}") from exc
    stream = await open_stream(target, ssl_context)
    try:
        protocol = ClientProtocol(
            uri,
            extensions=enable_client_permessage_deflate(None),
            max_size=MAX_MESSAGE_SIZE,
        )
        conn = _Connection(stream, protocol)
        with trio.fail_after(CONNECT_TIMEOUT):
            await conn.handshake()
    except trio.TooSlowError:
        await drop(stream)
        raise TransportError(f"{url}: websocket handshake timed out") from None
    except TransportError as exc:
        await drop(stream)
        raise TransportError(f"{url}: {exc}") from exc
    except BaseException:
        await drop(stream)
        raise
    try:
        yield conn
    except BaseException:
        # Cancelled or failed: no time for a close handshake; drop the connection at once.
        await drop(stream)
        raise
    else:
        # If the peer went away first, closing the stream is all that is left to do.
        with (
            trio.move_on_after(CLOSE_TIMEOUT, shield=True),
            contextlib.suppress(TransportError, trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await conn.close()
        await trio.aclose_forcefully(stream)
