"""The writer's cost per batch, without the pipeline around it: build the commands, one round trip.

    .venv/bin/python bench/write.py [--sizes 1,10,200,1000] [--layout extended --layout fullon]
        [--write plain --write monotonic --write rejected] [--seconds 1.0] [--url redis://…]

For each ticker layout, write and batch size, a batch of that many distinct symbols (full tickers,
every field set, a sequence number) is timed in the two steps the writer runs per batch
(``RedisWriter._send`` and ``_confirm``):

* **build**: ``RedisLayout.ticker_commands`` (each ticker JSON-encoded once, then the commands);
* **round trip**: those commands through the writer's own connection
  (:class:`~tickerd.writer.connection.RedisConnection`: packed, sent once, one reply read
  each) against the local Redis, back to back in a trio loop, under a key prefix of its own
  that is deleted afterwards.  ``--url redis+cluster://…`` measures the cluster's connection
  instead (:class:`~tickerd.writer.cluster.ClusterConnection`: redis-py's cluster pipeline in
  a worker thread; ``redis/ticker`` then sums the masters' time).

The writes, so that one run compares the fleet's compare-and-set with the plain write:

* ``plain``: one ``HSET`` per exchange, a ``PUBLISH`` per ticker (the fullon layout's ``MSET`` of
  ``ticker_time`` keys besides);
* ``monotonic``: ``RedisLayout(monotonic=True)``, every value accepted: the script reads the
  stored value, compares, then ``HSET`` and ``PUBLISH``.  Its arguments carry a time a second
  later than the one inside the JSON it stores, so each repetition is newer than what the
  previous one left (the fullon layout's ``ticker_time`` scripts see their own time again after
  the first repetition: a ``GET`` and no ``SET``);
* ``rejected``: the same batch again and again, every value the stored one (its receive time
  too): the script reads and compares, a tie, so it reads the two receive times as well (the
  fullon record has none: it compares the two values), and writes and publishes nothing.

Each step repeats for ``--seconds`` (at least 10 batches) and reports the mean; ``+/ticker`` is
the write's extra cost per ticker over ``plain`` of the same layout and size (when measured).
``redis/ticker`` is Redis's own time per ticker during the round trips (the ``usec`` of
``INFO commandstats``, before and after): it does not count the waits of a busy machine, but it
counts every other client's commands too, so point ``--url`` at a server of the bench's own
(``redis-server --port 6390 --save ''``) for that column.  No sockets but Redis, nothing else in
the event loop.
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from collections.abc import Awaitable, Callable

import trio
from redis.cluster import RedisCluster

from tickerd import topology
from tickerd.layout import LAYOUTS, Command, RedisLayout
from tickerd.model import Ticker
from tickerd.monotonic import TICKER_TIME, TICKERS
from tickerd.writer.connection import Connection
from tickerd.writer.loop import connection as writer_connection

REDIS_URL = "redis://127.0.0.1:6379/0"
EXCHANGE = "binance"
#: Fewer repetitions than this would make the mean a single sample's noise.
MIN_BATCHES = 10
#: The writes compared (see the module's docstring).
WRITES = ("plain", "monotonic", "rejected")


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
            sequence=1_000_000 + i,
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


async def round_trips(connection: Connection, commands: list[Command], budget: float) -> tuple[float, int]:
    """Seconds per round trip of ``commands``, and how many were made."""
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1
        await connection.send(commands)
        await connection.replies()

    try:
        await connection.send(commands)  # the scripts loaded, the values stored
        await connection.replies()
        return await mean_seconds_async(once, budget), calls
    finally:
        connection.close()  # in the event loop that owns its socket


def server_usec(client: topology.Client) -> int:
    """Microseconds the server (a cluster's masters) spent in commands since its statistics
    were last reset."""
    if isinstance(client, RedisCluster):
        masters = client.get_primaries()  # type: ignore[no-untyped-call]
        return sum(server_usec(client.get_redis_connection(master)) for master in masters)
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return sum(stat["usec"] for stat in stats.values())


def always_newer(commands: list[Command]) -> list[Command]:
    """``commands`` with every script argument's time a second later than the stored JSON's:
    each repetition is accepted (written and published) again."""
    later: list[Command] = []
    for command in commands:
        if command[:2] == ("EVALSHA", TICKERS.sha) or command[:2] == ["EVALSHA", TICKERS.sha]:
            arguments = list(command)
            for i in range(8, len(arguments), 4):  # symbol, sequence, time, JSON from argument 6
                arguments[i] = repr(float(arguments[i]) + 1.0)
            later.append(arguments)
        elif command[:2] == ("EVALSHA", TICKER_TIME.sha):
            later.append((*command[:4], repr(float(command[4]) + 1.0)))
        else:
            later.append(command)
    return later


def bench(
    client: topology.Client, url: str, layout: RedisLayout, write: str, size: int, budget: float
) -> dict[str, float]:
    batch = batch_of(size)
    commands = layout.ticker_commands(batch)
    if write == "monotonic":
        commands = always_newer(commands)
    build = mean_seconds(lambda: layout.ticker_commands(batch), budget)
    connection = writer_connection(url, layout)
    before = server_usec(client)
    round_trip, calls = trio.run(round_trips, connection, commands, budget)
    redis_usec = (server_usec(client) - before) / ((calls + 1) * size)
    return {
        "build": build * 1e6,
        "round_trip": round_trip * 1e6,
        "commands": len(commands),
        "redis": redis_usec,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,200,1000", help="batch sizes, comma-separated")
    parser.add_argument("--layout", action="append", choices=LAYOUTS, help="default: both")
    parser.add_argument("--write", action="append", choices=WRITES, help="default: all three")
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget of each measurement")
    parser.add_argument("--url", default=REDIS_URL, help=f"the Redis written to (default {REDIS_URL})")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    client = topology.client(args.url)
    client.ping()
    prefix = f"bench-write-{uuid.uuid4().hex[:8]}:"
    print(
        f"{'layout':<9} {'write':<10} {'batch':>6} {'commands':>9} {'build µs':>10} {'trip µs':>10}"
        f" {'total µs':>10} {'build/ticker':>13} {'trip/ticker':>12} {'total/ticker':>13} {'+/ticker':>9}"
        f" {'redis/ticker':>13}"
    )
    try:
        for kind in args.layout or LAYOUTS:
            plain: dict[int, float] = {}
            for write in args.write or WRITES:
                # Each write under a prefix of its own: none finds what another stored.
                layout = RedisLayout(f"{prefix}{write}:", kind, monotonic=write != "plain")
                for size in sizes:
                    r = bench(client, args.url, layout, write, size, args.seconds)
                    total = r["build"] + r["round_trip"]
                    if write == "plain":
                        plain[size] = total / size
                    extra = f"{total / size - plain[size]:>9.2f}" if size in plain else f"{'':>9}"
                    print(
                        f"{kind:<9} {write:<10} {size:>6,} {r['commands']:>9.0f} {r['build']:>10.1f}"
                        f" {r['round_trip']:>10.1f} {total:>10.1f} {r['build'] / size:>13.2f}"
                        f" {r['round_trip'] / size:>12.2f} {total / size:>13.2f} {extra} {r['redis']:>13.2f}",
                        flush=True,
                    )
    finally:
        for key in client.scan_iter(RedisLayout(prefix).owned_pattern()):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
