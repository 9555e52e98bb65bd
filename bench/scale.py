"""Scale in symbols: a running tickerd with 10,000 symbols across connections of fake exchanges.

    .venv/bin/python bench/scale.py [--symbols 10000] [--exchanges kraken,okx] [--period 10]
        [--interval 10] [--window 60] [--python PATH]

Four processes, so that the figures are the daemon's own: a private ``redis-server`` (keyspace
notifications on, so every health write is seen without ``MONITOR``), the fake exchanges (the
``tickerd.testing`` fakes, one per exchange, each symbol updated once per ``--period`` seconds:
a slow, steady rate), the daemon (``python -m tickerd``, with ``--python``'s interpreter, run in
the checkout that holds its ``.venv``: point it at another checkout's venv to measure that
commit) and this process, which watches Redis.

Printed:

* **peak RSS**: the daemon's ``VmHWM`` at the end (and ``VmRSS`` once every symbol has a ticker);
* **steady health writes**: per exchange record and for the heartbeat, over ``--window``
  seconds once every symbol has a ticker, against the bound of one per ``health.interval``;
* **state-change burst**: every connection of every fake is dropped, one every 50 ms (each is
  two state changes: reconnecting, then connected); for ``--burst`` seconds from the first drop,
  per exchange: record writes, the shortest gap between two, the first write's delay after the
  first drop (the first change of a quiet period is written at once);
* **record size** per exchange and the in-process JSON encode/decode time of such a record;
* **``tickerd status``**: wall time of the command (a new interpreter each time), 5 runs.

The staleness check's own cost at 1,000 and 10,000 symbols (in process, no I/O) is printed
first with ``--check`` (it needs this checkout's :mod:`tickerd.freshness`).
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import multiprocessing.connection
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import types
from pathlib import Path
from typing import Any

import attrs
import orjson
import redis
import trio

from tickerd.layout import RedisLayout
from tickerd.testing import FakeExchange, fake_for

PREFIX = "scale:"
LAYOUT = RedisLayout(PREFIX)
#: Seconds between two connections dropped in the burst: each drop is a state change (reconnecting,
#: then connected again), so the burst is a stream of changes, not one.
STAGGER = 0.05
#: Symbol names per exchange, in the form each adapter takes.
QUOTE = {"kraken": "USD", "okx": "USDT", "binance": "USDT", "bybit": "USDT"}


def symbols_of(exchange: str, count: int) -> list[str]:
    return [f"C{i}/{QUOTE.get(exchange, 'USD')}" for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the fakes (their own process) ----------------------------------------------------------


def run_fakes(plan: dict[str, int], period: float, pipe: multiprocessing.connection.Connection) -> None:
    """Serve one fake per exchange; push every subscribed symbol once per ``period`` seconds,
    spread evenly; drop every connection on ``drop``, one every :data:`STAGGER` seconds; stop on
    ``stop``."""

    async def steady(fake: FakeExchange, symbols: list[str]) -> None:
        tick = 0.05
        per_tick = max(1, math.ceil(len(symbols) * tick / period))
        at = 0
        while True:
            for symbol in symbols[at : at + per_tick]:
                if fake.is_subscribed(symbol):
                    fake.wiggle(symbol)
                    await fake.push(symbol)
            at = (at + per_tick) % len(symbols)
            await trio.sleep(tick)

    async def main() -> None:
        fakes: dict[str, FakeExchange] = {}
        async with trio.open_nursery() as nursery:
            for name, count in plan.items():
                fake = fakes[name] = await nursery.start(fake_for(name)().serve)
                nursery.start_soon(steady, fake, symbols_of(name, count))
            pipe.send({name: fake.url for name, fake in fakes.items()})
            while True:
                command = await trio.to_thread.run_sync(pipe.recv)
                if command == "stop":
                    nursery.cancel_scope.cancel()
                    return
                if command == "drop":  # one connection after another, the exchanges interleaved
                    open_ = [[c for c in fake.connections if not c.closed] for fake in fakes.values()]
                    for conn in itertools.chain.from_iterable(itertools.zip_longest(*open_)):
                        if conn is not None:
                            await conn.drop()
                            await trio.sleep(STAGGER)
                    pipe.send(True)

    trio.run(main)


# -- Redis and the daemon -------------------------------------------------------------------


class RedisServer:
    """A redis-server of the bench's own, with keyspace notifications for string commands."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--notify-keyspace-events", "K$g"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if b"Ready to accept connections" in line:
                return
        raise RuntimeError("redis-server exited before it was ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Writes:
    """Every write of a health record (a keyspace ``set``), with the time it was seen."""

    def __init__(self, client: redis.Redis) -> None:
        self.seen: list[tuple[float, str]] = []
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe(f"__keyspace@0__:{PREFIX}tickerd:*")
        self._stop = False
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop:
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["data"] == b"set":
                key = message["channel"].decode().partition(":")[2]
                self.seen.append((time.monotonic(), key))

    def between(self, key: str, start: float, end: float) -> list[float]:
        return [t for t, k in list(self.seen) if k == key and start <= t < end]

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self._pubsub.close()


class Daemon:
    """``python -m tickerd`` with ``python``; /proc figures for it."""

    def __init__(self, python: str, config: Path) -> None:
        self.process = subprocess.Popen(
            [python, "-m", "tickerd", "--config", str(config)], cwd=checkout(python)
        )

    def status(self, key: str) -> float:
        """A ``/proc/PID/status`` figure in MiB (``VmRSS``, ``VmHWM``)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the daemon exited with status {self.process.returncode}")
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def checkout(python: str) -> Path:
    """Where ``python -m tickerd`` runs: the checkout whose ``.venv`` holds ``python``, so that
    its own ``tickerd`` is imported (``-m`` puts the working directory first on the path; an
    editable install may point elsewhere), else this one."""
    root = Path(python).absolute().parents[2]
    return root if (root / "tickerd" / "__init__.py").exists() else Path(__file__).absolute().parents[1]


def write_config(
    path: Path, redis_url: str, urls: dict[str, str], plan: dict[str, int], interval: float
) -> None:
    lines = [
        f'[redis]\nurl = "{redis_url}"\nprefix = "{PREFIX}"',
        '[log]\nlevel = "WARNING"',
        f"[health]\ninterval = {interval}\nstale_after = 120.0",
    ]
    for name, count in plan.items():
        symbols = orjson.dumps(symbols_of(name, count)).decode()
        lines.append(f'[exchanges.{name}]\nurl = "{urls[name]}"\nsymbols = {symbols}')
    path.write_text("\n".join(lines) + "\n")


# -- the phases -----------------------------------------------------------------------------


def wait_all_ticked(client: redis.Redis, daemon: Daemon, plan: dict[str, int], limit: float = 300) -> float:
    """Seconds until every symbol has a value in Redis."""
    start = time.monotonic()
    while any(client.hlen(LAYOUT.tickers(name)) < count for name, count in plan.items()):
        if daemon.process.poll() is not None:
            raise RuntimeError("the daemon exited")
        if time.monotonic() - start > limit:
            raise RuntimeError("not every symbol ticked in time")
        time.sleep(0.2)
    return time.monotonic() - start


def gaps(times: list[float]) -> str:
    """The shortest gap between two consecutive writes (as seen here: a few ms of jitter)."""
    if len(times) < 2:
        return "-"
    return f"{min(b - a for a, b in itertools.pairwise(times)) * 1000:.0f} ms"


def burst(
    pipe: multiprocessing.connection.Connection, writes: Writes, names: list[str], seconds: float
) -> None:
    time.sleep(3)  # a quiet spell before it
    dropped = time.monotonic()
    pipe.send("drop")
    pipe.recv()
    time.sleep(max(0.0, dropped + seconds - time.monotonic()))
    every = f"{STAGGER * 1000:g} ms"
    print(f"state-change burst: every connection dropped, one every {every}; {seconds:g} s from the first")
    for name in names:
        times = writes.between(LAYOUT.health(name), dropped, dropped + seconds)
        first = f"{(times[0] - dropped) * 1000:.0f} ms" if times else "-"
        print(f"  {name:10} {len(times):4} writes, shortest gap {gaps(times)}, first after {first}")
    beats = writes.between(LAYOUT.heartbeat(), dropped, dropped + seconds)
    print(f"  heartbeat  {len(beats):4} writes, shortest gap {gaps(beats)}")


def record_costs(client: redis.Redis, names: list[str]) -> None:
    from tickerd import snapshots
    from tickerd.snapshots import ExchangeRecord

    for name in names:
        raw = client.get(LAYOUT.health(name))
        if raw is None:
            continue
        record = snapshots.loads(raw, ExchangeRecord, name)
        encode = timeit.timeit(lambda r=record: snapshots.dumps(r), number=20) / 20  # type: ignore[misc]
        decode = timeit.timeit(lambda r=raw: snapshots.loads(r, ExchangeRecord, "k"), number=20) / 20  # type: ignore[misc]
        print(
            f"record {name}: {len(raw):,} bytes ({len(record.symbols)} symbols), "
            f"encode {encode * 1000:.2f} ms, decode {decode * 1000:.2f} ms (this interpreter)"
        )


def status_times(python: str, config: Path, runs: int = 5) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(
            [python, "-m", "tickerd", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=checkout(python),
        )
        times.append(time.perf_counter() - start)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr.strip()[-200:]
    median, most = statistics.median(times), max(times)
    print(f"tickerd status: median {median:.2f} s, max {most:.2f} s ({runs} runs): {last}")
    start = time.perf_counter()
    subprocess.run([python, "-c", "import tickerd.commands.main"], check=True, cwd=checkout(python))
    print(f"  (of which the interpreter and imports alone: {time.perf_counter() - start:.2f} s)")


def check_cost() -> None:
    """The staleness check at 1,000 and 10,000 symbols, every symbol fresh and a few updated
    between checks (what a check costs in steady state), in process."""
    from tickerd.config import Config, ExchangeConfig
    from tickerd.daemon import _ExchangeRunner
    from tickerd.freshness import LastSeen
    from tickerd.logs import logger

    logger.remove()  # its stale and fresh-again lines, thousands of them

    @attrs.define(eq=False)
    class Conn:
        feed_id: int
        symbols: set[str]
        live: bool = True
        frame_count: int = 0
        last_ticker_at: float | None = None

        def resubscribe(self) -> None:
            """Never due here."""

    for count in (1_000, 10_000):
        writer = types.SimpleNamespace(last_seen=LastSeen())
        daemon: Any = types.SimpleNamespace(config=Config(), writer=writer)
        runner = _ExchangeRunner(daemon, "kraken", ExchangeConfig())
        names = [f"C{i}/USD" for i in range(count)]
        feeds = [Conn(i, set(names[j : j + 200])) for i, j in enumerate(range(0, count, 200))]
        runner.feeds = feeds  # type: ignore[assignment]
        for name in names:
            runner.staleness.watch(name, 0.0)
        writer.last_seen.taken([("kraken", n) for n in names], 1.0)
        runner.check_staleness(200.0)  # past stale_after: the subscribe baselines settle, once
        writer.last_seen.taken([("kraken", n) for n in names], 201.0)
        runner.check_staleness(202.0)
        reps, now, spent = 200, 202.0, 0.0
        for i in range(reps):
            now += 0.05
            writer.last_seen.taken([("kraken", names[i % count])], now)
            for feed in feeds:
                feed.frame_count += 1
                feed.last_ticker_at = now
            start = time.perf_counter()
            runner.check_staleness(now)
            spent += time.perf_counter() - start
        per = spent / reps * 1e6
        print(f"staleness check, {count:,} symbols in {len(feeds)} connections: {per:.1f} µs a check")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=10_000, help="in total, split over the exchanges")
    parser.add_argument("--exchanges", default="kraken,okx")
    parser.add_argument("--period", type=float, default=10.0, help="seconds between two updates of a symbol")
    parser.add_argument("--interval", type=float, default=10.0, help="health.interval")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of steady state measured")
    parser.add_argument("--burst", type=float, default=15.0, help="seconds measured after the drop")
    parser.add_argument("--python", default=sys.executable, help="the daemon's (and status's) interpreter")
    parser.add_argument("--check", action="store_true", help="print the staleness check's cost first")
    args = parser.parse_args()
    if args.check:
        check_cost()
    names = args.exchanges.split(",")
    plan = {name: args.symbols // len(names) for name in names}
    server = RedisServer()
    client = redis.Redis.from_url(server.url)
    parent, child = multiprocessing.Pipe()
    fakes = multiprocessing.Process(target=run_fakes, args=(plan, args.period, child), daemon=True)
    fakes.start()
    urls: dict[str, str] = parent.recv()
    writes = Writes(client)
    daemon = None
    try:
        with tempfile.TemporaryDirectory() as workdir:
            config = Path(workdir) / "scale.toml"
            write_config(config, server.url, urls, plan, args.interval)
            daemon = Daemon(args.python, config)
            settled = wait_all_ticked(client, daemon, plan)
            split = ", ".join(f"{n} {c:,}" for n, c in plan.items())
            rss = daemon.status("VmRSS")
            print(f"{args.symbols:,} symbols ({split}), each updated every {args.period:g} s:")
            print(f"  all in Redis after {settled:.1f} s; RSS then {rss:.0f} MiB")
            time.sleep(args.interval + 2)  # the start's changes are written; steady state from here
            start = time.monotonic()
            time.sleep(args.window)
            end = time.monotonic()
            bound = args.window / args.interval
            print(
                f"steady state, {args.window:g} s, health.interval {args.interval:g} s (bound {bound:g} + 1):"
            )
            for key in [LAYOUT.health(n) for n in names] + [LAYOUT.heartbeat()]:
                print(f"  {key.rpartition(':')[2]:10} {len(writes.between(key, start, end))} writes")
            burst(parent, writes, names, args.burst)
            record_costs(client, names)
            status_times(args.python, config)
            print(f"peak RSS {daemon.status('VmHWM'):.0f} MiB (VmHWM)")
            daemon.stop()
    finally:
        if daemon is not None and daemon.process.poll() is None:
            daemon.process.kill()
        writes.close()
        parent.send("stop")
        fakes.join(timeout=10)
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
