"""``tickerd db init`` and ``tickerd symbols …`` as a person uses them, against real PostgreSQL."""

from __future__ import annotations

import pytest
import trio

from tests.conftest import Database, make_config, run_cli, start_daemon, start_fake
from tickerd.commands.main import main
from tickerd.testing import FakeKraken


def tickerd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``tickerd ARGS`` in this process: (exit status, stdout, stderr)."""
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def env(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    """DATABASE_URL points at the test's database (as a person would export it)."""
    monkeypatch.setenv("DATABASE_URL", db.url)
    return db


def test_db_init_creates_the_schema_then_says_it_is_up_to_date(
    env: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = tickerd(capsys, "db", "init")
    name = env.url.rsplit("/", 1)[1]
    assert status == 0
    where = f'schema "tickerd" in 127.0.0.1:5432/{name}'
    assert out == (
        f"{where}: applied migration 1 (exchanges, symbols and change notifications)\n"
        f"{where} is at version 1\n"
    )
    assert tickerd(capsys, "db", "init") == (
        0,
        f'schema "tickerd" in 127.0.0.1:5432/{name} is up to date (version 1)\n',
        "",
    )


def test_symbols_add_list_disable_enable_remove(env: Database, capsys: pytest.CaptureFixture[str]) -> None:
    tickerd(capsys, "db", "init")
    assert tickerd(capsys, "symbols", "add", "kraken", "BTC/USD") == (0, "added kraken BTC/USD\n", "")
    assert tickerd(capsys, "symbols", "add", "kraken", "ETH/USD")[0] == 0
    assert tickerd(capsys, "symbols", "add", "binance", "BTC/USDT")[0] == 0
    status, out, _ = tickerd(capsys, "symbols", "add", "kraken", "BTC/USD")
    assert status == 0 and "kraken BTC/USD is already listed" in out

    assert tickerd(capsys, "symbols", "disable", "kraken", "ETH/USD") == (0, "disabled kraken ETH/USD\n", "")
    assert tickerd(capsys, "symbols", "disable", "binance") == (0, "disabled binance\n", "")
    status, out, _ = tickerd(capsys, "symbols", "list")
    assert status == 0
    assert out.splitlines() == [
        "EXCHANGE  SYMBOL    STATE",
        "binance   BTC/USDT  exchange disabled",
        "kraken    BTC/USD   collected",
        "kraken    ETH/USD   disabled",
        "1 symbols collected",
    ]
    assert env.run("SELECT name, enabled FROM tickerd.exchanges ORDER BY name") == [
        ("binance", False),
        ("kraken", True),
    ]

    assert tickerd(capsys, "symbols", "enable", "binance") == (0, "enabled binance\n", "")
    assert tickerd(capsys, "symbols", "remove", "kraken", "ETH/USD") == (0, "removed kraken ETH/USD\n", "")
    assert tickerd(capsys, "symbols", "remove", "kraken", "ETH/USD") == (
        1,
        "",
        "tickerd: kraken ETH/USD is not listed\n",
    )
    status, _, err = tickerd(capsys, "symbols", "enable", "okx")
    assert status == 1 and "okx is not listed (add it with: tickerd symbols add)" in err
    assert env.run("SELECT exchange, symbol, enabled FROM tickerd.symbols ORDER BY 1, 2") == [
        ("binance", "BTC/USDT", True),
        ("kraken", "BTC/USD", True),
    ]
    for symbol in ("BTC/USD:BTC", "BTC/USD:BTC-261225"):  # an inverse perpetual, a dated future
        assert tickerd(capsys, "symbols", "add", "deribit", symbol) == (0, f"added deribit {symbol}\n", "")
    assert env.run("SELECT symbol FROM tickerd.symbols WHERE exchange = 'deribit' ORDER BY 1") == [
        ("BTC/USD:BTC",),
        ("BTC/USD:BTC-261225",),
    ]


def test_bad_input_exits_2_before_touching_the_database(
    env: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    tickerd(capsys, "db", "init")
    status, _, err = tickerd(capsys, "symbols", "add", "krakken", "BTC/USD")
    assert status == 2 and "tickerd: unknown exchange 'krakken' (supported: binance, " in err
    status, _, err = tickerd(capsys, "symbols", "add", "kraken", "btcusd")
    assert (
        status == 2
        and "kraken: 'btcusd' is not a unified symbol "
        "(expected BASE/QUOTE, BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD)"
        in err
    )
    status, _, err = tickerd(capsys, "symbols", "disable", "kraken", "BTC/USD:USD")
    assert status == 2 and "serves spot only" in err
    status, _, err = tickerd(capsys, "symbols", "add", "hyperliquid", "BTC/USDC:USDC-261225")
    assert status == 2 and "hyperliquid adapter serves no dated futures" in err
    status, _, err = tickerd(capsys, "symbols", "add", "deribit", "BTC/USD:BTC-261331")
    assert status == 2 and "expiry '261331' is not a date (expected YYMMDD)" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse: a symbol is required for add
        tickerd(capsys, "symbols", "add", "kraken")
    assert exit_info.value.code == 2
    assert env.run("SELECT count(*) FROM tickerd.exchanges") == [(0,)]


def test_the_database_must_be_configured_reachable_and_initialised(
    db: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert tickerd(capsys, "symbols", "list") == (
        2,
        "",
        "tickerd: no database configured: set DATABASE_URL or [database] url\n",
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    status, _, err = tickerd(capsys, "symbols", "list")
    assert status == 1 and "tickerd: cannot reach PostgreSQL 127.0.0.1:1/nowhere: connection failed" in err
    monkeypatch.setenv("DATABASE_URL", db.url)
    status, _, err = tickerd(capsys, "symbols", "add", "kraken", "BTC/USD")
    assert status == 2 and err.endswith(
        'tickerd schema "tickerd" in 127.0.0.1:5432/'
        f"{db.url.rsplit('/', 1)[1]} is missing: run tickerd db init\n"
    )
    monkeypatch.setenv("DATABASE_MODE", "fullon")
    status, _, err = tickerd(capsys, "db", "init")
    assert status == 2 and "database.mode is fullon" in err


def test_the_daemon_exits_2_on_a_bad_url_or_a_missing_schema(db: Database) -> None:
    result = run_cli(env={"DATABASE_URL": "postgres://[::1"})
    assert result.returncode == 2
    assert (
        "tickerd: configuration error: DATABASE_URL (database.url): expected postgresql://USER@HOST:PORT/DBNAME"
        in result.stderr
    )
    result = run_cli(env={"DATABASE_URL": "host=127.0.0.1 dbname"})
    assert result.returncode == 2 and "DATABASE_URL (database.url): expected" in result.stderr

    result = run_cli(env={"DATABASE_URL": db.url})
    assert result.returncode == 2
    name = db.url.rsplit("/", 1)[1]
    assert (
        f'tickerd: configuration error: no tickerd schema "tickerd" in 127.0.0.1:5432/{name}: '
        "run tickerd db init\n" in result.stderr
    )
    assert "tickerd running" not in result.stderr


async def test_a_symbol_added_from_the_command_line_reaches_a_running_daemon(
    nursery: trio.Nursery, prefix: str, db: Database
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    assert run_cli("db", "init", env={"DATABASE_URL": db.url}).returncode == 0
    config = make_config(prefix, {"kraken": kraken}, {}, database={"url": db.url, "refresh": 3600.0})
    daemon = await start_daemon(nursery, config)
    assert daemon.symbols() == {}

    result = await trio.to_thread.run_sync(
        lambda: run_cli("symbols", "add", "kraken", "BTC/USD", env={"DATABASE_URL": db.url})
    )
    assert result.returncode == 0, result.stderr
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    result = await trio.to_thread.run_sync(
        lambda: run_cli("symbols", "disable", "kraken", env={"DATABASE_URL": db.url})
    )
    assert result.returncode == 0, result.stderr
    await kraken.wait_until(lambda: not kraken.connections)
    assert daemon.symbols() == {}
