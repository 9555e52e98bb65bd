"""``tickerd db init`` and ``tickerd symbols …``: tickerd's PostgreSQL tables from the shell.

Both read the database from the configuration (``DATABASE_URL`` or ``[database] url``).
Exit status: 0 done, 1 nothing matched or PostgreSQL could not be reached, 2 invalid input or
configuration (no database configured, unknown exchange, a symbol not in unified form, a
schema that ``tickerd db init`` has not created).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import psycopg

from tickerd import exchanges
from tickerd.commands import EXIT_CONFIG, EXIT_OK, add_config_option, load_or_report
from tickerd.config import Config
from tickerd.redact import redact
from tickerd.sources import tables
from tickerd.sources.database import conninfo, describe, one_line

EXIT_NOT_FOUND = 1
EXIT_UNREACHABLE = 1

_SYMBOLS_HELP = """\
examples:
  tickerd symbols list
  tickerd symbols add kraken BTC/USD        list a symbol (and its exchange), enabled
  tickerd symbols remove kraken BTC/USD     unlist it (the exchange row and its url stay)
  tickerd symbols disable kraken BTC/USD    stop collecting one symbol, keep it listed
  tickerd symbols disable kraken            stop collecting every symbol of an exchange
  tickerd symbols enable kraken [BTC/USD]   collect again

