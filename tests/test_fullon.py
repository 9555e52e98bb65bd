"""fullon compatibility: tickerd reads an existing fullon database as it is (the admin user's
active exchanges and their symbols), follows its changes, and writes nothing there."""

from __future__ import annotations

import pytest
import trio

from tests.conftest import Database, database_source, make_config, start_daemon, start_fake, wait_health
from tickerd import exchanges
from tickerd.config import ConfigError, load
from tickerd.testing import FakeBinance, FakeKraken

#: fullon's tables, with the columns tickerd reads and some it does not.
FULLON_SCHEMA = """
CREATE TABLE users (
    uid serial PRIMARY KEY, mail varchar(80) NOT NULL UNIQUE, name varchar(50) NOT NULL DEFAULT ''
);
CREATE TABLE cat_exchanges (cat_ex_id serial PRIMARY KEY, name varchar(30) NOT NULL UNIQUE, ohlcv_view text);
CREATE TABLE exchanges (
    ex_id serial PRIMARY KEY,
    uid integer NOT NULL REFERENCES users (uid),
    cat_ex_id integer NOT NULL REFERENCES cat_exchanges (cat_ex_id),
    name varchar(50) NOT NULL,
    test bool NOT NULL DEFAULT false,
    active bool NOT NULL DEFAULT true,
    UNIQUE (uid, cat_ex_id, name)
);
CREATE TABLE symbols (
    symbol_id serial PRIMARY KEY,
    symbol varchar(20) NOT NULL,
    cat_ex_id integer NOT NULL,
    updateframe varchar(2) NOT NULL DEFAULT '1h',
    backtest smallint NOT NULL DEFAULT 30,
    decimals smallint NOT NULL DEFAULT 8,
    base varchar(6) NOT NULL,
    futures bool NOT NULL DEFAULT false,
    only_ticker bool NOT NULL DEFAULT false,
    UNIQUE (symbol, cat_ex_id)
);
INSERT INTO users (uid, mail) VALUES (1, 'admin@fullon'), (2, 'trader@example.com');
INSERT INTO cat_exchanges (cat_ex_id, name) VALUES
    (1, 'kraken'), (2, 'binance'), (3, 'bitmex'), (4, 'probit');
INSERT INTO exchanges (uid, cat_ex_id, name, active) VALUES
    (1, 1, 'kraken main', true),
    (1, 1, 'kraken spare', true),      -- two accounts on one exchange: collected once
    (1, 2, 'binance old', false),      -- inactive
    (1, 4, 'probit', true),            -- an exchange tickerd does not support
    (2, 3, 'bitmex', true);            -- another user's
INSERT INTO symbols (symbol, cat_ex_id, base) VALUES
    ('BTC/USD', 1, 'BTC'), ('ETH/USD', 1, 'ETH'), ('BTC/USDT', 2, 'BTC'),
    ('BTC/USD:BTC', 3, 'BTC'), ('BTC/USDT', 4, 'BTC');
"""


async def fullon_db(db: Database) -> None:
    await db.execute(FULLON_SCHEMA)


def table_names(db: Database) -> list[tuple[str, str]]:
    return db.run(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    )


async def test_the_admins_active_exchanges_are_collected_and_changes_followed(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    await fullon_db(db)
    tables_before = table_names(db)
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    config = make_config(
        prefix,
        {"kraken": kraken, "binance": binance},  # fullon has no url column: the TOML points at the fakes
        {},
        database={"url": db.url, "mode": "fullon", "refresh": 0.05},
    )
    daemon = await start_daemon(nursery, config)
    assert daemon.symbols() == {"kraken": ["BTC/USD", "ETH/USD"]}
    source = database_source(daemon.health().source)
    assert (source.kind, source.state) == ("fullon", "up")
    assert source.problems == (f"unknown exchange 'probit' (supported: {', '.join(exchanges.names())})",)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))

    await db.execute("UPDATE exchanges SET active = true WHERE name = 'binance old'")
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))
    await db.execute("INSERT INTO symbols (symbol, cat_ex_id, base) VALUES ('SOL/USD', 1, 'SOL')")
    await kraken.wait_until(lambda: kraken.is_subscribed("SOL/USD"))
    assert kraken.connection_count == 1  # the new symbol joined the open connection

    await db.execute("UPDATE exchanges SET active = false WHERE cat_ex_id = 1")
    await kraken.wait_until(lambda: not kraken.connections)
    await wait_health(daemon, lambda h: sorted(h.exchanges) == ["binance"])
    assert binance.connection_count == 1
    assert table_names(db) == tables_before  # tickerd wrote nothing into fullon's database


def test_admin_mail_comes_from_the_environment_as_in_fullon() -> None:
    environ = {"DATABASE_URL": "postgresql://postgres@127.0.0.1/fullon", "DATABASE_MODE": "fullon"}
    assert load(environ=environ).database.admin_mail == "admin@fullon"
    settings = load(environ=environ | {"ADMIN_MAIL": "ops@example.com"}).database
    assert (settings.mode, settings.admin_mail) == ("fullon", "ops@example.com")


async def test_no_such_admin_or_no_fullon_tables_is_a_configuration_error(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    name = db.url.rsplit("/", 1)[1]
    database = {"url": db.url, "mode": "fullon"}
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            ConfigError,
            match=rf"^127.0.0.1:5432/{name} is not a fullon database "
            r"\(no table users, exchanges, cat_exchanges, symbols\)$",
        ),
        flatten_subgroups=True,
    ):
        await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {}, database=database))

    await fullon_db(db)
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            ConfigError, match=rf"^no fullon user 'root@fullon' in 127.0.0.1:5432/{name} \(set ADMIN_MAIL"
        ),
        flatten_subgroups=True,
    ):
        config = make_config(
            prefix, {"kraken": kraken}, {}, database=database | {"admin_mail": "root@fullon"}
        )
        await start_daemon(nursery, config)
    assert kraken.attempt_times == []
