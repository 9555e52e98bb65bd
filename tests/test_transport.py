"""The transport contract, run against every engine.

The server here is scripted per test (websockets' sans-I/O *server* protocol over trio
streams), so it can do what the fake exchanges cannot: fragment a message, send binary
frames, refuse or botch the handshake, reset the TCP connection, exceed the size limit.
"""

from __future__ import annotations

import functools
import itertools
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NoReturn

import pytest
import trio
import trio.testing
import trustme
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tests.processes import free_port
from tickerd import transport
from tickerd.transport import trio_websocket_engine


@pytest.fixture(params=transport.engine_names())
def engine(request: pytest.FixtureRequest) -> str:
    """Every contract test runs once per engine."""
    name: str = request.param
    return name


class Peer:
    """The server's side of one connection."""

    def __init__(self, stream: trio.abc.Stream, protocol: ServerProtocol) -> None:
        self.stream = stream
        self.protocol = protocol

    async def flush(self) -> None:
        """Send what the protocol queued, in one write."""
        data = b"".join(self.protocol.data_to_send())  # b"" (EOF) is left to the handler's exit
        if data:
            await self.stream.send_all(data)

    async def read_events(self) -> list[object]:
        """At least one protocol event (the client's request, a frame), or [] at EOF."""
        while True:
            data = await self.stream.receive_some()
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            await self.flush()
            events: list[object] = list(self.protocol.events_received())
            if events or not data:
                return events

    async def accept(self, respond: Callable[[ServerProtocol, Request], None] | None = None) -> None:
        """Read the request and answer it (by default: accept)."""
        [request] = await self.read_events()
        assert isinstance(request, Request)
        if respond is None:
            self.protocol.send_response(self.protocol.accept(request))
        else:
            respond(self.protocol, request)
        await self.flush()

    async def send_text(self, text: str, *, fragments: int = 1) -> None:
        data = text.encode()
        size = -(-len(data) // fragments)
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        for i, part in enumerate(parts):
            fin = i == len(parts) - 1
            if i == 0:
                self.protocol.send_text(part, fin=fin)
            else:
                self.protocol.send_continuation(part, fin=fin)
            await self.flush()

    async def send_binary(self, data: bytes) -> None:
        self.protocol.send_binary(data)
        await self.flush()

    async def next_frame(self) -> Frame | None:
        """The client's next frame, or ``None`` at EOF."""
        while True:
            events = await self.read_events()
            if not events:
                return None
            frame = events[0]
            assert isinstance(frame, Frame)
            return frame

    async def reset(self) -> None:
        """Abort the TCP connection: RST, no FIN, no close frame."""
        assert isinstance(self.stream, trio.SocketStream)
        self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


Handler = Callable[[Peer], Awaitable[None]]


@asynccontextmanager
async def websocket_server(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None, deflate: bool = False
) -> AsyncIterator[str]:
    """Serve ``handler`` on 127.0.0.1; yields the URL (``wss://localhost:…`` with TLS)."""

    async def serve_one(tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if ssl_context is not None:
            stream = trio.SSLStream(tcp, ssl_context, server_side=True)
        extensions = [ServerPerMessageDeflateFactory()] if deflate else None
        with trio.move_on_after(10):  # a test that forgot its client cannot hang the suite
            await handler(Peer(stream, ServerProtocol(extensions=extensions, max_size=None)))
        await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"wss://localhost:{port}/feed" if ssl_context else f"ws://127.0.0.1:{port}/feed"
        nursery.cancel_scope.cancel()


async def _receive_until_it_fails(conn: transport.Connection) -> transport.TransportError:
    """Receive until the connection fails; the error, exactly a TransportError."""
    with pytest.raises(transport.TransportError) as info:
        while True:
            await conn.receive()
    assert type(info.value) is transport.TransportError
    return info.value


async def _failure(url: str, engine: str, *before: str) -> str:
    """Connect, receive the messages ``before``, then receive until the connection fails;
    the error's message.

    The error is let out of ``connect``, as it leaves it in the feed: what comes out must be
    exactly that TransportError, not an exception group (trio-websocket runs a nursery inside).
    """
    with pytest.raises(transport.TransportError) as info:
        async with transport.connect(url, engine=engine) as conn:
            for message in before:
                assert await conn.receive() == message
            raise await _receive_until_it_fails(conn)
    assert type(info.value) is transport.TransportError
    return str(info.value)


async def _connect_failure(url: str, engine: str) -> str:
    """The message of the error connecting raises: exactly a TransportError."""
    with pytest.raises(transport.TransportError) as info:
        async with transport.connect(url, engine=engine):
            pytest.fail("connected")
    assert type(info.value) is transport.TransportError
    return str(info.value)


async def test_text_and_binary_messages_arrive_in_order(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text('{"a":1}')
        await peer.send_binary(b"\x00\x01\x02")
        await peer.send_text("é ünïcode")
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == '{"a":1}'
        assert await conn.receive() == b"\x00\x01\x02"
        assert await conn.receive() == "é ünïcode"


async def test_client_messages_reach_the_server(engine: str) -> None:
    got: list[str] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        frame = await peer.next_frame()
        assert frame is not None and frame.opcode is Opcode.TEXT
        got.append(bytes(frame.data).decode())
        await peer.send_text("ack")
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        await conn.send('{"op":"subscribe"}')
        assert await conn.receive() == "ack"
    assert got == ['{"op":"subscribe"}']


async def test_fragmented_messages_are_reassembled(engine: str) -> None:
    text = '{"data":"' + "x" * 5000 + '"}'

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text(text, fragments=7)
        peer.protocol.send_binary(b"abc", fin=False)
        peer.protocol.send_continuation(b"def", fin=True)
        await peer.flush()
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == text
        assert await conn.receive() == b"abcdef"


async def test_frames_cut_anywhere_by_the_network_arrive_whole_and_in_order(engine: str) -> None:
    """Messages whose frames arrive in pieces (a header split, a payload split, the three length
    encodings), with a ping and a fragmented message among them; the ping is answered."""
    big = "c" * 70_000  # a 64-bit length
    pongs: list[bytes] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        protocol = peer.protocol
        protocol.send_text(b"a")
        protocol.send_text(b"b" * 200)  # a 16-bit length
        protocol.send_ping(b"hi")
        protocol.send_text(b"frag", fin=False)
        protocol.send_continuation(b"ment", fin=True)
        protocol.send_binary(b"\x00\x01")
        protocol.send_text(big.encode())
        protocol.send_text(b"last")
        data = b"".join(protocol.data_to_send())
        cuts = [*range(0, 320, 3), *range(320, len(data), 4096), len(data)]
        for start, stop in itertools.pairwise(cuts):
            await peer.stream.send_all(data[start:stop])
            await trio.testing.wait_all_tasks_blocked()  # the client read this piece alone
        frame = await peer.next_frame()
        assert frame is not None and frame.opcode is Opcode.PONG
        pongs.append(bytes(frame.data))
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        with trio.fail_after(10):
            got = [await conn.receive() for _ in range(6)]
    assert got == ["a", "b" * 200, "fragment", b"\x00\x01", big, "last"]
    assert pongs == [b"hi"]


async def test_frames_in_the_handshake_response_s_segment_are_handed_over(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        [request] = await peer.read_events()
        assert isinstance(request, Request)
        peer.protocol.send_response(peer.protocol.accept(request))
        peer.protocol.send_text(b"first")
        peer.protocol.send_ping(b"ping")
        peer.protocol.send_text(b"second")
        await peer.flush()  # the response and the frames in one write
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        with trio.fail_after(5):
            assert [await conn.receive(), await conn.receive()] == ["first", "second"]


async def test_a_masked_frame_from_the_server_fails_the_connection(engine: str) -> None:
    """A server must not mask its frames (RFC 6455 5.1): nothing from it is handed over."""
    closes: list[Frame | None] = []
    done = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("fine")
        mask = b"\x01\x02\x03\x04"
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(b"masked"))
        await peer.stream.send_all(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
        closes.append(await peer.next_frame())
        done.set()

    async with websocket_server(handler) as url:
        await _failure(url, engine, "fine")
        await done.wait()
    if engine == "websockets":
        [frame] = closes
        assert frame is not None and frame.opcode is Opcode.CLOSE
        assert int.from_bytes(bytes(frame.data)[:2], "big") == 1002  # "protocol error"


async def test_server_pings_are_answered_while_reading(engine: str) -> None:
    pongs: list[bytes] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        for payload in (b"one", b"two"):
            peer.protocol.send_ping(payload)
            await peer.flush()
            frame = await peer.next_frame()
            assert frame is not None and frame.opcode is Opcode.PONG
            pongs.append(bytes(frame.data))
        await peer.send_text("after pings")
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        with trio.fail_after(5):
            assert await conn.receive() == "after pings"
    assert pongs == [b"one", b"two"]


async def test_server_pings_count_as_reads_while_no_message_arrives(engine: str) -> None:
    client: list[transport.Connection] = []
    reads: list[int] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.next_frame()  # the client is connected
        for payload in (b"one", b"two"):
            peer.protocol.send_ping(payload)
            await peer.flush()
            await peer.next_frame()  # the pong: the client has read the ping
            reads.append(client[0].reads)
        await peer.send_text("after pings")
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        client.append(conn)
        await conn.send("connected")
        with trio.fail_after(5):
            assert await conn.receive() == "after pings"
    assert 0 < reads[0] < reads[1]  # each ping was heard, though no message had arrived


async def test_close_by_server_is_a_transport_error_after_the_messages_before_it(engine: str) -> None:
    echoed: list[Frame | None] = []
    done = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("last words")
        peer.protocol.send_close(1001, "going away")
        await peer.flush()
        echoed.append(await peer.next_frame())
        done.set()

    async with websocket_server(handler) as url:
        message = await _failure(url, engine, "last words")
        await done.wait()
    assert "1001" in message and "going away" in message
    [frame] = echoed
    assert frame is not None and frame.opcode is Opcode.CLOSE  # the close handshake was answered


async def test_abrupt_tcp_reset_is_a_transport_error(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("before reset")
        await peer.reset()

    async with websocket_server(handler) as url:
        await _failure(url, engine, "before reset")


async def test_eof_without_close_frame_is_a_transport_error(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("bye")
        await peer.stream.aclose()

    async with websocket_server(handler) as url:
        assert "close" in await _failure(url, engine, "bye")


async def test_oversized_message_fails_the_connection(engine: str) -> None:
    closes: list[Frame | None] = []
    done = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("small")
        await peer.send_text("x" * (transport.MAX_MESSAGE_SIZE + 1))
        closes.append(await peer.next_frame())
        done.set()

    async with websocket_server(handler) as url:
        async with transport.connect(url, engine=engine) as conn:
            assert await conn.receive() == "small"
            # Not let out of ``connect``: its clean close reads on while the server finishes
            # its write and reads the close frame; a dropped connection would reset that write.
            await _receive_until_it_fails(conn)
        await done.wait()
    [frame] = closes
    assert frame is not None and frame.opcode is Opcode.CLOSE
    assert int.from_bytes(bytes(frame.data)[:2], "big") == 1009  # "message too big"


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        (lambda p, r: p.send_response(p.reject(503, "busy")), "503"),
        (lambda p, r: p.send_response(p.reject(404, "no such feed")), "404"),
    ],
    ids=["503", "404"],
)
async def test_refused_handshake_is_a_clear_transport_error(
    engine: str, respond: Callable[[ServerProtocol, Request], None], expected: str
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept(respond)

    async with websocket_server(handler) as url:
        assert expected in await _connect_failure(url, engine)


async def test_bad_accept_header_is_a_transport_error(engine: str) -> None:
    def respond(protocol: ServerProtocol, request: Request) -> None:
        response = protocol.accept(request)
        del response.headers["Sec-WebSocket-Accept"]
        response.headers["Sec-WebSocket-Accept"] = "bm90IHRoZSByaWdodCBrZXk="
        protocol.send_response(response)

    async def handler(peer: Peer) -> None:
        await peer.accept(respond)
        await peer.next_frame()

    async with websocket_server(handler) as url:
        assert "accept" in (await _connect_failure(url, engine)).lower()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _server_tls(ca: trustme.CA, names: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = record_sni
    return context


async def test_tls_with_a_trusted_self_signed_ca_sends_sni(engine: str, ca: trustme.CA) -> None:
    names: list[str] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("secure")
        await peer.next_frame()

    client = ssl.create_default_context()
    ca.configure_trust(client)
    async with (
        websocket_server(handler, ssl_context=_server_tls(ca, names)) as url,
        transport.connect(url, engine=engine, ssl_context=client) as conn,
    ):
        assert await conn.receive() == "secure"
    assert names == ["localhost"]


async def test_tls_with_an_untrusted_certificate_is_refused(engine: str, ca: trustme.CA) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()

    async with websocket_server(handler, ssl_context=_server_tls(ca, [])) as url:
        assert "CERTIFICATE_VERIFY_FAILED" in await _connect_failure(url, engine)


async def test_compressed_messages_arrive_intact(engine: str) -> None:
    negotiated: list[bool] = []
    text = '{"symbol":"BTC/USDT","bid":"1.0"}' * 50

    async def handler(peer: Peer) -> None:
        await peer.accept()
        negotiated.append(bool(peer.protocol.extensions))
        await peer.send_text(text)
        await peer.send_text(text, fragments=3)
        await peer.next_frame()

    async with websocket_server(handler, deflate=True) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == text
        assert await conn.receive() == text
    # permessage-deflate is used when the server offers it (trio-websocket never asks for it).
    assert negotiated == [engine == "websockets"]


async def test_websockets_engine_hands_over_a_burst_from_one_socket_read() -> None:
    """The default engine's reason to be: no socket read or task switch per frame.
    (trio-websocket checkpoints on every message, by design of its reader task.)"""
    sent = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.accept()
        for i in range(50):
            peer.protocol.send_text(f'{{"n":{i}}}'.encode())
        await peer.flush()  # one write: all 50 frames are in the client's socket buffer
        sent.set()
        await peer.next_frame()

    async with websocket_server(handler) as url, transport.connect(url, engine="websockets") as conn:
        await sent.wait()
        assert await conn.receive() == '{"n":0}'  # reads the socket once…
        with trio.testing.assert_no_checkpoints():  # …and hands the rest over without it
            rest = [await conn.receive() for _ in range(49)]
        assert rest == [f'{{"n":{i}}}' for i in range(1, 50)]


async def test_invalid_utf8_text_fails_the_connection(engine: str) -> None:
    closes: list[Frame | None] = []
    done = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("fine")
        peer.protocol.send_text(b"\xff\xfe not utf-8")
        peer.protocol.send_text(b"after the bad one")
        await peer.flush()
        closes.append(await peer.next_frame())
        done.set()

    async with websocket_server(handler) as url:
        await _failure(url, engine, "fine")  # the message after the bad one is not handed over
        await done.wait()
    if engine == "websockets":  # trio-websocket drops the TCP connection without a close frame
        [frame] = closes
        assert frame is not None and frame.opcode is Opcode.CLOSE
        assert int.from_bytes(bytes(frame.data)[:2], "big") == 1007  # "invalid frame payload data"


async def test_nothing_listening_is_a_refused_connection(engine: str) -> None:
    port = free_port()
    message = await _connect_failure(f"ws://127.0.0.1:{port}/feed", engine)
    assert message == f"cannot connect to 127.0.0.1:{port}: refused"


class Offline(trio.abc.HostnameResolver):
    """Name resolution as on a machine without a network: every lookup fails."""

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> NoReturn:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> NoReturn:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


async def test_a_name_that_does_not_resolve_is_said_so(engine: str) -> None:
    trio.socket.set_custom_hostname_resolver(Offline())  # per run: this test's trio.run only
    message = await _connect_failure("wss://ws.kraken.com/v2", engine)
    assert message.startswith("cannot resolve ws.kraken.com (")


@pytest.mark.parametrize("url", ["http://127.0.0.1/feed", "ws://127.0.0.1:port/feed", "ws://[::1/feed"])
async def test_what_is_no_websocket_url_is_a_transport_error(engine: str, url: str) -> None:
    assert "not a websocket URL" in await _connect_failure(url, engine)


async def test_sending_on_a_failed_connection_is_a_transport_error(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.reset()

    async with websocket_server(handler) as url:
        with pytest.raises(transport.TransportError) as info:
            async with transport.connect(url, engine=engine) as conn:
                await _receive_until_it_fails(conn)
                await conn.send('{"op":"ping"}')
    assert type(info.value) is transport.TransportError
    assert "send failed" in str(info.value)


async def test_a_peer_that_resets_instead_of_answering_our_close_is_no_error(engine: str) -> None:
    got_close = trio.Event()

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("hi")
        await peer.stream.receive_some()  # the client's close frame, left unanswered
        got_close.set()
        await peer.reset()

    async with websocket_server(handler) as url:
        async with transport.connect(url, engine=engine) as conn:
            assert await conn.receive() == "hi"
        assert got_close.is_set()


@pytest.mark.parametrize("error", [ValueError("the caller's own"), KeyboardInterrupt()], ids=repr)
async def test_the_callers_exceptions_leave_connect_untouched(engine: str, error: BaseException) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.next_frame()

    async with websocket_server(handler) as url:
        with pytest.raises(type(error)) as info:
            async with transport.connect(url, engine=engine):
                raise error
    assert info.value is error  # the very exception: not wrapped, not a TransportError


@pytest.mark.parametrize("phase", ["handshake", "reading"])
async def test_cancellation_leaves_connect_as_it_is(engine: str, phase: str) -> None:
    """Exactly ``trio.Cancelled`` leaves ``connect``: never a TransportError (the feed would
    count a failure and reconnect), never a group; the cancelled scope catches it."""
    requested = trio.Event()

    async def handler(peer: Peer) -> None:
        if phase == "handshake":
            await peer.read_events()  # the request, never answered
            requested.set()
        else:
            await peer.accept()
        await peer.next_frame()

    async def cancel_when_requested(scope: trio.CancelScope) -> None:
        await requested.wait()
        scope.cancel()

    left: list[BaseException] = []
    async with websocket_server(handler) as url, trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_when_requested, scope)
            try:
                async with transport.connect(url, engine=engine) as conn:
                    scope.cancel()
                    await conn.receive()  # the server sends nothing
            except BaseException as exc:
                left.append(exc)
                raise
        requested.set()
    assert scope.cancelled_caught
    assert [type(exc) for exc in left] == [trio.Cancelled]


async def _a_cancelled() -> trio.Cancelled:
    """A real ``trio.Cancelled``, caught by the scope it belongs to."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            return exc
    raise AssertionError("not cancelled")


async def test_trio_websocket_engine_unwraps_its_nursery_s_group() -> None:
    """What may leave trio-websocket's nursery, and the one exception ``connect`` raises for
    it.  Checked directly: a cancellation racing a failure cannot be staged over a socket."""
    url = "ws://127.0.0.1:1/feed"
    cancelled, interrupt, bug = await _a_cancelled(), KeyboardInterrupt(), RuntimeError("bug")
    reset, body = OSError("connection reset"), ValueError("the caller's own")

    def unwrapped(*leaves: BaseException, body: BaseException | None = None) -> BaseException:
        return trio_websocket_engine._unwrapped(BaseExceptionGroup("nursery", list(leaves)), body, url)

    # A connection failure, however deeply nested, is one TransportError naming its cause.
    error = unwrapped(ExceptionGroup("inner", [reset]))
    assert type(error) is transport.TransportError and error.__cause__ is reset
    assert str(error) == f"{url}: OSError('connection reset')"
    # A cancellation is never flattened into TransportError, whatever failed meanwhile.
    assert unwrapped(reset, cancelled) is cancelled
    assert unwrapped(cancelled, reset, interrupt) is interrupt
    # The caller's own exception comes out as it is, even a group of its own.
    assert unwrapped(reset, body, body=body) is body
    session = BaseExceptionGroup("session", [cancelled])
    assert unwrapped(session, await _a_cancelled(), body=session) is session
    # A bug is not disguised as a connection failure.
    assert unwrapped(reset, bug) is bug
