"""``tickerd config sample`` and ``tickerd config check FILE``: the configuration on its own.

``sample`` prints every setting with its default and meaning (:mod:`tickerd.sample`), a file
to start from.  ``check`` loads FILE exactly as ``tickerd run --config FILE`` would, environment
overrides included, and stops there, like ``nginx -t`` or ``promtool check config``: it opens no
connection and resolves no name (Redis, PostgreSQL and the exchanges are only named), so it runs
on a build machine, in CI or before a restart.  Exit status: 0 valid (one line says so and what
the file sets up), 2 invalid (every problem listed, passwords masked like everywhere else).
"""

from __future__ import annotations

import argparse
import os

from tickerd import topology
from tickerd.commands import EXIT_CONFIG, EXIT_OK, load_or_report
from tickerd.config import Config, environment_variables
from tickerd.redact import redact
from tickerd.sample import COMMAND, sample


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser(
        "config",
        help="print a commented sample configuration, or check a file",
        description="Print the sample configuration, or check a file without connecting anywhere.",
    )
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    printing = actions.add_parser(
        "sample",
        help="print every setting with its default and meaning, as TOML",
        description=f"Print every setting with its default and meaning, as TOML ({COMMAND}).",
    )
    printing.set_defaults(func=print_sample)
    check = actions.add_parser(
        "check",
        help="validate FILE as `tickerd run` would, without connecting anywhere (exit 0 or 2)",
        description="Validate FILE, with the environment's overrides, as `tickerd run --config FILE` "
        "would, without connecting to Redis, PostgreSQL or any exchange. Exit 0 when it is valid, 2 "
        "listing every problem.",
    )
    # Stored where --config goes, so that the file is loaded (and its errors are reported) the
    # way every other command loads its configuration.
    check.add_argument("config", metavar="FILE", help="the TOML configuration to check")
    check.set_defaults(func=check_file)


def print_sample(args: argparse.Namespace) -> int:
    print(sample(), end="")
    return EXIT_OK


def check_file(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    print(f"{args.config}: configuration OK ({summary(config)})")
    return EXIT_OK


def summary(config: Config) -> str:
    """What a valid configuration sets up, in a few words: where the subscriptions come from,
    where tickers go (redacted) and which environment variables took part."""
    if config.database.url is not None:
        source = f"subscriptions from PostgreSQL {redact(config.database.url)}"
    else:
        collected = [exchange for exchange in config.exchanges.values() if exchange.enabled]
        symbols = sum(len(exchange.symbols) for exchange in collected)
        source = f"{_count(len(collected), 'exchange')}, {_count(symbols, 'symbol')}"
        if disabled := len(config.exchanges) - len(collected):
            source += f" ({disabled} more disabled)"
    redis = topology.describe(config.redis.address) + (" (the default)" if config.redis.url is None else "")
    prefix = f", prefix {config.redis.prefix!r}" if config.redis.prefix else ""
    used = [name for name in environment_variables() if name in os.environ]
    environment = f"; from the environment: {', '.join(used)}" if used else ""
    return f"{source} → Redis {redis}{prefix}{environment}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
