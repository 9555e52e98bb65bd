"""The benchmark's fake exchanges: one process serving Binance, Bybit and OKX on one port.

:mod:`tickerd.testing`'s fakes build each frame from a market model as it goes; at thousands of
frames a second that would make the fake, not the daemon, the bottleneck on a 2-core machine.
This fake speaks just enough of each exchange's real protocol for the daemon to run unchanged
(every subscription acknowledged, keepalives answered) and sends frames encoded before the
phase starts, each split around a fixed-width placeholder for its send time.

Every frame carries its send time and a sequence number where the daemon's ``Ticker`` keeps
them, so the watcher can measure frame-send → visible latency on every exchange:

=========  ===================================  ==================  ==================
exchange   frame                                send time           sequence
=========  ===================================  ==================  ==================
binance    ``@bookTicker`` (``/ws``)            ``B`` → bid_size    ``A`` → ask_size
bybit      spot ``orderbook.1`` (``/v5/public/  ``b[0][1]`` →       ``a[0][1]`` →
           spot``)                              bid_size            ask_size
okx        ``tickers`` (``/ws/v5/public``)      ``bidSz`` →         ``askSz`` →
                                                bid_size            ask_size
=========  ===================================  ==================  ==================

(Bybit spot sends no ``tickers`` here: its book frames alone make the daemon's tickers, with
no last price, which the sanity rule allows.)

Frames go out in an order that interleaves the live connections (one frame for each in turn),
so that a given rate is spread over every connection, as an exchange's would be.
"""

from __future__ import annotations

import itertools
import multiprocessing.connection
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
import redis
import trio
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tickerd.layout import RedisLayout

REDIS_URL = "redis://127.0.0.1:6379/0"
#: Frames written per ``send_all`` at full speed (they share one send timestamp).
CHUNK = 256
#: The exchanges this fake speaks, and the path (after the port) the daemon is pointed at.
PATHS = {"binance": "/ws", "bybit": "/v5/public", "okx": "/ws/v5/public"}
#: Width of the send-time placeholder: ``%.6f`` of an epoch time.
STAMP_WIDTH = 17

#: exchange → its symbols (unified).
Markets = dict[str, list[str]]
#: (exchange, symbol): the key a latency sample and a stored value are matched by.
Key = tuple[str, str]


def _stamp() -> bytes:
    """The send time, fixed width (:data:`STAMP_WIDTH`), so pre-encoded frames keep their length."""
    return b"%.6f" % time.time()


