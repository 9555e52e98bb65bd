"""The whole pipeline, embedded: tickerd from a configuration, its tickers as they reach Redis.

    python examples/run_example_pipeline.py [--config tickerd.toml]

Runs the daemon in this process (``tickerd.serve``), reads every update back from Redis's
``ticker_updates:*`` channels with ``tickerd.client`` (as any consumer would), shows the
latest ticker of each symbol with a freshness mark once a second, and a status report from
``daemon.health()`` once connected and every 10 s.  Ctrl+C stops it cleanly: the daemon
flushes what it holds and the script exits 0.  Without a configuration it follows a few liquid
Kraken and Binance symbols; without ``REDIS_URL`` it uses 127.0.0.1:6379, or starts a private
redis-server when nothing runs there.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import trio

import tickerd
from tickerd import Ticker, logs
from tickerd.client import TickerClient
from tickerd.embedded import resolved

STATUS_EVERY = 10.0


async def follow_updates(config: tickerd.Config, latest: dict[tuple[str, str], Ticker]) -> None:
    """Keep ``latest`` up to date from the pub/sub channels (redis-py blocks: trio's thread
    bridge, at most 0.2 s at a time so that the task stays cancellable)."""
    with (
        TickerClient.from_url(config.redis.address, prefix=config.redis.prefix) as client,
        client.updates() as updates,
    ):
        while True:
            ticker = await trio.to_thread.run_sync(updates.get, 0.2)
            if ticker is not None:
                latest[ticker.exchange, ticker.symbol] = ticker


async def display(latest: dict[tuple[str, str], Ticker], stale_after: float) -> None:
    """Once a second: each symbol's latest bid/ask/last, its age, and ● fresh or ○ stale."""
    while True:
        await trio.sleep(1)
        now = time.time()
        print(time.strftime("%H:%M:%S"), f"{len(latest)} tickers")
        for (exchange, symbol), ticker in sorted(latest.items()):
            age = now - ticker.received_ts
            mark = "○ stale" if age >= stale_after else "● fresh"
            print(
                f"  {exchange:<10} {symbol:<14} bid {ticker.bid!s:>12} ask {ticker.ask!s:>12} "
                f"last {ticker.last!s:>12}  {age:5.1f} s  {mark}"
            )


async def report_status(daemon: tickerd.TickerDaemon) -> None:
    """A status report once connected (5 s at most) and every 10 s, from the daemon's own health."""
    with trio.move_on_after(5):
        while any(e.state != "connected" for e in daemon.health().exchanges.values()):
            await daemon.health_changed()
    while True:
        health = daemon.health()
        print("status:", "Redis up" if health.writer.redis_up else "Redis DOWN",
              f"{health.writer.written} tickers written")  # fmt: skip
        for name, exchange in sorted(health.exchanges.items()):
            print(
                f"  {name:<10} {exchange.state:<12} {exchange.connections} connection(s), "
                f"{len(exchange.symbols)} symbols, {len(exchange.stale)} stale, "
                f"{len(exchange.rejected)} rejected, {exchange.reconnects} reconnects"
            )
        await trio.sleep(STATUS_EVERY)


async def main(config: tickerd.Config) -> None:
    latest: dict[tuple[str, str], Ticker] = {}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_updates, config, latest)
            daemon = await nursery.start(tickerd.serve, config)
            nursery.start_soon(display, latest, config.health.stale_after)
            nursery.start_soon(report_status, daemon)
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: stopping (the daemon flushes its last values)")
                nursery.cancel_scope.cancel()
    print("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (default: the built-in one)")
    args = parser.parse_args()
    try:
        loaded = tickerd.load_config(args.config)
    except tickerd.ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    logs.configure(loaded.log)
    with resolved(loaded) as config:
        trio.run(main, config)
