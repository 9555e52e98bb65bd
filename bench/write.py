"""The writer's cost per batch, without the pipeline around it: build the commands, one round trip.

    .venv/bin/python bench/write.py [--sizes 1,10,100,1000] [--layout extended --layout fullon]
        [--seconds 1.0]

For each ticker layout and batch size, a batch of that many distinct symbols (full tickers,
every field set) is timed in the two steps the writer runs per batch (``RedisWriter._send``
and ``_confirm``):

* **build**: ``RedisLayout.ticker_commands`` (each ticker JSON-encoded once, the ``HSET``, the
  ``PUBLISH`` per ticker, and the fullon layout's ``MSET`` of ``ticker_time`` keys);
* **round trip**: those commands through the writer's own connection
  (:class:`~tickerd.writer.connection.RedisConnection`: packed, sent once, one reply read
  each) against the local Redis, back to back in a trio loop, under a key prefix of its own
  that is deleted afterwards.

Each step repeats for ``--seconds`` (at least 10 batches) and reports the mean.  No sockets
but Redis, nothing else in the event loop: what a change to the write itself (the fleet's
compare-and-set) adds or saves shows here before it drowns in ``bench/throughput.py``'s noise.
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from collections.abc import Awaitable, Callable

import redis
import trio

from tickerd.layout import LAYOUTS, Command, RedisLayout
from tickerd.model import Ticker
from tickerd.writer.connection import RedisConnection

REDIS_URL = "redis://127.0.0.1:6379/0"
EXCHANGE = "binance"
#: Fewer repetitions than this would make the mean a single sample's noise.
MIN_BATCHES = 10


def batch_of(size: int) -> dict[tuple[str, str], Ticker]:
    """``size`` distinct symbols' tickers, every field set (the widest record each layout writes)."""
    now = time.time()
    return {
        (EXCHANGE, f"X{i:04d}/USDT"): Ticker(
            exchange=EXCHANGE,
            symbol=f"X{i:04d}/USDT",
            last=100.0 + i,
            bid=99.99 + i,
            ask=100.01 + i,
            bid_size=1.5,
            ask_size=2.5,
            volume_24h=12345.678,
            high_24h=110.0 + i,
            low_24h=90.0 + i,
            change_24h=1.25,
            change_pct_24h=1.26,
            exchange_ts=now,
            received_ts=now,
        )
        for i in range(size)
    }


def mean_seconds(step: Callable[[], object], budget: float) -> float:
    """Seconds per call of ``step``, repeated for ``budget`` seconds (at least ``MIN_BATCHES``)."""
    gc.collect()
    calls = 0
    started = now = time.perf_counter()
    while calls < MIN_BATCHES or now - started < budget:
        step()
        calls += 1
        now = time.perf_counter()
    return (now - started) / calls


async def mean_seconds_async(step: Callable[[], Awaitable[object]], budget: float) -> float:
    """:func:`mean_seconds` for a step that runs in the event loop."""
    gc.collect()
    calls = 0
    started = now = time.perf_counter()
    while calls < MIN_BATCHES or now - started < budget:
        await step()
        calls += 1
        now = time.perf_counter()
    return (now - started) / calls


async def round_trips(connection: RedisConnection, commands: list[Command], budget: float) -> float:
    try:
        return await mean_seconds_async(lambda: connection.execute(commands), budget)
    finally:
        connection.close()  # in the event loop that owns its socket


def bench(connection: RedisConnection, layout: RedisLayout, size: int, budget: float) -> dict[str, float]:
    batch = batch_of(size)
    commands = layout.ticker_commands(batch)
    build = mean_seconds(lambda: layout.ticker_commands(batch), budget)
    round_trip = trio.run(round_trips, connection, commands, budget)
    return {"build": build * 1e6, "round_trip": round_trip * 1e6, "commands": len(commands)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100,1000", help="batch sizes, comma-separated")
    parser.add_argument("--layout", action="append", choices=LAYOUTS, help="default: both")
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget of each measurement")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    prefix = f"bench-write-{uuid.uuid4().hex[:8]}:"
    print(
        f"{'layout':<9} {'batch':>6} {'commands':>9} {'build µs':>10} {'trip µs':>10} {'total µs':>10}"
        f" {'build/ticker':>13} {'trip/ticker':>12} {'total/ticker':>13}"
    )
    try:
        for kind in args.layout or LAYOUTS:
            layout = RedisLayout(prefix, kind)
            for size in sizes:
                r = bench(RedisConnection(REDIS_URL), layout, size, args.seconds)
                total = r["build"] + r["round_trip"]
                print(
                    f"{kind:<9} {size:>6,} {r['commands']:>9.0f} {r['build']:>10.1f} {r['round_trip']:>10.1f}"
                    f" {total:>10.1f} {r['build'] / size:>13.2f} {r['round_trip'] / size:>12.2f}"
                    f" {total / size:>13.2f}",
                    flush=True,
                )
    finally:
        for key in client.scan_iter(RedisLayout(prefix).owned_pattern()):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
