"""PostgreSQL as the source of subscriptions: tickerd's tables, live reload through
LISTEN/NOTIFY, outages, and the errors a person sees at start.  Real PostgreSQL, a database
per test; fake exchanges."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
import redis
import trio
from psycopg import sql

import tickerd
from tests.conftest import (
    PG_SERVER,
    REDIS_URL,
    Database,
    Updates,
    database_source,
    make_config,
    start_daemon,
    start_fake,
    wait_health,
)
from tests.test_monitor import wait_records
from tickerd.commands.status import read_report, render
from tickerd.config import ConfigError, structure
from tickerd.health import DEGRADED, HEALTHY
from tickerd.layout import RedisLayout
from tickerd.sources import tables
from tickerd.testing import FakeBinance, FakeExchange, FakeKraken


def kraken_requests(kraken: FakeKraken, method: str) -> list[list[str]]:
    """The symbols of each subscribe (or unsubscribe) request the fake received, in order."""
    return [
        m["params"]["symbol"] for m in kraken.received if isinstance(m, dict) and m.get("method") == method
    ]


def binance_requests(binance: FakeBinance, method: str) -> list[list[str]]:
    return [m["params"] for m in binance.received if isinstance(m, dict) and m.get("method") == method]


async def install(db: Database, symbols: dict[str, list[str]], urls: dict[str, str] | None = None) -> None:
    """``tickerd db init`` and the given rows, as ``tickerd symbols add`` would write them."""

    def work() -> None:
        tables.init(db.conn, "tickerd")
        for exchange, listed in symbols.items():
            for symbol in listed:
                tables.add_symbol(db.conn, "tickerd", exchange, symbol)
        for exchange, url in (urls or {}).items():
            tables.set_url(db.conn, "tickerd", exchange, url)

    await trio.to_thread.run_sync(work)


def pg_config(prefix: str, url: str, fakes: dict[str, FakeExchange], **database: Any) -> tickerd.Config:
    """A config whose exchanges (urls only: symbols come from the database) are the fakes."""
    return make_config(
        prefix,
        fakes,
        {},
        database={"url": url, "refresh": 3600.0} | database,  # only notifications bring changes
        feed={"reconnect_delay": 0.05},
    )


async def wait_source(daemon: tickerd.TickerDaemon, **expected: Any) -> None:
    await wait_health(
        daemon, lambda h: all(getattr(database_source(h.source), k) == v for k, v in expected.items())
    )


def test_db_init_creates_then_is_a_no_op_even_concurrently(db: Database) -> None:
    results: list[tuple[int, list[tables.Migration]]] = []

    def init() -> None:
        with Database(db.url).conn as conn:
            results.append(tables.init(conn, "tickerd"))

    threads = [threading.Thread(target=init) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(applied) for _, applied in results) == [0, 0, len(tables.MIGRATIONS)]
    assert tables.version(db.conn, "tickerd") == tables.LATEST
    assert tables.init(db.conn, "tickerd") == (tables.LATEST, [])
    assert db.run("SELECT count(*) FROM tickerd.migrations") == [(len(tables.MIGRATIONS),)]


async def test_the_daemon_collects_what_the_tables_list(
    nursery: trio.Nursery, prefix: str, db: Database, updates: Updates, logs: list[str]
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    await install(
        db,
        {"kraken": ["BTC/USD", "ETH/USD"], "binance": ["BTC/USDT"]},
        urls={"kraken": kraken.url, "binance": binance.url},  # the per-exchange url setting
    )
    # No [exchanges] in the TOML at all: everything comes from the database.
    config = structure(
        {"redis": {"url": "redis://127.0.0.1:6379/0", "prefix": prefix}, "database": {"url": db.url}}
    )
    daemon = await start_daemon(nursery, config)

    assert daemon.symbols() == {"binance": ["BTC/USDT"], "kraken": ["BTC/USD", "ETH/USD"]}
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))
    await kraken.push("BTC/USD", last=101.5)
    await updates.wait_for(lambda r: r["exchange"] == "kraken" and r["last"] == 101.5)
    source = database_source(daemon.health().source)
    assert (source.kind, source.state, source.reads, source.problems) == ("postgres", "up", 1, ())
    assert any(line.startswith("tickerd running (postgres)") for line in logs)


async def test_live_changes_touch_only_the_affected_subscriptions(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    await install(db, {"kraken": ["BTC/USD"], "binance": ["BTC/USDT"]})
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken, "binance": binance}))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))

    # INSERT: only the new symbol is subscribed, on the open connection.
    await db.execute("INSERT INTO tickerd.symbols (exchange, symbol) VALUES ('kraken', 'ETH/USD')")
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    assert kraken_requests(kraken, "subscribe") == [["BTC/USD"], ["ETH/USD"]]

    # UPDATE enabled = false: only that symbol is unsubscribed.
    await db.execute("UPDATE tickerd.symbols SET enabled = false WHERE symbol = 'BTC/USD'")
    await kraken.wait_until(lambda: not kraken.is_subscribed("BTC/USD"))
    assert kraken_requests(kraken, "unsubscribe") == [["BTC/USD"]]

    # Several changes in one transaction arrive as one notification and one diff.
    await db.execute(
        "BEGIN; UPDATE tickerd.symbols SET enabled = true WHERE symbol = 'BTC/USD';"
        " DELETE FROM tickerd.symbols WHERE symbol = 'ETH/USD'; COMMIT"
    )
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and not kraken.is_subscribed("ETH/USD"))
    assert kraken_requests(kraken, "subscribe") == [["BTC/USD"], ["ETH/USD"], ["BTC/USD"]]
    assert kraken_requests(kraken, "unsubscribe") == [["BTC/USD"], ["ETH/USD"]]

    assert (kraken.connection_count, binance.connection_count) == (1, 1)  # nothing reconnected
    assert binance_requests(binance, "UNSUBSCRIBE") == [] and len(binance_requests(binance, "SUBSCRIBE")) == 1
    assert daemon.symbols() == {"kraken": ["BTC/USD"], "binance": ["BTC/USDT"]}
    assert database_source(daemon.health().source).reads == 4  # the start plus one per transaction


async def test_disabling_an_exchange_or_changing_its_url_restarts_only_that_exchange(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    relay = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    await install(db, {"kraken": ["BTC/USD", "ETH/USD"], "binance": ["BTC/USDT"]})
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken, "binance": binance}))
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))

    await db.execute("UPDATE tickerd.exchanges SET enabled = false WHERE name = 'kraken'")
    await kraken.wait_until(lambda: not kraken.connections)
    assert "kraken" not in daemon.health().exchanges

    await db.execute("UPDATE tickerd.exchanges SET enabled = true WHERE name = 'kraken'")
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))
    assert kraken.connection_count == 2

    # A url in the table overrides the TOML's: kraken moves to the relay, alone.
    await db.execute("UPDATE tickerd.exchanges SET url = %s WHERE name = 'kraken'", [relay.url])
    await relay.wait_until(lambda: relay.is_subscribed("BTC/USD") and relay.is_subscribed("ETH/USD"))
    await kraken.wait_until(lambda: not kraken.connections)
    assert binance.connection_count == 1 and binance.is_subscribed("BTC/USDT")
    await wait_health(daemon, lambda h: h.exchanges["kraken"].connections == 1)


async def test_health_records_follow_exchanges_stopped_and_restarted_by_the_database(
    nursery: trio.Nursery, prefix: str, db: Database, redis_client: redis.Redis
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    relay = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    await install(db, {"kraken": ["BTC/USD"], "binance": ["BTC/USDT"]})
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken, "binance": binance}))
    await wait_records(
        daemon, redis_client, prefix, lambda beat, found: sorted(found) == ["binance", "kraken"]
    )

    await db.execute("UPDATE tickerd.exchanges SET enabled = false WHERE name = 'binance'")
    await wait_records(
        daemon,
        redis_client,
        prefix,
        lambda beat, found: (
            beat is not None
            and beat.exchanges == ("kraken",)
            and redis_client.exists(RedisLayout(prefix).health("binance")) == 0
        ),
    )

    # The restarted exchange's state changes are written at once, not at the next interval.
    relay.refuse = True
    await db.execute("UPDATE tickerd.exchanges SET url = %s WHERE name = 'kraken'", [relay.url])
    await wait_records(
        daemon, redis_client, prefix, lambda beat, found: found["kraken"].state == "reconnecting"
    )


async def test_a_lost_notification_is_caught_by_the_periodic_re_read(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await install(db, {"kraken": ["BTC/USD"]})
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken}, refresh=0.2))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))

    # Triggers do not fire for a session in replica mode: this change sends no notification.
    await db.execute(
        "SET session_replication_role = replica;"
        " INSERT INTO tickerd.symbols (exchange, symbol) VALUES ('kraken', 'ETH/USD');"
        " SET session_replication_role = origin"
    )
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    assert database_source(daemon.health().source).notifications == 0
    assert kraken.connection_count == 1


async def test_unusable_rows_are_skipped_and_reported_once(
    nursery: trio.Nursery, prefix: str, db: Database, logs: list[str]
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await install(db, {"kraken": ["BTC/USD"]})
    long = "A" * 61 + "/USD"  # 65 characters: no market is named that
    await db.execute(
        "INSERT INTO tickerd.exchanges (name) VALUES ('krakken');"
        " INSERT INTO tickerd.exchanges (name, url) VALUES ('okx', 'http://x');"
        " INSERT INTO tickerd.symbols (exchange, symbol) VALUES"
        f" ('kraken', 'btcusd'), ('krakken', 'BTC/USD'), ('kraken', '{long}'), ('okx', 'BTC/USDT')"
    )
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken}, refresh=0.05))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    problems = database_source(daemon.health().source).problems
    assert (
        "kraken: 'btcusd' is not a unified symbol "
        "(expected BASE/QUOTE, BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD)" in problems
    )
    assert "kraken: 'AAAAAAAAAAAAAAAA'…: 65 characters, at most 64" in problems
    assert "okx: url: expected ws://HOST[:PORT]/PATH or wss://…, got 'http://x'" in problems
    assert any(problem.startswith("unknown exchange 'krakken' (supported: binance, ") for problem in problems)
    await wait_health(daemon, lambda h: database_source(h.source).reads >= 3)  # re-read, not reported again
    assert sum("ignoring a database row" in line for line in logs) == len(problems) == 4
    assert daemon.symbols() == {"kraken": ["BTC/USD"]}


async def allow_connections(db: Database, allowed: bool) -> None:
    """Let the test's database take new connections or not (its open connections stay)."""

    def alter() -> None:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(db.url.rsplit("/", 1)[1]), sql.SQL("true" if allowed else "false")
                )
            )

    await trio.to_thread.run_sync(alter)


