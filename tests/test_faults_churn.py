"""Subscription churn under database faults: hundreds of live changes, connections killed
under the source, and the daemon still converges on exactly what the tables say.

Real processes: the daemon is ``python -m tickerd`` on its own redis-server and the test's own
PostgreSQL database; the exchange is a fake Kraken in this process.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import redis
import trio

from tests.conftest import Database
from tests.processes import RedisServer, daemon_process
from tickerd.layout import RedisLayout
from tickerd.sources import tables
from tickerd.testing import FakeKraken

#: The symbols the churn plays with (Kraken's fake serves any BASE/QUOTE).
POOL = [f"C{i}/USD" for i in range(40)]
CHANGES = 200


def _churn(db: Database, rng: random.Random, changes: int) -> None:
    """``changes`` random adds, removes, enables and disables, each its own transaction."""
    for _ in range(changes):
        symbol = rng.choice(POOL)
        action = rng.choice(("add", "add", "remove", "enable", "disable"))
        if action == "add":
            tables.add_symbol(db.conn, "tickerd", "kraken", symbol)
        elif action == "remove":
            tables.remove_symbol(db.conn, "tickerd", "kraken", symbol)
        else:
            tables.set_enabled(db.conn, "tickerd", "kraken", symbol, action == "enable")


def _kill_source_connections(db: Database) -> int:
    """Terminate the daemon's PostgreSQL connections (the source rides the outage out)."""
    rows = db.run(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'tickerd'"
    )
    return len(rows)


def _wanted(db: Database) -> set[str]:
    return {symbol for _, symbol, _ in tables.enabled_rows(db.conn, "tickerd") if symbol is not None}


@pytest.mark.timeout(120)
async def test_churn_with_killed_database_connections_converges(
    nursery: trio.Nursery, tmp_path: Path, db: Database, redis_server: RedisServer
) -> None:
    kraken = FakeKraken()
    await nursery.start(kraken.serve)
    tables.init(db.conn, "tickerd")
    tables.add_symbol(db.conn, "tickerd", "kraken", POOL[0])
    tables.set_url(db.conn, "tickerd", "kraken", kraken.url)
    config = tmp_path / "tickerd.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_server.url}"\n'
        f'[database]\nurl = "{db.url}"\nrefresh = 3600.0\n'  # only notifications bring changes
        "[feed]\nreconnect_delay = 0.05\n"
    )
    layout = RedisLayout()
    client = redis.Redis.from_url(redis_server.url)
    updates = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    updates.psubscribe(layout.updates_pattern("kraken"))
    async with daemon_process(["--config", str(config)]) as daemon:
        with trio.fail_after(20):
            await kraken.wait_until(lambda: kraken.is_subscribed(POOL[0]))

        rng = random.Random(7)
        killed = 0
        for _ in range(4):  # 200 changes in four bursts, the source's connection killed after each
            await trio.to_thread.run_sync(_churn, db, rng, CHANGES // 4)
            killed += await trio.to_thread.run_sync(_kill_source_connections, db)
        assert killed >= 1  # the source was really cut off at least once

        # Convergence: the fake serves exactly the enabled symbols, on one connection.
        wanted = await trio.to_thread.run_sync(_wanted, db)
        subscribed: set[str] = set()

        def converged() -> bool:
            subscribed.clear()
            subscribed.update(s for conn in kraken.connections if not conn.closed for s in conn.subscribed)
            return subscribed == wanted

        with trio.fail_after(30):
            await kraken.wait_until(converged)
        assert kraken.connection_count == 1  # live changes, no reconnects

        # Every wanted symbol is collected: a fresh price of each reaches Redis.
        for symbol in sorted(wanted):
            await kraken.push(symbol, last=777.0)
        seen: set[str] = set()
        with trio.fail_after(20):
            while seen != wanted:
                message = await trio.to_thread.run_sync(updates.get_message, True, 0.5)
                if message and message["type"] == "pmessage":
                    record = layout.decode_ticker(message["data"])
                    if record["last"] == 777.0:
                        seen.add(record["symbol"])
        # What left the set left Redis too; the health record lists exactly the set.
        assert set(layout.read_tickers(client, "kraken")) == wanted
        _, exchanges = layout.read_health(client)
        assert set(exchanges["kraken"].symbols) == wanted
        assert "Traceback" not in daemon.output
    updates.close()
    client.close()
