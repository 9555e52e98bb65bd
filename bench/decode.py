"""Decode cost per frame, per exchange: each adapter's decoder over realistic frames.

    .venv/bin/python bench/decode.py [--frames 300000] [--symbols 20] [--repeat 3] [--exchange NAME ...]

Frames come from the exchange's fake (``fake_for(name)().bench_frames``): the setup frames a
decoder must see first (acks that assign channel ids, snapshots that deltas build on), then
ticker updates cycling through the symbols with moving prices, exactly as the exchange sends
them.  The symbols take the market forms of the adapter's ``sample_symbols`` in turn (spot and
perpetuals where it has both) with other base assets.  Only the updates are timed, ``--repeat``
times with a fresh decoder each, in CPU time of this process (the best run is reported: on a
shared machine the slower runs, and wall-clock time, measure the neighbours).  One process, one
core; no sockets, no Redis.

The first line is the bare cost of one :class:`~tickerd.model.Ticker` (all fields, positional, as
the decoders build them); the ``Ticker %`` column is that cost times the tickers per frame, as a
share of the frame's decode time: the part of decoding that a field added to ``Ticker`` grows.
"""

from __future__ import annotations

import argparse
import gc
import time
import timeit

import attrs

from tickerd import exchanges
from tickerd.exchanges.base import market
from tickerd.model import Ticker
from tickerd.testing import fake_for

BASES = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "LTC", "BCH", "UNI")


def rebased(symbol: str, base: str) -> str:
    """``symbol``'s market (quote, settlement, expiry) with another base asset; an inverse
    market settles in its new base."""
    parts = market(symbol)
    settle = base if parts.inverse else parts.settle
    return attrs.evolve(parts, base=base, settle=settle).symbol


def symbols_for(name: str, count: int) -> list[str]:
    """``count`` symbols of ``name``, its sample markets in turn (numbered bases past the real ones)."""
    bases = [*BASES, *(f"X{i:03d}" for i in range(max(0, count - len(BASES))))][:count]
    samples = exchanges.get(name).sample_symbols
    return [rebased(samples[i % len(samples)], base) for i, base in enumerate(bases)]


def ticker_cost(repeat: int) -> float:
    """Seconds to build one Ticker with every field set, positionally (best of ``repeat``); fields
    added after the first twelve get a time."""
    now = time.time()
    values = (
        "binance",
        "BTC/USDT",
        100.0,
        99.99,
        100.01,
        1.5,
        2.5,
        12345.6,
        110.0,
        90.0,
        1.25,
        1.26,
        now,
        now,
    )
    number = 200_000
    runs = timeit.repeat(
        lambda: Ticker(*values), number=number, repeat=max(repeat, 3), timer=time.process_time
    )
    return min(runs) / number


def bench(name: str, frames: int, symbols: int, repeat: int = 1) -> dict[str, float]:
    chosen = symbols_for(name, symbols)
    setup, updates = fake_for(name)().bench_frames(chosen, frames)
    elapsed = float("inf")
    for _ in range(repeat):
        decoder = exchanges.get(name).decoder(chosen)
        for frame in setup:
            decoder.decode(frame)
        decode = decoder.decode
        tickers = 0
        gc.collect()
        started = time.process_time()
        for frame in updates:
            tickers += len(decode(frame))
        elapsed = min(elapsed, time.process_time() - started)
    return {
        "frames": len(updates),
        "seconds": elapsed,
        "per_s": len(updates) / elapsed,
        "us": elapsed / len(updates) * 1e6,
        "tickers": tickers / len(updates),
        "bytes": sum(len(f) for f in updates) / len(updates),
        "junk": decoder.junk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300_000, help="update frames per exchange")
    parser.add_argument("--symbols", type=int, default=20, help="symbols the frames cycle through")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per exchange; the best is shown")
    parser.add_argument("--exchange", action="append", choices=exchanges.names(), help="default: all")
    args = parser.parse_args()
    ticker = ticker_cost(args.repeat)
    print(f"Ticker construction ({len(attrs.fields(Ticker))} fields, positional): {ticker * 1e6:.2f} µs")
    print(
        f"{'exchange':<12} {'frames/s':>10} {'µs/frame':>9} {'Ticker %':>9} {'tickers/frame':>14} "
        f"{'bytes/frame':>12} junk"
    )
    for name in args.exchange or exchanges.names():
        r = bench(name, args.frames, args.symbols, args.repeat)
        share = r["tickers"] * ticker / (r["seconds"] / r["frames"]) * 100
        print(
            f"{name:<12} {r['per_s']:>10,.0f} {r['us']:>9.2f} {share:>8.0f}% {r['tickers']:>14.2f} "
            f"{r['bytes']:>12.0f} {r['junk']:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
