"""tickerd.client: typed tickers read back exactly as the daemon's layout writes them.

Every ticker here is written by :class:`~tickerd.layout.RedisLayout`'s own commands (the
writer's) or by a running daemon, into the real Redis under the test's own prefix.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import redis
import redis.asyncio
import trio

from tests.conftest import REDIS_URL, make_config, start_daemon, start_fake
from tests.processes import RedisServer, tls_files
from tickerd import topology
from tickerd.client import AsyncTickerClient, StaleTicker, TickerClient
from tickerd.layout import RedisLayout
from tickerd.model import Removal, Ticker
from tickerd.testing import FakeKraken


def perpetual(received_ts: float) -> Ticker:
    """A ticker with every field set, the derivative ones included."""
    return Ticker(
        "bybit", "BTC/USDT:USDT", 64000.5, 63999.9, 64001.1, 0.25, 3.0, 812.5, 65000.0, 63000.0,
        120.0, 0.19, received_ts - 0.05, received_ts,
        mark_price=64000.1, index_price=63998.7, funding_rate=0.0001,
        next_funding_ts=received_ts + 3600, open_interest=51234.5, sequence=987654321,
    )  # fmt: skip


def spot(exchange: str, symbol: str, last: float, received_ts: float | None = None) -> Ticker:
    now = time.time() if received_ts is None else received_ts
    return Ticker(exchange, symbol, last, last - 0.5, last + 0.5, 1.0, 2.0, 10.0, received_ts=now)


def write(
    client: topology.Client, prefix: str, tickers: Iterable[Ticker | Removal], kind: str = "extended"
) -> None:
    """Store and publish ``tickers`` with the layout's own commands (those the writer sends)."""
    commands = RedisLayout(prefix, kind).ticker_commands({(t.exchange, t.symbol): t for t in tickers})
    with client.pipeline(transaction=False) as pipeline:
        for command in commands:
            pipeline.execute_command(*command)
        pipeline.execute()


