"""The transport contract, run against every engine.

The server here is scripted per test (websockets' sans-I/O *server* protocol over trio
streams), so it can do what the fake exchanges cannot: fragment a message, send binary
frames, refuse or botch the handshake, reset the TCP connection, exceed the size limit.
"""

from __future__ import annotations

import functools
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import trustme
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tickerd import transport


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


async def _receive_error(conn: transport.Connection) -> str:
    """Receive until the connection fails; the error's message."""
    with pytest.raises(transport.TransportError) as info:
        while True:
            await conn.receive()
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


async def test_close_by_server_is_a_transport_error_after_the_messages_before_it(engine: str) -> None:
    echoed: list[Frame | None] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("last words")
        peer.protocol.send_close(1001, "going away")
        await peer.flush()
        echoed.append(await peer.next_frame())

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == "last words"
        message = await _receive_error(conn)
    assert "1001" in message and "going away" in message
    [frame] = echoed
    assert frame is not None and frame.opcode is Opcode.CLOSE  # the close handshake was answered


async def test_abrupt_tcp_reset_is_a_transport_error(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("before reset")
        await peer.reset()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == "before reset"
        await _receive_error(conn)


async def test_eof_without_close_frame_is_a_transport_error(engine: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("bye")
        await peer.stream.aclose()

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == "bye"
        assert "close" in await _receive_error(conn)


async def test_oversized_message_fails_the_connection(engine: str) -> None:
    closes: list[Frame | None] = []

    async def handler(peer: Peer) -> None:
        await peer.accept()
        await peer.send_text("small")
        await peer.send_text("x" * (transport.MAX_MESSAGE_SIZE + 1))
        closes.append(await peer.next_frame())

    async with websocket_server(handler) as url, transport.connect(url, engine=engine) as conn:
        assert await conn.receive() == "small"
        await _receive_error(conn)
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
        with pytest.raises(transport.TransportError, match=expected):
            async with transport.connect(url, engine=engine):
                pass


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
        with pytest.raises(transport.TransportError, match=r"(?i)accept"):
            async with transport.connect(url, engine=engine):
                pass


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _server_tls(ca: trustme.CA, names: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = record_sni  # type: ignore[assignment]
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
        with pytest.raises(transport.TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            async with transport.connect(url, engine=engine):
                pass


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
        async with transport.connect(url, engine=engine) as conn:
            assert await conn.receive() == "fine"
            await _receive_error(conn)  # the message after the bad one is not handed over
        await done.wait()
    if engine == "websockets":  # trio-websocket drops the TCP connection without a close frame
        [frame] = closes
        assert frame is not None and frame.opcode is Opcode.CLOSE
        assert int.from_bytes(bytes(frame.data)[:2], "big") == 1007  # "invalid frame payload data"
