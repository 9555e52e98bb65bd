"""examples/demo_data.py as a person runs it: an isolated demo database, tickerd on it, cleanup."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_SERVER
from tickerd import exchanges

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "demo_data.py"


def demo_data(*args: str, prefix: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env
    )


def exists(name: str) -> bool:
    with psycopg.connect(f"{PG_SERVER}/postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def made() -> Iterator[list[str]]:
    """Names of the demo databases a test made; dropped afterwards whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        demo_data("--cleanup", name)


def created(result: subprocess.CompletedProcess[str], made: list[str]) -> str:
    found = re.search(r"^created (tickerd_demo_[0-9a-f]{8}): ", result.stdout, re.MULTILINE)
    assert found, result.stdout + result.stderr
    made.append(found[1])
    return found[1]


def test_creates_an_isolated_database_with_every_exchange_then_drops_it(made: list[str]) -> None:
    first = demo_data("--no-run")
    second = demo_data("--no-run")
    name, other = created(first, made), created(second, made)  # recorded first: dropped whatever fails
    assert first.returncode == second.returncode == 0
    assert name != other  # a random name each time: two demos never share a database
    assert f"DATABASE_URL={PG_SERVER}/{name}" in first.stdout

    with psycopg.connect(f"{PG_SERVER}/{name}") as conn:
        rows = conn.execute(
            "SELECT exchange, symbol FROM tickerd.symbols WHERE enabled ORDER BY 1, 2"
        ).fetchall()
    listed: dict[str, list[str]] = {}
    for exchange, symbol in rows:
        listed.setdefault(exchange, []).append(symbol)
    assert sorted(listed) == exchanges.names()
    assert listed["kraken"] == ["BTC/USD", "ETH/USD", "SOL/USD"]
    assert listed["binance"] == ["BTC/USDT", "ETH/USDT"]
    for exchange, symbols in listed.items():
        for symbol in symbols:
            exchanges.get(exchange).check_symbol(symbol)

    assert demo_data("--cleanup", name).stdout == f"dropped {name}\n"
    assert not exists(name) and exists(other)
    refused = demo_data("--cleanup", "postgres")
    assert refused.returncode == 2 and "not a demo database" in refused.stderr and exists("postgres")


def test_offline_it_runs_tickerd_on_the_database_against_fake_exchanges(made: list[str], prefix: str) -> None:
    # 6 s: the demo first waits (up to 5 s) for every fake exchange to connect, 27 of them on a
    # busy machine, and the last table must hold every symbol.
    result = demo_data("--offline", "--duration", "6", prefix=prefix)
    name = created(result, made)  # recorded first: dropped whatever fails
    assert result.returncode == 0, result.stderr
    last_table = result.stdout.strip().split("\n\n")[-1].splitlines()
    rows = sorted(tuple(line.split()[:2]) for line in last_table[2:-1])
    assert rows == sorted((e, s) for e in exchanges.names() for s in demo_symbols(name, e))
    with psycopg.connect(f"{PG_SERVER}/{name}") as conn:  # the fakes' urls were cleared again
        assert conn.execute("SELECT count(*) FROM tickerd.exchanges WHERE url IS NOT NULL").fetchone() == (0,)


def demo_symbols(name: str, exchange: str) -> list[str]:
    with psycopg.connect(f"{PG_SERVER}/{name}") as conn:
        rows = conn.execute("SELECT symbol FROM tickerd.symbols WHERE exchange = %s", [exchange]).fetchall()
    return [symbol for (symbol,) in rows]
