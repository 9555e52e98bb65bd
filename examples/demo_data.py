"""Demo data for the PostgreSQL source: an isolated database with tickerd's tables and demo
symbols on every exchange, and tickerd running on it.

    python examples/demo_data.py                  create tickerd_demo_<random>, fill it, run tickerd
    python examples/demo_data.py --offline        the same, against fake exchanges on 127.0.0.1
    python examples/demo_data.py --no-run         create and fill only (prints the DATABASE_URL)
    python examples/demo_data.py --cleanup NAME   drop the demo database NAME

While it runs, change what is collected from another shell and watch tickerd follow at once:

    DATABASE_URL=postgresql://…/tickerd_demo_… tickerd symbols add kraken DOGE/USD

The database lives on ``--server`` (default ``postgresql://postgres@127.0.0.1:5432``) until
``--cleanup`` drops it; ``--cleanup`` drops only databases this script made (``tickerd_demo_*``).
Offline, each exchange's ``url`` column points at its fake while the demo runs (the
per-exchange setting a relay would use) and is cleared when it ends.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from functools import partial

import attrs
import psycopg
import trio
from psycopg import sql

from tickerd import exchanges, logs
from tickerd.commands import demo, watch
from tickerd.commands import main as cli
from tickerd.config import Config, DatabaseSettings, LogSettings, structure
from tickerd.config import load as load_config
from tickerd.sources import tables
from tickerd.testing import FakeExchange

SCHEMA = "tickerd"
NAME = re.compile(r"tickerd_demo_[0-9a-f]{8}")

#: What the demo collects: every exchange's sample symbols (so a new exchange joins the demo
#: by being registered).
DEMO_SYMBOLS: dict[str, list[str]] = {
    name: list(exchanges.get(name).sample_symbols) for name in exchanges.names()
}


def database_url(server: str, name: str) -> str:
    return f"{server.rstrip('/')}/{name}"


def create(server: str) -> str:
    """A new database with tickerd's schema and the demo symbols; returns its name."""
    name = f"tickerd_demo_{secrets.token_hex(4)}"
    with psycopg.connect(database_url(server, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(database_url(server, name), autocommit=True) as conn:
        tables.init(conn, SCHEMA)
        for exchange, symbols in DEMO_SYMBOLS.items():
            for symbol in symbols:
                tables.add_symbol(conn, SCHEMA, exchange, symbol)
    return name


def cleanup(server: str, name: str) -> int:
    if not NAME.fullmatch(name):
        print(
            f"demo_data: {name!r} is not a demo database (tickerd_demo_XXXXXXXX): not dropped",
            file=sys.stderr,
        )
        return 2
    with psycopg.connect(database_url(server, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    print(f"dropped {name}")
    return 0


def point_at(url: str, urls: dict[str, str | None]) -> None:
    """Set (or, with ``None``, clear) the exchanges' url column."""
    with psycopg.connect(url, autocommit=True) as conn:
        for exchange, target in urls.items():
            tables.set_url(conn, SCHEMA, exchange, target)


def run_offline(url: str, duration: float | None) -> None:
    """Fake exchanges with lively prices, tickerd reading this database, and the live view."""
    base = load_config()  # Redis as the environment says (REDIS_URL, REDIS_PREFIX, ...)
    config = attrs.evolve(
        base,
        redis=attrs.evolve(base.redis, prefix=base.redis.prefix or demo.PREFIX),
        database=DatabaseSettings(url=url),
        exchanges={},
    )
    out = sys.stdout

    async def body(_: Config, fakes: dict[str, FakeExchange]) -> None:
        urls: dict[str, str | None] = {name: fake.url for name, fake in fakes.items()}
        await trio.to_thread.run_sync(point_at, url, urls)
        # The database has a column for the url only: what else a fake is reached by (KuCoin's
        # token endpoint, rest_url) goes in the [exchanges.NAME] settings the rows leave unset.
        rest = {
            name: {k: v for k, v in fake.endpoints().items() if k != "url"} for name, fake in fakes.items()
        }
        reached = structure({"exchanges": rest}).exchanges
        try:
            main = partial(
                demo.run_demo,
                attrs.evolve(config, exchanges=reached),
                fakes,
                out=out,
                interactive=out.isatty(),
            )
            await watch.until_interrupted(duration, main)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(point_at, url, dict.fromkeys(fakes))

    try:
        with watch.screen(out, out.isatty()):
            trio.run(demo._with_fakes, list(DEMO_SYMBOLS), config.redis.url, config.redis.prefix, body)
    finally:
        demo._clean(config.redis.address, config.redis.prefix)  # the demo's tickers go with it


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL"
    )
    parser.add_argument("--cleanup", metavar="NAME", help="drop the demo database NAME and exit")
    parser.add_argument("--no-run", action="store_true", help="create and fill the database only")
    parser.add_argument("--offline", action="store_true", help="run against fake exchanges on 127.0.0.1")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="offline: stop after this long")
    args = parser.parse_args()
    if args.cleanup:
        return cleanup(args.server, args.cleanup)

    name = create(args.server)
    url = database_url(args.server, name)
    count = sum(len(symbols) for symbols in DEMO_SYMBOLS.values())
    print(f"created {name}: {count} symbols on {len(DEMO_SYMBOLS)} exchanges")
    print(f"  DATABASE_URL={url}")
    print(f"  drop it with: python {sys.argv[0]} --cleanup {name}", flush=True)
    if args.no_run:
        return 0
    if args.offline:
        logs.configure(LogSettings(level="WARNING"))  # the live view is the output
        run_offline(url, args.duration)
        return 0
    os.environ["DATABASE_URL"] = url
    return cli.main(["run"])


if __name__ == "__main__":
    sys.exit(main())