def _ws_header(length: int) -> bytes:
    """An unmasked, final text frame's header (server → client)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def native(exchange: str, symbol: str) -> str:
    """The name each exchange gives ``BASE/QUOTE`` (spot) in its requests and frames."""
    base, quote = symbol.split("/")
    return {"binance": f"{base}{quote}".lower(), "bybit": f"{base}{quote}", "okx": f"{base}-{quote}"}[
        exchange
    ]


def frame(exchange: str, symbol: str, seq: int) -> tuple[bytes, bytes]:
    """One frame of ``symbol`` with sequence ``seq``, as (header + text before the send time,
    text after it)."""
    price = 100.0 + (seq % 1000) / 100
    name = native(exchange, symbol).encode()
    ts = int(time.time() * 1000)
    if exchange == "binance":
        head = b'{"u":%d,"s":"%s","b":"%.8f","B":"' % (seq, name.upper(), price)
        tail = b'","a":"%.8f","A":"%d"}' % (price + 0.01, seq)
    elif exchange == "bybit":
        head = b'{"topic":"orderbook.1.%s","type":"snapshot","ts":%d,"data":{"s":"%s","b":[["%.2f","' % (
            name,
            ts,
            name,
            price,
        )
        tail = b'"]],"a":[["%.2f","%d"]],"u":%d,"seq":%d},"cts":%d}' % (price + 0.01, seq, seq, seq, ts)
    else:
        head = (
            b'{"arg":{"channel":"tickers","instId":"%s"},"data":[{"instType":"SPOT","instId":"%s",'
            b'"last":"%.2f","lastSz":"0.1","askPx":"%.2f","askSz":"%d","bidPx":"%.2f","bidSz":"'
            % (name, name, price, price + 0.01, seq, price)
        )
        tail = (
            b'","open24h":"100","high24h":"110.5","low24h":"99.5","sodUtc0":"100","sodUtc8":"100",'
            b'"volCcy24h":"123456.7","vol24h":"1234.5","ts":"%d"}]}' % ts
        )
    return _ws_header(len(head) + STAMP_WIDTH + len(tail)) + head, tail


async def _paced(per_second: int, total: int, clustered: bool) -> AsyncIterator[tuple[int, int]]:
    """``(sent, due)``: the frames ``sent .. due`` to send now, ``total`` in all, ``per_second``
    of them a second: what is due every millisecond, or ``clustered``, each second's frames
    at once at the start of the second."""
    sent = 0
    start = trio.current_time()
    while sent < total:
        elapsed = trio.current_time() - start
        if clustered:
            due = min(total, (int(elapsed) + 1) * per_second)
        else:
            due = min(total, int(elapsed * per_second) + 1)
        if due > sent:
            yield sent, due
            sent = due
        if clustered:
            await trio.sleep_until(start + int(trio.current_time() - start) + 1)
        else:
            await trio.sleep(0.001)


class Connection:
    """One daemon connection: its exchange and the symbols it subscribed, in order."""

    def __init__(
        self, exchange: str, stream: trio.SocketStream, protocol: ServerProtocol, conn_id: int
    ) -> None:
        self.exchange = exchange
        self.stream = stream
        self.protocol = protocol
        self.conn_id = conn_id
        self.symbols: dict[str, None] = {}  # an ordered set
        #: Acks and frames share the socket: one writer at a time.
        self.lock = trio.StrictFIFOLock()

    async def flush(self) -> None:
        async with self.lock:
            data = b"".join(self.protocol.data_to_send())
            if data:
                await self.stream.send_all(data)

    def answer(self, text: str) -> None:
        """Acknowledge what one request asks for (unknown symbols are acknowledged too: the
        bench subscribes only its own) and answer keepalives."""
        if text == "ping":  # OKX's plain-text keepalive
            self.protocol.send_text(b"pong")
            return
        request = orjson.loads(text)
        if self.exchange == "binance":
            names = [param.partition("@")[0] for param in request.get("params", [])]
            self._track(request["method"] == "SUBSCRIBE", names)
            self._send({"result": None, "id": request["id"]})
        elif self.exchange == "bybit":
            op = request.get("op")
            base = {"conn_id": f"bench-{self.conn_id}", "req_id": request.get("req_id", ""), "op": op}
            if op == "ping":
                self._send({"success": True, "ret_msg": "pong"} | base)
                return
            self._track(op == "subscribe", [topic.rpartition(".")[2] for topic in request.get("args", [])])
            self._send({"success": True, "ret_msg": ""} | base)
        else:
            args = request.get("args", [])
            self._track(request.get("op") == "subscribe", [arg["instId"] for arg in args])
            for arg in args:
                self._send({"event": request["op"], "arg": arg, "connId": f"bench-{self.conn_id}"})

    def _send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(orjson.dumps(message))

    def _track(self, subscribe: bool, names: Iterable[str]) -> None:
        """``names`` are native; :attr:`symbols` keeps the native names, deduplicated."""
        for name in names:
            if subscribe:
                self.symbols[name] = None
            else:
                self.symbols.pop(name, None)


class FakeMarket:
    """Serves every exchange of ``markets`` on one port (told apart by the URL's path), then
    sends what it is told to."""

    def __init__(self, markets: Markets) -> None:
        self.markets = markets
        self.unified = {
            (exchange, native(exchange, symbol)): symbol
            for exchange, names in markets.items()
            for symbol in names
        }
        self.connections: list[Connection] = []
        self.changed = trio.Event()
        self.seq = 0
        self._conn_ids = itertools.count(1)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    @staticmethod
    def _exchange(path: str) -> str:
        for exchange, prefix in sorted(PATHS.items(), key=lambda item: -len(item[1])):
            if path.startswith(prefix):
                return exchange
        raise ValueError(f"no fake exchange at {path}")

    async def handle(self, stream: trio.SocketStream) -> None:
        """One daemon connection: handshake, then answer its requests until it goes."""
        protocol = ServerProtocol(max_size=None)
        conn: Connection | None = None
        try:
            while True:
                data = await stream.receive_some()
                if not data:
                    return
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Request):
                        protocol.send_response(protocol.accept(event))
                        conn = Connection(self._exchange(event.path), stream, protocol, next(self._conn_ids))
                        self.connections.append(conn)
                    elif isinstance(event, Frame) and event.opcode.name == "TEXT" and conn is not None:
                        conn.answer(event.data.decode())
                if conn is not None:
                    await conn.flush()
                else:
                    await stream.send_all(b"".join(protocol.data_to_send()))
                self._notify()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            if conn is not None:
                self.connections.remove(conn)
                self._notify()

    def subscribed(self) -> int:
        return sum(len(conn.symbols) for conn in self.connections)

    async def wait_subscribed(self, count: int) -> dict[str, int]:
        """Wait for ``count`` subscriptions; the connections each exchange has then."""
        while self.subscribed() < count:
            await self.changed.wait()
        return {
            exchange: sum(1 for conn in self.connections if conn.exchange == exchange and conn.symbols)
            for exchange in self.markets
        }

    def _cycle(self) -> list[tuple[Connection, str]]:
        """Each live connection's subscribed symbols (unified), interleaved: connection 1's
        first, connection 2's first, …, connection 1's second, …"""
        columns = [
            [
                (conn, self.unified[(conn.exchange, name)])
                for name in conn.symbols
                if (conn.exchange, name) in self.unified
            ]
            for conn in self.connections
        ]
        return [item for row in itertools.zip_longest(*columns) for item in row if item is not None]

    def _frames(self, count: int) -> tuple[list[tuple[Connection, bytes, bytes]], list[tuple[Key, int]]]:
        """``count`` frames around their send-time placeholder, and the last sequence number of
        every (exchange, symbol) they carry."""
        cycle = self._cycle()
        frames: list[tuple[Connection, bytes, bytes]] = []
        last: dict[Key, int] = {}
        for i in range(count):
            self.seq += 1
            conn, symbol = cycle[i % len(cycle)]
            frames.append((conn, *frame(conn.exchange, symbol, self.seq)))
            last[(conn.exchange, symbol)] = self.seq
        return frames, sorted(last.items())

    @staticmethod
    async def _send(frames: list[tuple[Connection, bytes, bytes]]) -> None:
        """Stamp ``frames`` now and write them, one ``send_all`` per connection."""
        stamp = _stamp()
        by_conn: dict[Connection, list[bytes]] = {}
        for conn, head, tail in frames:
            by_conn.setdefault(conn, []).append(head + stamp + tail)
        for conn, parts in by_conn.items():
            async with conn.lock:
                await conn.stream.send_all(b"".join(parts))

    async def burst(self, count: int) -> dict[str, Any]:
        """``count`` frames as fast as the sockets take them, ``CHUNK`` per round."""
        frames, last = self._frames(count)
        first = time.time()
        for start in range(0, count, CHUNK):
            await self._send(frames[start : start + CHUNK])
        return {"first_sent": first, "last": last, "sent": count, "seconds": 0.0}

    async def rate(self, per_second: int, seconds: float, clustered: bool = False) -> dict[str, Any]:
        """``per_second`` frames for ``seconds``, each stamped as it is sent: spread evenly
        (what is due every millisecond), or ``clustered``: each second's frames at once, at the
        start of the second."""
        total = int(per_second * seconds)
        frames, last = self._frames(total)
        first = time.time()
        async for sent, due in _paced(per_second, total, clustered):
            await self._send(frames[sent:due])
        return {"first_sent": first, "last": last, "sent": total, "seconds": seconds}

    async def floor(
        self, per_second: int, seconds: float, prefix: str, clustered: bool = False
    ) -> dict[str, Any]:
        """The harness alone: the same pacing, but records published straight to Redis (no
        daemon), so that the watcher's own latency on this machine is known.  (redis-py
        blocks this loop while it publishes: this is the harness, not the daemon.)"""
        client = redis.Redis.from_url(REDIS_URL)
        layout = RedisLayout(prefix)
        keys = [(exchange, symbol) for exchange, names in self.markets.items() for symbol in names]
        total = int(per_second * seconds)
        last: dict[Key, int] = {}
        first = time.time()
        async for sent, due in _paced(per_second, total, clustered):
            stamp = time.time()
            pipe = client.pipeline(transaction=False)
            for seq in range(sent + 1, due + 1):
                exchange, symbol = keys[seq % len(keys)]
                record = {
                    "exchange": exchange,
                    "symbol": symbol,
                    "bid_size": stamp,
                    "ask_size": seq,
                    "received_ts": stamp,
                }
                pipe.publish(layout.updates(exchange, symbol), orjson.dumps(record))
                last[(exchange, symbol)] = seq
            pipe.execute()
        client.close()
        return {"first_sent": first, "last": sorted(last.items()), "sent": total, "seconds": seconds}


def run_fake(markets: Markets, pipe: multiprocessing.connection.Connection) -> None:
    """The fake's process: serve, and run the commands that come down ``pipe``."""

    async def main() -> None:
        fake = FakeMarket(markets)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, fake.handle, 0)
            pipe.send(listeners[0].socket.getsockname()[1])
            while True:
                command, *args = await trio.to_thread.run_sync(pipe.recv)
                if command == "stop":
                    nursery.cancel_scope.cancel()
                    return
                pipe.send(await getattr(fake, command)(*args))

    trio.run(main)
