"""Command line: ``tickerd [run] [--config FILE]`` runs the daemon.

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 2 for an invalid configuration (before
any connection is opened), 1 when a second signal cut the shutdown short.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import trio
from loguru import logger

from tickerd import config as config_module
from tickerd import logs
from tickerd.config import Config, ConfigError
from tickerd.daemon import serve

EXIT_OK = 0
EXIT_INTERRUPTED = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickerd",
        description="Keep the latest ticker of every configured (exchange, symbol) in Redis.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration (default: a built-in set of liquid Kraken and Binance symbols)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the daemon (the default)")
    return parser


async def run_until_signalled(config: Config) -> None:
    """Serve until SIGINT/SIGTERM; the first cancels and flushes, a second exits at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as outer:
            serve_scope = trio.CancelScope()

            async def _serve() -> None:
                with serve_scope:
                    await serve(config)
                outer.cancel_scope.cancel()

            outer.start_soon(_serve)
            async for signum in signals:
                name = signal.Signals(signum).name
                if serve_scope.cancel_called:
                    logger.warning("{signal} again: exiting now", signal=name)
                    os._exit(EXIT_INTERRUPTED)
                logger.info("{signal}: shutting down (flushing Redis writes)", signal=name)
                serve_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"tickerd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(config.log)
    trio.run(run_until_signalled, config)
    logger.info("tickerd stopped")
    return EXIT_OK
