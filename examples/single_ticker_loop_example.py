"""Collect exactly 10 new tickers of one symbol, then exit.

    python examples/single_ticker_loop_example.py [exchange] [--symbol BTC/USD] [--url ws://…]

Runs tickerd in this process for one symbol of one exchange (Kraken unless named; every
exchange here uses public feeds, so no API keys are needed) and waits on the symbol's
``ticker_updates:{exchange}:{symbol}`` channel for each new ticker (``tickerd.client``'s
``updates``) instead of re-reading the hash: a reader never sees the same value twice, and never
misses a newer one by polling too slowly.  ``--url`` points the exchange at another websocket
(a relay, a fake server).
"""

from __future__ import annotations

import argparse
import sys

import attrs
import trio

import tickerd
from tickerd import exchanges, logs
from tickerd.client import TickerClient
from tickerd.config import ExchangeConfig
from tickerd.embedded import resolved

COUNT = 10


async def collect(config: tickerd.Config, exchange: str, symbol: str) -> None:
    # Subscribed before the daemon starts, so the very first ticker is not missed.
    with (
        TickerClient.from_url(config.redis.address, prefix=config.redis.prefix) as client,
        client.updates(exchange, [symbol]) as updates,
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(tickerd.serve, config)
            last_seen = 0.0
            count = 0
            while count < COUNT:
                # redis-py blocks, so through trio's thread bridge, at most a second at a time
                ticker = await trio.to_thread.run_sync(updates.get, 1.0)
                if ticker is None or ticker.received_ts <= last_seen:
                    continue  # nothing yet, or not newer than what we have: not a new ticker
                last_seen = ticker.received_ts
                count += 1
                prices = f"last {ticker.last} bid {ticker.bid} ask {ticker.ask}"
                print(f"{count:2}/{COUNT} {exchange} {symbol}: {prices}")
            nursery.cancel_scope.cancel()  # stops the daemon (it flushes first)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("exchange", nargs="?", default="kraken", choices=exchanges.names())
    parser.add_argument("--symbol", help="unified symbol (default: a liquid one of the exchange)")
    parser.add_argument("--url", help="the exchange's websocket URL (default: the real one)")
    args = parser.parse_args()
    symbol = args.symbol or exchanges.get(args.exchange).sample_symbols[0]
    try:
        base = tickerd.load_config()  # REDIS_URL, REDIS_PREFIX, LOG_LEVEL… still apply
        config = attrs.evolve(
            base, exchanges={args.exchange: ExchangeConfig(symbols=(symbol,), url=args.url)}
        )
    except tickerd.ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    logs.configure(config.log)
    try:
        with resolved(config) as config:
            trio.run(collect, config, args.exchange, symbol)
    except KeyboardInterrupt:
        sys.exit(130)
