"""Websocket receive cost per frame, per engine: bytes on a socket → messages handed over.

    .venv/bin/python bench/engine.py [--frames 200000] [--repeat 3] [--engine NAME ...]
    PYTHONPATH=OTHER .venv/bin/python bench/engine.py      # another checkout's engines

A server in a child process (so its work is not counted) accepts one websocket and writes
``--frames`` Binance-sized text frames (a ``bookTicker`` update, ~100 bytes each) as fast as the
socket takes them; this process connects through :func:`tickerd.transport.connect` and receives
them all.  Reported: CPU time of this process per frame (``getrusage``: user + system, so the
socket reads count), best of ``--repeat`` connections, and frames/s of wall time for
reference.  No decoding, no Redis: the engine alone, the part of a frame's cost beneath the
decoder that ``bench/decode.py`` measures.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import trio
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tickerd import transport

FRAME = (
    b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
)


def _frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x81, len(payload)]) + payload


async def _serve(frames: int) -> None:
    """Accept connections; send each ``frames`` frames, then wait for the client to go."""
    chunk = _frame(FRAME) * 500

    async def one(stream: trio.SocketStream) -> None:
        protocol = ServerProtocol()
        while True:
            protocol.receive_data(await stream.receive_some())
            events = protocol.events_received()
            if events:
                break
        [request] = events
        assert isinstance(request, Request)
        protocol.send_response(protocol.accept(request))
        await stream.send_all(b"".join(protocol.data_to_send()))
        for _ in range(frames // 500):
            await stream.send_all(chunk)
        while await stream.receive_some():
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(one, listeners)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _receive(url: str, engine: str, frames: int) -> tuple[float, float]:
    """CPU seconds and wall seconds to receive ``frames`` messages on one connection."""
    async with transport.connect(url, engine=engine) as conn:
        started, cpu = time.perf_counter(), _cpu()
        for _ in range(frames):
            await conn.receive()
        return _cpu() - cpu, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine", action="append", choices=transport.engine_names())
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child: frames per connection
    args = parser.parse_args()
    if args.serve:
        trio.run(_serve, args.serve)
        return
    frames = args.frames // 500 * 500
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(frames)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"ws://127.0.0.1:{server.stdout.readline().strip()}/ws"
        print(f"{frames:,} frames of {len(FRAME)} bytes per connection; best of {args.repeat}")
        for engine in args.engine or transport.engine_names():
            runs = [trio.run(_receive, url, engine, frames) for _ in range(args.repeat)]
            cpu, wall = min(runs)
            per_frame = cpu / frames * 1e6
            print(f"{engine:>16}: {per_frame:6.2f} µs of CPU per frame, {frames / wall:>10,.0f} frames/s")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