async def backend_pids(db: Database) -> list[int]:
    rows = await db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tickerd'"
    )
    return [pid for (pid,) in rows]


async def test_an_outage_keeps_collection_running_and_the_return_is_re_read(
    nursery: trio.Nursery,
    prefix: str,
    db: Database,
    updates: Updates,
    logs: list[str],
    redis_client: redis.Redis,
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await install(db, {"kraken": ["BTC/USD", "ETH/USD"]})
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken}))
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))

    # PostgreSQL goes away: this database takes no connections and the source's is killed.
    await allow_connections(db, False)
    [pid] = await backend_pids(db)
    await db.execute("SELECT pg_terminate_backend(%s)", [pid])
    await wait_source(daemon, state="down")

    await kraken.push("BTC/USD", last=5.0)  # collection goes on with the last known set
    await updates.wait_for(lambda r: r["last"] == 5.0)
    # tickerd status tells: degraded, and why.
    await wait_records(
        daemon,
        redis_client,
        prefix,
        lambda beat, _: beat is not None and database_source(beat.source).state == "down",
    )
    report = read_report(redis_client, REDIS_URL, prefix)
    assert report.level == DEGRADED
    name = db.url.rsplit("/", 1)[1]
    assert report.reasons[0].startswith(f"subscriptions database 127.0.0.1:5432/{name} unavailable: ")
    assert f"subscriptions postgres 127.0.0.1:5432/{name} down\n" in render(report)
    # A change made meanwhile: its notification reaches nobody.
    await db.execute("UPDATE tickerd.symbols SET enabled = false WHERE symbol = 'ETH/USD'")
    with trio.move_on_after(0.3):  # several reconnect attempts fail meanwhile
        await kraken.wait_until(lambda: False)
    assert kraken.is_subscribed("ETH/USD") and kraken.connection_count == 1

    await allow_connections(db, True)
    await kraken.wait_until(lambda: not kraken.is_subscribed("ETH/USD"))  # re-read on return
    await wait_source(daemon, state="up")
    await wait_records(
        daemon,
        redis_client,
        prefix,
        lambda beat, _: beat is not None and database_source(beat.source).state == "up",
    )
    assert read_report(redis_client, REDIS_URL, prefix).level == HEALTHY
    assert kraken.connection_count == 1 and kraken.is_subscribed("BTC/USD")
    assert len(await backend_pids(db)) == 1

    outage = [line for line in logs if "unavailable (" in line]
    assert len(outage) == 1 and "keeping the last known 2 subscriptions running" in outage[0]
    assert "terminating connection due to administrator command" in outage[0] or "closed" in outage[0]
    assert len([line for line in logs if "is back after" in line]) == 1

    # And it listens again: the next change arrives by notification.
    await db.execute("DELETE FROM tickerd.symbols WHERE symbol = 'BTC/USD'")
    await kraken.wait_until(lambda: not kraken.is_subscribed("BTC/USD"))


