"""Record encoding cost per ticker, per layout: the writer's CPU per ticker, without Redis.

    .venv/bin/python bench/encode.py [--tickers 20000] [--batch 1 --batch 100] [--repeat 5]

The tickers are what the decoders make of every exchange's fake frames (``bench/decode.py``'s
symbols and frames, every exchange in turn), so the records carry the fields, the ``None``\\ s
and the digits real feeds give.  For each layout ``[redis] layout`` chooses from:

* **encode**: ``RedisLayout.encode_ticker`` of one ticker: the JSON record the hash stores and
  the channel publishes;
* **commands, batch N**: ``RedisLayout.ticker_commands`` of batches of N distinct symbols (the
  writer's latest-per-key batch), per ticker: the record, the ``HSET`` fields, the ``PUBLISH``
  and, in the fullon layout, the ``ticker_time`` ``MSET``.

Each figure is the best of ``--repeat`` passes over all the tickers, in CPU time of this process
(on a shared machine the slower passes, and wall-clock time, measure the neighbours).  This is
the baseline a new Ticker field (it grows the extended record) or a new write (compare-and-set)
is measured against; ``bench/write.py`` adds the Redis round trip.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import time
from collections.abc import Callable

import attrs
from decode import symbols_for

from tickerd import exchanges
from tickerd.layout import LAYOUTS, RedisLayout
from tickerd.model import Ticker
from tickerd.testing import fake_for

#: Symbols per exchange: with several exchanges, enough distinct keys for a batch of 1,000.
SYMBOLS = 200


def decoded_tickers(count: int) -> list[Ticker]:
    """``count`` tickers, decoded from the exchanges' fake frames, the exchanges interleaved."""
    names = exchanges.names()
    per_exchange: list[list[Ticker]] = []
    for name in names:
        chosen = symbols_for(name, SYMBOLS)
        setup, updates = fake_for(name)().bench_frames(chosen, count // len(names) + 1)
        decoder = exchanges.get(name).decoder(chosen)
        for frame in setup:
            decoder.decode(frame)
        per_exchange.append([t for frame in updates for t in decoder.decode(frame)])
    mixed = [t for group in itertools.zip_longest(*per_exchange) for t in group if t is not None]
    return mixed[:count]


def best(run: Callable[[], None], repeat: int) -> float:
    """The shortest of ``repeat`` timed runs of ``run``, in CPU seconds."""
    elapsed = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        run()
        elapsed = min(elapsed, time.process_time() - started)
    return elapsed


def batches(tickers: list[Ticker], size: int) -> list[dict[tuple[str, str], Ticker]]:
    """``tickers`` cut into latest-per-key batches of ``size`` distinct (exchange, symbol) keys."""
    cut: list[dict[tuple[str, str], Ticker]] = [{}]
    for t in tickers:
        if len(cut[-1]) == size or (t.exchange, t.symbol) in cut[-1]:
            cut.append({})
        cut[-1][t.exchange, t.symbol] = t
    return cut


def encode_all(encode: Callable[[Ticker], bytes], tickers: list[Ticker]) -> None:
    for t in tickers:
        encode(t)


def build_all(layout: RedisLayout, cut: list[dict[tuple[str, str], Ticker]]) -> None:
    commands = layout.ticker_commands
    for batch in cut:
        commands(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=20_000, help="tickers encoded per pass")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default: 1, 100)")
    parser.add_argument("--repeat", type=int, default=5, help="passes per figure; the best is shown")
    args = parser.parse_args()
    tickers = decoded_tickers(args.tickers)
    sizes = args.batch or [1, 100]
    fields = len(attrs.fields(Ticker))
    print(f"{len(tickers):,} tickers from {len(exchanges.names())} exchanges; Ticker has {fields} fields")
    print(f"{'layout':<10} {'step':<20} {'µs/ticker':>10} {'bytes/record':>13}")
    for kind in LAYOUTS:
        layout = RedisLayout(prefix="bench:", kind=kind)
        size = sum(len(layout.encode_ticker(t)) for t in tickers) / len(tickers)
        seconds = best(functools.partial(encode_all, layout.encode_ticker, tickers), args.repeat)
        print(f"{kind:<10} {'encode':<20} {seconds / len(tickers) * 1e6:>10.2f} {size:>13.0f}", flush=True)
        for batch_size in sizes:
            seconds = best(functools.partial(build_all, layout, batches(tickers, batch_size)), args.repeat)
            step = f"commands, batch {batch_size}"
            print(f"{kind:<10} {step:<20} {seconds / len(tickers) * 1e6:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