def eventually(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` comes to hold within 5 s (a closed connection may still be listed
    by the server for a moment: it learns of the close on its own time)."""
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            return False
    return True


def named(client: redis.Redis, name: str, subscribed: bool = False) -> int:
    """How many connections named ``name`` the server has (only those with a subscription)."""
    entries = [e for e in client.client_list() if e["name"] == name]
    return sum(e["sub"] != "0" or e["psub"] != "0" for e in entries) if subscribed else len(entries)


async def test_latest_gives_back_every_field_the_extended_record_stores(
    redis_client: redis.Redis, prefix: str
) -> None:
    ticker, other = perpetual(time.time()), spot("kraken", "BTC/USD", 100.0)
    write(redis_client, prefix, [ticker, other])
    with TickerClient(redis_client, prefix=prefix) as client:
        assert client.latest("bybit", "BTC/USDT:USDT") == ticker
        assert client.latest("bybit", "BTC/USDT:USDT", max_age=60) == ticker
        assert client.latest("kraken", "BTC/USD") == other
        assert client.latest("bybit", "ETH/USDT:USDT") is None  # nothing stored: None
        assert client.latest("bybit", "ETH/USDT:USDT", max_age=1) is None  # absent is not stale


async def test_a_ticker_older_than_max_age_raises_stale_ticker_naming_it(
    redis_client: redis.Redis, prefix: str
) -> None:
    received = time.time() - 60
    write(redis_client, prefix, [spot("kraken", "BTC/USD", 100.0, received)])
    with TickerClient(redis_client, prefix=prefix) as client:
        assert client.latest("kraken", "BTC/USD", max_age=90) is not None
        with pytest.raises(StaleTicker) as caught:
            client.latest("kraken", "BTC/USD", max_age=10)
    stale = caught.value
    assert (stale.exchange, stale.symbol, stale.max_age) == ("kraken", "BTC/USD", 10)
    assert 60 <= stale.age < 70 and stale.ticker.last == 100.0
    message = str(stale)
    assert message.startswith("kraken BTC/USD: the latest ticker is 6")
    assert " s old (received " in message and "older than max_age 10 s" in message


async def test_a_fullon_record_reads_as_a_ticker_without_the_fields_it_lacks_aged_by_its_time(
    redis_client: redis.Redis, prefix: str
) -> None:
    """fullon's record has no sizes, high/low, derivative fields or receive time: ``None``, and
    its ``time`` (the exchange's here) stands for the receive time, for ``max_age`` too."""
    ticker = perpetual(time.time())
    old = Ticker(
        "kraken", "BTC/USD", 100.0, 99.5, 100.5, exchange_ts=time.time() - 30, received_ts=time.time()
    )
    write(redis_client, prefix, [ticker, old], kind="fullon")
    with TickerClient(redis_client, prefix=prefix) as client:
        read = client.latest("bybit", "BTC/USDT:USDT")
        assert read == Ticker(
            "bybit", "BTC/USDT:USDT", last=64000.5, bid=63999.9, ask=64001.1, volume_24h=812.5,
            change_24h=120.0, change_pct_24h=0.19, received_ts=ticker.exchange_ts or 0.0,
        )  # fmt: skip
        assert client.latest("kraken", "BTC/USD", max_age=60) is not None
        with pytest.raises(StaleTicker, match="kraken BTC/USD: the latest ticker is 3"):
            client.latest("kraken", "BTC/USD", max_age=10)


async def test_latest_many_reads_pairs_of_several_exchanges_in_the_order_asked(
    redis_client: redis.Redis, prefix: str
) -> None:
    now = time.time()
    write(
        redis_client,
        prefix,
        [
            spot("kraken", "BTC/USD", 1.0, now),
            spot("kraken", "ETH/USD", 2.0, now - 120),
            spot("binance", "BTC/USDT", 3.0, now),
        ],
    )
    asked = [("binance", "BTC/USDT"), ("kraken", "ETH/USD"), ("kraken", "SOL/USD"), ("kraken", "BTC/USD")]
    with TickerClient(redis_client, prefix=prefix) as client:
        found = client.latest_many(asked)
        assert list(found) == asked
        assert [None if t is None else t.last for t in found.values()] == [3.0, 2.0, None, 1.0]
        assert client.latest_many(asked, max_age=600) == found
        with pytest.raises(StaleTicker, match="kraken ETH/USD: the latest ticker is 12"):
            client.latest_many(asked, max_age=60)
        assert client.latest_many([]) == {}


async def test_all_gives_an_exchanges_tickers_by_symbol(redis_client: redis.Redis, prefix: str) -> None:
    write(redis_client, prefix, [spot("kraken", "BTC/USD", 1.0), spot("kraken", "ETH/USD", 2.0)])
    write(redis_client, prefix, [spot("kraken_futures", "BTC/USD:USD", 3.0)])
    with TickerClient(redis_client, prefix=prefix) as client:
        assert {s: t.last for s, t in client.all("kraken").items()} == {"BTC/USD": 1.0, "ETH/USD": 2.0}
        write(redis_client, prefix, [Removal("kraken", "ETH/USD")])  # the daemon dropped the symbol
        assert list(client.all("kraken")) == ["BTC/USD"]
        assert client.all("bitstamp") == {}


async def test_a_client_reads_only_its_own_prefix(redis_client: redis.Redis, prefix: str) -> None:
    write(redis_client, prefix, [spot("kraken", "BTC/USD", 1.0)])
    with TickerClient(redis_client, prefix=prefix + "other:") as other:
        assert other.latest("kraken", "BTC/USD") is None and other.all("kraken") == {}
        assert other.prefix == prefix + "other:"


async def test_updates_follow_a_symbol_an_exchange_or_everything(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Each subscription is in place when ``updates()`` returns: what is written next arrives."""
    with TickerClient(redis_client, prefix=prefix) as client:
        symbol = client.updates("kraken", ["ETH/USD"])
        exchange = client.updates("kraken")
        everything = client.updates()
        with symbol, exchange, everything:
            write(redis_client, prefix, [spot("kraken", "BTC/USD", 1.0), spot("binance", "BTC/USDT", 2.0)])
            write(redis_client, prefix, [spot("kraken", "ETH/USD", 3.0)])
            assert [next(symbol).last, next(exchange).last, next(exchange).last] == [3.0, 1.0, 3.0]
            assert {next(everything).last for _ in range(3)} == {1.0, 2.0, 3.0}
            assert exchange.get(0.05) is None and symbol.get(0.05) is None  # nothing else came
        with pytest.raises(ValueError, match="symbols need their exchange"):
            client.updates(symbols=["BTC/USD"])
        with pytest.raises(ValueError, match="no symbols"):
            client.updates("kraken", [])


async def test_updates_of_the_fullon_layout_are_tickers_too(redis_client: redis.Redis, prefix: str) -> None:
    with TickerClient(redis_client, prefix=prefix) as client, client.updates("kraken") as updates:
        write(redis_client, prefix, [spot("kraken", "BTC/USD", 7.0)], kind="fullon")
        ticker = updates.get(5)
        assert ticker is not None and (ticker.last, ticker.bid_size, ticker.exchange_ts) == (7.0, None, None)


async def test_a_client_closes_what_it_opened_and_leaves_a_given_client_open(
    redis_client: redis.Redis, prefix: str
) -> None:
    name = f"tickerd-test-{uuid.uuid4().hex[:8]}"
    write(redis_client, prefix, [spot("kraken", "BTC/USD", 1.0)])
    with TickerClient.from_url(REDIS_URL, prefix=prefix, client_name=name) as client:
        assert client.latest("kraken", "BTC/USD") is not None
        with client.updates("kraken"):
            assert named(redis_client, name, subscribed=True) == 1
        assert eventually(lambda: named(redis_client, name, subscribed=True) == 0)  # it closed
        assert client.latest("kraken", "BTC/USD") is not None
        assert named(redis_client, name) == 1
    assert eventually(lambda: named(redis_client, name) == 0)

    given = redis.Redis.from_url(REDIS_URL, client_name=name, decode_responses=True)
    with TickerClient(given, prefix=prefix) as client:
        ticker = client.latest("kraken", "BTC/USD")  # str replies decode the same
        assert ticker is not None and ticker.last == 1.0 and list(client.all("kraken")) == ["BTC/USD"]
    assert given.ping() and named(redis_client, name) == 1  # still the program's, still open
    given.close()


async def test_tls_and_unix_socket_urls(tmp_path: Path) -> None:
    server = RedisServer(tls=tls_files(tmp_path), unix_socket=tmp_path / "redis.sock")
    server.start()
    try:
        unix = f"unix://{tmp_path / 'redis.sock'}?db=0"
        with TickerClient.from_url(unix) as client:
            write(client.redis, "", [spot("kraken", "BTC/USD", 1.0)])
            assert client.latest("kraken", "BTC/USD") is not None
        with TickerClient.from_url(f"{server.url}?ssl_ca_certs={tmp_path / 'ca.pem'}") as client:
            ticker = client.latest("kraken", "BTC/USD")
            assert ticker is not None and ticker.last == 1.0
    finally:
        server.kill()


def test_the_asyncio_client_has_the_same_methods(redis_client: redis.Redis, prefix: str) -> None:
    """A plain test: asyncio runs its own loop here (the suite's async tests run on trio)."""
    name = f"tickerd-test-{uuid.uuid4().hex[:8]}"
    ticker = perpetual(time.time())
    write(redis_client, prefix, [ticker, spot("kraken", "BTC/USD", 1.0, time.time() - 60)])

    async def body() -> None:
        async with AsyncTickerClient.from_url(REDIS_URL, prefix=prefix, client_name=name) as client:
            assert await client.latest("bybit", "BTC/USDT:USDT", max_age=10) == ticker
            assert await client.latest("bybit", "ETH/USDT:USDT") is None
            with pytest.raises(StaleTicker, match="kraken BTC/USD: the latest ticker is 6"):
                await client.latest("kraken", "BTC/USD", max_age=10)
            many = await client.latest_many([("kraken", "BTC/USD"), ("kraken", "ETH/USD")])
            assert [None if t is None else t.last for t in many.values()] == [1.0, None]
            assert list(await client.all("bybit")) == ["BTC/USDT:USDT"]
            async with client.updates("kraken", ["BTC/USD"]) as updates:
                write(redis_client, prefix, [spot("kraken", "BTC/USD", 2.0), spot("kraken", "ETH/USD", 3.0)])
                async for update in updates:
                    assert update.last == 2.0
                    break
                assert await updates.get(0.05) is None  # ETH/USD is not subscribed
            bare = client.updates("kraken")  # no async with: it ends with the client
            await bare.subscribe()
            write(redis_client, prefix, [spot("kraken", "ETH/USD", 4.0)])
            async for update in bare:
                assert update.last == 4.0
                break
            assert named(redis_client, name, subscribed=True) == 1
        assert eventually(lambda: named(redis_client, name) == 0)  # the subscription went with the client

    asyncio.run(body())


async def test_trio_reads_through_the_thread_bridge_what_a_running_daemon_writes(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    """The way the module's docstring tells trio programs to read: TickerClient in
    ``trio.to_thread``, subscribed before the daemon starts, so no ticker is missed."""
    kraken = await start_fake(nursery, FakeKraken())
    with TickerClient.from_url(REDIS_URL, prefix=prefix) as client, client.updates("kraken") as updates:
        await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
        await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
        await kraken.push("BTC/USD", last=64000.5, bid=63999.9, ask=64001.1, bid_size=0.25, volume=812.5)
        with trio.fail_after(10):
            while True:
                ticker = await trio.to_thread.run_sync(updates.get, 1.0)
                if ticker is not None and ticker.last == 64000.5:
                    break
        assert (ticker.bid, ticker.ask, ticker.bid_size, ticker.volume_24h) == (63999.9, 64001.1, 0.25, 812.5)
        assert ticker.received_ts > time.time() - 10
        assert await trio.to_thread.run_sync(client.latest, "kraken", "BTC/USD", 10.0) == ticker


async def test_trio_can_host_the_asyncio_client_in_a_worker_thread_of_its_own(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    """For a trio program that shares asyncio code: the asyncio client runs its own loop in a
    worker thread (``trio.to_thread``), hands tickers over with ``trio.from_thread``, and leaves
    when the trio task is cancelled (``trio.from_thread.check_cancelled`` between short waits)."""
    name = f"tickerd-test-{uuid.uuid4().hex[:8]}"
    send, receive = trio.open_memory_channel[Ticker](100)
    subscribed, done, scope = trio.Event(), trio.Event(), trio.CancelScope()

    def follow() -> None:  # a worker thread: an asyncio loop of its own
        async def main() -> None:
            async with (
                AsyncTickerClient.from_url(REDIS_URL, prefix=prefix, client_name=name) as client,
                client.updates("kraken") as updates,
            ):
                trio.from_thread.run_sync(subscribed.set)
                while True:
                    trio.from_thread.check_cancelled()  # raises once the trio task is cancelled
                    ticker = await updates.get(0.1)
                    if ticker is not None:
                        trio.from_thread.run(send.send, ticker)

        asyncio.run(main())

    async def run_follow() -> None:
        with scope:
            await trio.to_thread.run_sync(follow)
        done.set()

    nursery.start_soon(run_follow)
    with trio.fail_after(10):
        await subscribed.wait()
        write(redis_client, prefix, [spot("kraken", "BTC/USD", 5.0)])
        assert (await receive.receive()).last == 5.0
        scope.cancel()
        await done.wait()  # the thread returned: its loop ended, the client closed
    assert eventually(lambda: named(redis_client, name) == 0)


def test_importing_the_client_loads_neither_trio_nor_the_daemon() -> None:
    """A reader pays for redis-py and the layout, not for the daemon, its exchanges or trio."""
    code = "import sys, tickerd.client; print(*sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = loaded.stdout.split()
    assert "tickerd.client" in modules
    heavy = ("trio", "tickerd.daemon", "tickerd.config", "tickerd.exchanges", "psycopg", "prometheus_client")
    assert [m for m in modules if any(m == h or m.startswith(f"{h}.") for h in heavy)] == []
