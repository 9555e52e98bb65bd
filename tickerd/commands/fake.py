"""``tickerd fake EXCHANGE [--port N]``: one fake exchange with a lively market, offline.

It serves :mod:`tickerd.testing`'s fake of the exchange on 127.0.0.1, with the prices of
``tickerd demo`` (:mod:`tickerd.testing.market`) for the exchange's sample symbols and for any
symbol a client subscribes, and prints its URL: point an example or your own configuration at
it (``url = "ws://127.0.0.1:N/…"`` under ``[exchanges.NAME]``) and try it without a network.
Ctrl+C (or SIGTERM) stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import random
import sys

import trio

from tickerd import exchanges
from tickerd.commands import EXIT_CONFIG, EXIT_OK, first_leaf, watch
from tickerd.testing import FakeExchange, fake_for
from tickerd.testing.market import lively, sample_symbols


async def serve_fake(name: str, port: int) -> None:
    """Serve exchange ``name``'s fake on ``port`` (0: any free one) with a lively market until
    cancelled; its URL is printed once it listens."""
    fake: FakeExchange = fake_for(name)()
    fake.port = port
    symbols = sample_symbols(name)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        print(fake.url, flush=True)
        settings = ", ".join(f'{key} = "{value}"' for key, value in fake.endpoints().items())
        print(
            f"tickerd fake: {name} at {fake.url}, lively prices for {', '.join(symbols)} and any symbol "
            f"you subscribe; use it with {settings} under [exchanges.{name}]; Ctrl+C stops it",
            file=sys.stderr,
            flush=True,
        )
        await lively(fake, symbols, random.Random())


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        print(f"tickerd fake: --port {args.port}: expected 1-65535 (or 0: any free port)", file=sys.stderr)
        return EXIT_CONFIG
    failure: BaseException | None = None
    try:
        trio.run(watch.until_interrupted, None, lambda: serve_fake(args.exchange, args.port))
    except* OSError as group:  # the port is taken
        failure = first_leaf(group)
    if failure is not None:
        print(f"tickerd fake: --port {args.port}: {failure}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fake",
        help="one fake exchange on 127.0.0.1 with lively prices; prints its URL (Ctrl+C exits)",
        description="Serve a fake of EXCHANGE (its real protocol) on 127.0.0.1 with synthetic prices "
        "and print its URL, so the examples and your own configuration can be tried offline.",
    )
    parser.add_argument(
        "exchange", choices=exchanges.names(), metavar="EXCHANGE", help=", ".join(exchanges.names())
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.set_defaults(func=run)
