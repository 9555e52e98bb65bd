"""The daemon's memory through a Redis outage: RSS before, during and after.

    .venv/bin/python bench/outage.py [--symbols 1000] [--rate 1800] [--warmup 30]
        [--outage 60] [--after 60]

Three processes: a redis-server of the bench's own (killed with ``kill -9`` for ``--outage``
seconds, then started again, empty), the daemon (``python -m tickerd`` with all ``--symbols``
on Kraken), and this one, which runs the fake Kraken (``tickerd.testing``) pushing ``--rate``
frames/s across the symbols the whole time, and samples the daemon's ``VmRSS`` every second.

It prints the RSS course (one line per 5 s) and the summary: the mean RSS over the last 10 s
before the outage, the peak during it, and the mean over the last 10 s of ``--after`` (of the
last of ``--outages``).  The writer keeps one latest value per symbol while Redis is away, so
memory a failed retry left behind shows as a step per outage that stays.  One step after the
first outage is expected: the first batch that carries every symbol (``orjson`` results each
pin about 8 KiB of the allocator's memory while alive, ~8 MiB at 1,000 symbols), reused after.

To compare with another checkout, run it with ``PYTHONPATH=/path/to/that/checkout`` (the daemon
inherits it; the first line printed says which tickerd ran).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import orjson
import trio

# tests.processes, from this checkout; tickerd from PYTHONPATH first, when it is set
sys.path.append(str(Path(__file__).resolve().parent.parent))

import tickerd
from tests.processes import RedisServer
from tickerd.testing import FakeKraken

MiB = 1024.0


def rss(pid: int) -> float:
    """The process's resident set, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / MiB
    raise KeyError("VmRSS")


class Pusher:
    """``rate`` frames/s, cycling through ``symbols`` (a lively market: each one wiggles)."""

    def __init__(self, kraken: FakeKraken, symbols: list[str], rate: int) -> None:
        self.kraken, self.symbols, self.rate = kraken, symbols, rate
        self.sent = 0

    async def run(self) -> None:
        start = trio.current_time()
        while True:
            due = int((trio.current_time() - start) * self.rate)
            while self.sent < due:
                symbol = self.symbols[self.sent % len(self.symbols)]
                await self.kraken.push(symbol, **self.kraken.wiggle(symbol))
                self.sent += 1
            await trio.sleep(0.01)


async def main(args: argparse.Namespace) -> None:
    symbols = [f"S{i:04d}/USD" for i in range(args.symbols)]
    server = RedisServer()
    server.start()
    workdir = Path(tempfile.mkdtemp(prefix="tickerd-outage-"))
    samples: list[tuple[float, str, float]] = []  # (seconds since start, phase, RSS MiB)
    try:
        async with trio.open_nursery() as nursery:
            kraken = FakeKraken()
            await nursery.start(kraken.serve)
            config = workdir / "tickerd.toml"
            config.write_text(
                f'[redis]\nurl = "{server.url}"\n[log]\nlevel = "WARNING"\n'
                f'[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = {orjson.dumps(symbols).decode()}\n'
            )
            command = [sys.executable, "-m", "tickerd", "--config", str(config)]
            daemon = await trio.lowlevel.open_process(command)
            print(f"tickerd from {Path(tickerd.__file__).parent}; daemon pid {daemon.pid}", flush=True)
            with trio.fail_after(60):
                await kraken.wait_until(lambda: all(kraken.is_subscribed(s) for s in symbols))
            pusher = Pusher(kraken, symbols, args.rate)
            nursery.start_soon(pusher.run)
            began = time.monotonic()
            outage = [("outage", args.outage), ("after", args.after)]
            phases = [("before", args.warmup), *outage * args.outages]
            for phase, seconds in phases:
                if phase == "outage":
                    server.kill()
                elif phase == "after":
                    server.start()
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    now = time.monotonic() - began
                    samples.append((now, phase, rss(daemon.pid)))
                    if len(samples) % 5 == 1:
                        print(f"{now:6.0f} s  {phase:7} RSS {samples[-1][2]:6.1f} MiB", flush=True)
                    await trio.sleep(1.0)
            rate = pusher.sent / (time.monotonic() - began)
            daemon.send_signal(signal.SIGTERM)
            status = await daemon.wait()
            nursery.cancel_scope.cancel()
    finally:
        server.kill()
    before = [r for _, phase, r in samples if phase == "before"][-10:]
    during = [r for _, phase, r in samples if phase == "outage"]
    after = [r for _, phase, r in samples if phase == "after"][-10:]
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    print(
        f"\n{args.symbols} symbols, {rate:.0f} frames/s sent, {args.outages} x {args.outage:g} s outage: "
        f"RSS before {mean_before:.1f} MiB, peak during {max(during):.1f} MiB, after the last "
        f"{mean_after:.1f} MiB ({mean_after - mean_before:+.1f} MiB); daemon exit status {status}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1800, help="frames/s the fake sends")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the outage")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Redis is down")
    parser.add_argument("--after", type=float, default=60.0, help="seconds after Redis is back")
    parser.add_argument("--outages", type=int, default=1, help="outages, one after the other")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    trio.run(main, parser.parse_args())