Symbols are unified: BASE/QUOTE for spot, BASE/QUOTE:SETTLE for perpetuals.
A running daemon applies each change within a second (LISTEN/NOTIFY).
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="manage tickerd's PostgreSQL schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    init = db_commands.add_parser(
        "init",
        help="create or upgrade the schema (idempotent; safe while daemons run)",
        description="Create tickerd's tables, or apply the migrations the database has not seen. "
        "Safe to run twice, and while daemons read.",
    )
    add_config_option(init)
    init.set_defaults(func=db_init)

    symbols = commands.add_parser(
        "symbols",
        help="list, add, remove, enable and disable collected symbols in PostgreSQL",
        description="Manage the exchanges and symbols tickerd collects, in PostgreSQL.",
        epilog=_SYMBOLS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = symbols.add_subparsers(dest="symbols_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every exchange and symbol with its state")
    add_config_option(listing)
    listing.set_defaults(func=symbols_list)
    for name, needs_symbol, func, text in (
        ("add", True, symbols_add, "list SYMBOL on EXCHANGE, enabled (the exchange too, if new)"),
        ("remove", True, symbols_remove, "unlist SYMBOL on EXCHANGE"),
        ("enable", False, symbols_enable, "collect SYMBOL again, or (no SYMBOL) the whole EXCHANGE"),
        ("disable", False, symbols_disable, "stop collecting SYMBOL, or (no SYMBOL) the whole EXCHANGE"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("exchange", metavar="EXCHANGE", help=f"one of {', '.join(exchanges.names())}")
        action.add_argument(
            "symbol",
            metavar="SYMBOL",
            nargs=None if needs_symbol else "?",
            help="unified: BTC/USDT, BTC/USDT:USDT",
        )
        add_config_option(action)
        action.set_defaults(func=func)


def _fail(message: str, status: int = EXIT_CONFIG) -> int:
    print(f"tickerd: {message}", file=sys.stderr)
    return status


def _database(args: argparse.Namespace) -> tuple[Config, str] | int:
    """The configuration and its database URL, or the exit status after saying why not."""
    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    if config.database.url is None:
        return _fail("no database configured: set DATABASE_URL or [database] url")
    if config.database.mode != "tickerd":
        return _fail(
            f"database.mode is {config.database.mode}: tickerd reads those tables as they are; "
            "manage the symbols there"
        )
    return config, config.database.url


def _connect(url: str) -> psycopg.Connection[Any] | int:
    try:
        return psycopg.connect(conninfo(url), autocommit=True)
    except psycopg.Error as exc:
        return _fail(f"cannot reach PostgreSQL {describe(url)}: {one_line(exc)}", EXIT_UNREACHABLE)


def db_init(args: argparse.Namespace) -> int:
    """``tickerd db init``."""
    found = _database(args)
    if isinstance(found, int):
        return found
    config, url = found
    schema = config.database.schema
    conn = _connect(url)
    if isinstance(conn, int):
        return conn
    with conn:
        before, applied = tables.init(conn, schema)
    where = f'schema "{schema}" in {describe(url)}'
    if not applied:
        print(f"{where} is up to date (version {before})")
    for migration in applied:
        print(f"{where}: applied migration {migration.version} ({migration.description})")
    if applied:
        print(f"{where} is at version {applied[-1].version}")
    return EXIT_OK


def _with_tables(args: argparse.Namespace, work: Callable[[psycopg.Connection[Any], str], int]) -> int:
    """Run ``work(connection, schema)`` on a database whose schema is current."""
    found = _database(args)
    if isinstance(found, int):
        return found
    config, url = found
    schema = config.database.schema
    conn = _connect(url)
    if isinstance(conn, int):
        return conn
    with conn:
        version = tables.version(conn, schema)
        if version is None or version < tables.LATEST:
            state = (
                "missing" if version is None else f"at version {version}, this tickerd needs {tables.LATEST}"
            )
            return _fail(f'the tickerd schema "{schema}" in {describe(url)} is {state}: run tickerd db init')
        return work(conn, schema)


def _checked(exchange: str, symbol: str | None) -> str | None:
    """Why (exchange, symbol) cannot be collected, or ``None``."""
    try:
        adapter = exchanges.get(exchange)
    except KeyError as exc:
        return str(exc.args[0])
    if symbol is not None:
        try:
            adapter.check_symbol(symbol)
        except ValueError as exc:
            return f"{exchange}: {exc}"
    return None


def symbols_list(args: argparse.Namespace) -> int:
    """``tickerd symbols list``."""

    def work(conn: psycopg.Connection[Any], schema: str) -> int:
        rows = tables.all_rows(conn, schema)
        if not rows:
            print("no exchanges listed; add one with: tickerd symbols add EXCHANGE SYMBOL")
            return EXIT_OK
        lines = [("EXCHANGE", "SYMBOL", "STATE")]
        collected = 0
        for exchange, exchange_on, url, symbol, symbol_on in rows:
            if symbol is None:
                state = "no symbols" if exchange_on else "exchange disabled"
            elif not exchange_on:
                state = "exchange disabled"
            else:
                state = "collected" if symbol_on else "disabled"
                collected += bool(symbol_on)
            lines.append((exchange, symbol or "-", state + (f" (url {redact(url)})" if url else "")))
        width = [max(len(line[i]) for line in lines) for i in range(2)]
        for exchange, symbol, state in lines:
            print(f"{exchange:<{width[0]}}  {symbol:<{width[1]}}  {state}")
        print(f"{collected} symbols collected")
        return EXIT_OK

    return _with_tables(args, work)


def symbols_add(args: argparse.Namespace) -> int:
    """``tickerd symbols add EXCHANGE SYMBOL``."""
    problem = _checked(args.exchange, args.symbol)
    if problem:
        return _fail(problem)

    def work(conn: psycopg.Connection[Any], schema: str) -> int:
        if tables.add_symbol(conn, schema, args.exchange, args.symbol):
            print(f"added {args.exchange} {args.symbol}")
        else:
            print(f"{args.exchange} {args.symbol} is already listed (enable it with: tickerd symbols enable)")
        return EXIT_OK

    return _with_tables(args, work)


def symbols_remove(args: argparse.Namespace) -> int:
    """``tickerd symbols remove EXCHANGE SYMBOL``."""
    problem = _checked(args.exchange, args.symbol)
    if problem:
        return _fail(problem)

    def work(conn: psycopg.Connection[Any], schema: str) -> int:
        if not tables.remove_symbol(conn, schema, args.exchange, args.symbol):
            return _fail(f"{args.exchange} {args.symbol} is not listed", EXIT_NOT_FOUND)
        print(f"removed {args.exchange} {args.symbol}")
        return EXIT_OK

    return _with_tables(args, work)


def _set_enabled(args: argparse.Namespace, enabled: bool) -> int:
    problem = _checked(args.exchange, args.symbol)
    if problem:
        return _fail(problem)
    what = args.exchange if args.symbol is None else f"{args.exchange} {args.symbol}"

    def work(conn: psycopg.Connection[Any], schema: str) -> int:
        if not tables.set_enabled(conn, schema, args.exchange, args.symbol, enabled):
            return _fail(f"{what} is not listed (add it with: tickerd symbols add)", EXIT_NOT_FOUND)
        print(f"{'enabled' if enabled else 'disabled'} {what}")
        return EXIT_OK

    return _with_tables(args, work)


def symbols_enable(args: argparse.Namespace) -> int:
    """``tickerd symbols enable EXCHANGE [SYMBOL]``."""
    return _set_enabled(args, True)


def symbols_disable(args: argparse.Namespace) -> int:
    """``tickerd symbols disable EXCHANGE [SYMBOL]``."""
    return _set_enabled(args, False)