async def test_unreachable_at_start_starts_empty_and_collects_once_it_answers(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await install(db, {"kraken": ["BTC/USD"]})
    await allow_connections(db, False)
    daemon = await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken}))
    assert database_source(daemon.health().source).state == "down" and daemon.symbols() == {}
    await allow_connections(db, True)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))


async def test_a_missing_schema_is_a_configuration_error_at_start(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            ConfigError,
            match=r'no tickerd schema "tickerd" in 127.0.0.1:5432/tickerd_test_\w+: run tickerd db init',
        ),
        flatten_subgroups=True,
    ):
        await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken}))

    await install(db, {"kraken": ["BTC/USD"]})
    await db.execute("DELETE FROM tickerd.migrations")  # as if made by an older tickerd
    with pytest.RaisesGroup(
        pytest.RaisesExc(ConfigError, match=r"is at version 0, this tickerd needs 1: run tickerd db init$"),
        flatten_subgroups=True,
    ):
        await start_daemon(nursery, pg_config(prefix, db.url, {"kraken": kraken}))
    assert kraken.attempt_times == []


def test_database_settings_are_validated() -> None:
    with pytest.raises(
        ConfigError, match=r"database.url: expected postgresql://USER@HOST:PORT/DBNAME .*'redis://x'"
    ):
        structure({"database": {"url": "redis://x"}})
    with pytest.raises(ConfigError, match=r"database.mode: expected one of tickerd, fullon"):
        structure({"database": {"url": "postgresql://h/d", "mode": "nope"}})
    with pytest.raises(ConfigError, match=r"database.schema: expected a lower-case SQL name"):
        structure({"database": {"url": "postgresql://h/d", "schema": "Tick-erd"}})
    with pytest.raises(ConfigError, match=r"database.refresh: expected a positive number"):
        structure({"database": {"refresh": 0}})
