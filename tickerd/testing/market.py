"""A lively synthetic market for fakes: what ``tickerd demo`` and ``tickerd fake`` serve.

Prices start near real markets (one table by base asset) and move as random walks, every
symbol in each round at an uneven pace, so the daemon, ``watch`` and a user's own config have
something to show offline.
"""

from __future__ import annotations

import random

import trio

from tickerd import exchanges
from tickerd.exchanges.base import split_unified
from tickerd.testing.binance import FakeBinance
from tickerd.testing.server import FakeExchange

#: Start prices by base asset, so that the random walks begin near real markets whatever the
#: exchange (its symbols are its adapter's ``sample_symbols``); another base starts wherever its
#: fake invents it.
START_PRICES: dict[str, float] = {"BTC": 64000.0, "ETH": 3200.0, "SOL": 150.0}


def sample_symbols(name: str) -> list[str]:
    """The symbols a lively fake of exchange ``name`` trades: its adapter's ``sample_symbols``."""
    return list(exchanges.get(name).sample_symbols)


def seed(fake: FakeExchange, symbol: str) -> None:
    """Start a symbol's random walk at a plausible price instead of a random one."""
    price = START_PRICES.get(split_unified(symbol)[0])
    if price is not None:
        fake.state(symbol).update(
            last=price, bid=price * 0.9999, ask=price * 1.0001, high=price * 1.02, low=price * 0.98
        )


def _trading(fake: FakeExchange, symbols: list[str]) -> list[str]:
    """``symbols``, then whatever else a client subscribed (a user's own config)."""
    subscribed = {s for conn in fake.connections if not conn.closed for s in conn.subscribed}
    return [*symbols, *sorted(subscribed.difference(symbols))]


async def lively(fake: FakeExchange, symbols: list[str], rng: random.Random) -> None:
    """Move and send prices at a lively, uneven pace until cancelled: every symbol of
    ``symbols`` and of the clients' subscriptions in each round (in a new order each time, so
    none is left without a ticker), a few rounds a second.  ``symbols`` start near real prices
    before the first checkpoint, so no client that subscribes meanwhile sees an invented one."""
    for symbol in symbols:
        seed(fake, symbol)
    started: set[str] = set()
    while True:
        await fake.wait_until(lambda: _trading(fake, symbols))
        current = _trading(fake, symbols)
        for symbol in rng.sample(current, len(current)):
            if symbol not in fake.market:  # a client's own symbol, not yet in a snapshot
                seed(fake, symbol)
            fake.wiggle(symbol)
            if isinstance(fake, FakeBinance) and (symbol not in started or rng.random() < 0.3):
                await fake.push_stats(symbol)  # Binance's last price travels on its own stream
            started.add(symbol)
            await fake.push(symbol)
            await trio.sleep(rng.uniform(0.02, 0.6) / len(current))
