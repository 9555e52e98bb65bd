"""The floor under tickerd's CPU per frame at moderate rates, on this machine, without tickerd:
what it costs to be woken for each frame at all.

    .venv/bin/python bench/floor.py [--rates 1000,5000] [--seconds 5] [--window 0.005]

Another process sends small frames over a socket pair at a fixed rate (each frame a separate
send, as an exchange's are); the receiver does next to nothing with them, in four shapes:

- ``blocking``: plain Python, a blocking ``recv`` per wake-up (no event loop at all);
- ``trio``: a trio task waits for the socket and reads it (the feed's read, nothing else);
- ``trio+writer``: the same, handing each read through a memory channel to a second task that
  writes it to another socket and reads the answer of the one before (the design card's shape:
  feed → channel → one writer → Redis, with no decoding and no Redis);
- ``trio+writer, window``: that shape with the reader waiting for the next tick of
  ``--window`` before each read (``feed.batch_window``): frames share wake-ups, at the price
  of up to a window of latency.

It prints the receiver's CPU (user + system, ``getrusage``) per frame and per wake-up.  A
frame's own work in tickerd (cut, decode, encode: ~5 µs back to back) comes on top of these.
On the 2-core development VM a wake-up costs ~10 µs at 0.2 ms apart and far more after longer
idle (``bench/wake.py``), so no shape that is woken once a frame can spend less than that per
frame, whatever it does with the frame (README, Benchmarks).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable

import trio
from wake import cpu

from tickerd.pacing import next_tick

FRAME = (
    b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
)


def send_frames(fd: int, rate: int, seconds: float) -> None:
    """The sending process: ``rate`` frames a second for ``seconds``, then close (EOF)."""
    sock = socket.socket(fileno=fd)
    gap = 1.0 / rate
    due = time.perf_counter()
    for _ in range(int(rate * seconds)):
        due += gap
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        sock.send(FRAME)
    sock.close()


class Result:
    """What one shape cost: CPU seconds, frames and wake-ups (reads that returned data)."""

    def __init__(self) -> None:
        self.started = cpu()
        self.frames = 0
        self.reads = 0

    def row(self, shape: str, rate: int) -> str:
        spent = cpu() - self.started
        reads = max(self.reads, 1)
        return (
            f"{rate:>7,} {shape:<24} {spent / self.frames * 1e6:10.1f} {spent / reads * 1e6:10.1f}"
            f" {self.frames / reads:8.1f} {spent * 100 / (self.frames / rate):8.2f}"
        )


def blocking(sock: socket.socket) -> Result:
    result = Result()
    while data := sock.recv(65536):
        result.reads += 1
        result.frames += len(data) // len(FRAME)
    return result


def trio_shape(sock: socket.socket, *, writer: bool, window: float) -> Result:
    """The trio shapes (see the module's docstring)."""
    sock.setblocking(False)
    out, peer = socket.socketpair()
    out.setblocking(False)
    peer.setblocking(False)
    result = Result()

    async def write(receive: trio.MemoryReceiveChannel[bytes]) -> None:
        async for data in receive:
            out.send(data[:16])
            await trio.lowlevel.checkpoint()
            with contextlib.suppress(BlockingIOError):  # the answer, as the writer reads Redis's
                peer.recv(65536)

    async def tick() -> None:
        await trio.sleep_until(next_tick(trio.current_time(), window))

    async def main() -> None:
        send, receive = trio.open_memory_channel[bytes](4096)
        pace: Callable[[], Awaitable[None]] | None = tick if window else None
        async with trio.open_nursery() as nursery:
            if writer:
                nursery.start_soon(write, receive)
            while True:
                await trio.lowlevel.wait_readable(sock)
                data = os.read(sock.fileno(), 65536)
                if not data:
                    break
                result.reads += 1
                result.frames += len(data) // len(FRAME)
                if writer:
                    send.send_nowait(data)
                if pace is not None:
                    await pace()
            nursery.cancel_scope.cancel()

    trio.run(main)
    out.close()
    peer.close()
    return result


def measure(shape: str, rate: int, seconds: float, window: float) -> str:
    ours, theirs = socket.socketpair()
    sender = multiprocessing.get_context("fork").Process(
        target=send_frames, args=(theirs.fileno(), rate, seconds)
    )
    sender.start()
    theirs.close()  # the sender's copy is the one that ends the stream
    if shape == "blocking":
        result = blocking(ours)
    else:
        result = trio_shape(ours, writer=shape != "trio", window=window if "window" in shape else 0.0)
    row = result.row(shape if "window" not in shape else f"{shape} {window * 1000:g} ms", rate)
    sender.join()
    ours.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,5000", help="frames/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per rate and shape")
    parser.add_argument("--window", type=float, default=0.005, help="the window shape's tick (s)")
    args = parser.parse_args()
    print(f"{'rate':>7} {'shape':<24} {'µs/frame':>10} {'µs/wake':>10} {'frames/w':>8} {'% core':>8}")
    for rate in (int(r) for r in args.rates.split(",")):
        for shape in ("blocking", "trio", "trio+writer", "trio+writer, window"):
            print(measure(shape, rate, args.seconds, args.window), flush=True)


if __name__ == "__main__":
    main()
