"""Shared fixtures: real Redis with a per-test key prefix, fake exchanges, daemon start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis
import trio
import trio.testing
from loguru import logger
from psycopg import sql

import tickerd
from tests.processes import ClusterServers, RedisServer, SentinelServers
from tickerd.config import Config, structure
from tickerd.layout import RedisLayout
from tickerd.snapshots import DaemonHealth, DatabaseSourceSnapshot, SourceSnapshot
from tickerd.testing import FakeExchange
from tickerd.writer import RedisWriter
from tickerd.writer.connection import RedisConnection

FakeT = TypeVar("FakeT", bound=FakeExchange)

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys (and only those) are deleted afterwards."""
    value = f"tickerd-test-{uuid.uuid4().hex[:10]}:"
    yield value
    for key in redis_client.scan_iter(RedisLayout(value).owned_pattern()):
        redis_client.delete(key)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time for backoff, watchdog and rotation tests (jumps whenever all tasks idle)."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def still_clock() -> trio.testing.MockClock:
    """Virtual time that moves only when the test says so (``clock.jump``)."""
    return trio.testing.MockClock()


@pytest.fixture
def threaded_clock() -> trio.testing.MockClock:
    """Virtual time for staleness tests, whose Redis writes run in worker threads.

    With ``autojump_threshold=0`` the clock may jump many times while one write is in its
    thread, so the writer (and the last-tick times it keeps) would lag seconds of virtual
    time behind; waiting 5 ms of real idleness first lets a write finish before time moves.
    """
    return trio.testing.MockClock(autojump_threshold=0.005)


def make_config(
    prefix: str, fakes: dict[str, FakeExchange], symbols: dict[str, list[str]], **sections: Any
) -> Config:
    """A validated Config pointing every exchange at its fake."""
    raw: dict[str, Any] = {
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "exchanges": {
            name: fake.endpoints() | {"symbols": list(symbols.get(name, []))} for name, fake in fakes.items()
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return structure(raw)


async def start_fake(nursery: trio.Nursery, fake: FakeT) -> FakeT:
    await nursery.start(fake.serve)
    return fake


async def start_daemon(nursery: trio.Nursery, config: Config) -> tickerd.TickerDaemon:
    daemon: tickerd.TickerDaemon = await nursery.start(tickerd.serve, config)
    return daemon


async def wait_health(
    daemon: tickerd.TickerDaemon, predicate: Callable[[DaemonHealth], bool], within: float = 10
) -> None:
    """Return once ``predicate(daemon.health())`` holds, re-checked on every health change."""
    with trio.fail_after(within):
        while not predicate(daemon.health()):
            await daemon.health_changed()


def database_source(source: SourceSnapshot | None) -> DatabaseSourceSnapshot:
    """A subscription source (of ``health()`` or the heartbeat) that is a database."""
    assert isinstance(source, DatabaseSourceSnapshot), source
    return source


class Updates:
    """Waits for ticker updates published on Redis (no polling of the hash, no sleeps)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._layout = RedisLayout(prefix)
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe(self._layout.updates_pattern())
        self._pubsub.get_message(timeout=1.0)  # the psubscribe confirmation

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first published record for which ``predicate`` holds (10 s at most)."""
        with trio.fail_after(10):
            while True:
                message = await trio.to_thread.run_sync(self._pubsub.get_message, True, 0.1)
                if message and message["type"] == "pmessage":
                    record = self._layout.decode_ticker(message["data"])
                    if predicate(record):
                        return record

    def close(self) -> None:
        self._pubsub.close()


@pytest.fixture
async def updates(redis_client: redis.Redis, prefix: str) -> AsyncIterator[Updates]:
    watcher = Updates(redis_client, prefix)
    yield watcher
    watcher.close()


async def execute(commands: Sequence[Sequence[str | bytes]]) -> None:
    """One round trip of ``commands`` to the shared Redis, over the writer's own connection."""
    connection = RedisConnection(REDIS_URL)
    try:
        await connection.execute(commands)
    finally:
        connection.close()


def stored(client: redis.Redis, prefix: str, exchange: str, symbol: str) -> dict[str, Any] | None:
    """The ticker record tickerd keeps in Redis for (exchange, symbol)."""
    return RedisLayout(prefix).read_ticker(client, exchange, symbol)


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every log message (text only) emitted during the test."""
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    yield messages
    logger.remove(handler)


# -- PostgreSQL: a database of each test's own ---------------------------------------------

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh database of this test's own; dropped afterwards (with any
    connection still open to it)."""
    name = f"tickerd_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class Database:
    """The test's own connection to its database; SQL runs in a worker thread so the
    daemon under test keeps running meanwhile."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True, application_name="tickerd-tests")

    def run(self, query: str | sql.Composable, params: Sequence[Any] | None = None) -> list[Any]:
        cursor = self.conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []

    async def execute(self, query: str | sql.Composable, params: Sequence[Any] | None = None) -> list[Any]:
        return await trio.to_thread.run_sync(self.run, query, params)


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.conn.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tickerd ARGS`` to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tickerd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def cli_config(tmp_path: Path, url: str, prefix: str, redis_url: str = REDIS_URL, grace: float = 5.0) -> Path:
    """A minimal TOML config: one Kraken symbol at ``url``, keys under ``prefix``."""
    path = tmp_path / "tickerd.toml"
    path.write_text(
        f'shutdown_grace = {grace}\n[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n'
        f'[exchanges.kraken]\nurl = "{url}"\nsymbols = ["BTC/USD"]\n'
    )
    return path


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> None:
    """Read ``stream`` into ``seen`` until ``marker`` shows up (a process's log line)."""
    while marker not in seen:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}: {seen.decode()}")
        seen.extend(chunk)


async def until(fake: FakeExchange, predicate: Callable[[], object], within: float = 10) -> None:
    """``fake.wait_until`` with a guard, so a broken adapter fails instead of hanging."""
    with trio.fail_after(within):
        await fake.wait_until(predicate)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server of the test's own, killed afterwards whatever state it is in."""
    server = RedisServer()
    server.start()
    yield server
    server.kill()


async def until_redis_up(writer: RedisWriter, up: bool) -> None:
    """Return once the writer sees Redis up (or down), re-checked on every change."""
    while writer.redis_up is not up:
        await writer.redis_state_changed()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """A Redis Cluster of the module's own (3 masters, 3 replicas) that its tests may fail over."""
    servers = ClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServers]:
    """A master, its replica and a Sentinel of the module's own, that its tests may fail over."""
    servers = SentinelServers(tmp_path_factory.mktemp("sentinel"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
