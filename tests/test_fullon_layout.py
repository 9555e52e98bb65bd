"""The ticker record as fullon's programs read it: the extended layout's ``change`` and
``percentage``, and the strict ``[redis] layout = "fullon"`` with its ``ticker_time`` keys.

fullon_cache is not installable from the package index, so its contract is spelled out here:
``TickCache.get_ticker``/``get_tickers`` read ``tickers:{exchange}`` and build a ``Tick`` from
the JSON; ``set_ticker`` writes that field and ``ticker_time:{exchange}:{symbol}`` = ``str(time)``
with no expiry; ``delete_ticker`` deletes both.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
import trio

import tickerd
from tests.conftest import make_config, start_daemon, start_fake, stored
from tickerd.board import Board
from tickerd.config import ConfigError, load, structure
from tickerd.layout import RedisLayout
from tickerd.model import Removal, Ticker
from tickerd.testing import FakeKraken

#: fullon's ``Tick`` fields and the type each has in a record of a feed that sends them all.
TICK_TYPES = {
    "symbol": str,
    "exchange": str,
    "price": float,
    "volume": float,
    "time": float,
    "bid": float,
    "ask": float,
    "last": float,
    "change": float,
    "percentage": float,
}

STATE = {"last": 101.5, "bid": 101.0, "ask": 102.0, "volume": 12.5, "change": -3.25, "change_pct": -1.5}


async def _collect(
    nursery: trio.Nursery, client: redis.Redis, prefix: str, **sections: Any
) -> tuple[tickerd.TickerDaemon, FakeKraken, dict[str, Any]]:
    """A daemon (``sections`` added to its configuration) on a Kraken fake; the first record of
    BTC/USD it stores."""
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}, **sections)
    daemon = await start_daemon(nursery, config)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await kraken.push("BTC/USD", **STATE)
    with trio.fail_after(10):
        while (record := stored(client, prefix, "kraken", "BTC/USD")) is None or record["last"] != 101.5:
            await daemon.writer.flushed()
    return daemon, kraken, record


async def test_the_fullon_layout_stores_exactly_the_tick_fields_and_ticker_time(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    daemon, _, record = await _collect(nursery, redis_client, prefix, redis={"layout": "fullon"})
    assert {field: type(value) for field, value in record.items()} == TICK_TYPES
    assert (record["price"], record["volume"], record["change"], record["percentage"]) == (
        101.5,
        12.5,
        -3.25,
        -1.5,
    )
    layout = daemon.config.layout
    key = layout.ticker_time("kraken", "BTC/USD")
    assert redis_client.get(key) == str(record["time"]).encode()  # fullon's set_ticker: str(tick.time)
    assert redis_client.ttl(key) == -1  # no expiry
    assert redis_client.type(key) == b"string"

    daemon.remove("kraken", "BTC/USD")  # as fullon's delete_ticker: the field and the time key
    with trio.fail_after(10):
        while redis_client.exists(key):
            await daemon.writer.flushed()
    assert stored(redis_client, prefix, "kraken", "BTC/USD") is None
    assert redis_client.exists(layout.ticker_time("kraken", "ETH/USD"))  # the other symbol's stays


async def test_the_extended_layout_adds_change_and_percentage_and_no_time_keys(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    daemon, _, record = await _collect(nursery, redis_client, prefix)
    assert set(TICK_TYPES) < set(record)
    assert (
        (record["change"], record["percentage"])
        == (record["change_24h"], record["change_pct_24h"])
        == (-3.25, -1.5)
    )
    assert record["bid_size"] is not None and record["received_ts"] > 0
    assert not redis_client.exists(daemon.config.layout.ticker_time("kraken", "BTC/USD"))


def test_commands_of_a_fullon_batch_set_and_delete_time_keys_before_publishing() -> None:
    layout = RedisLayout("p:", "fullon")
    batch: dict[tuple[str, str], Ticker | Removal] = {
        ("kraken", "A/USD"): Ticker("kraken", "A/USD", last=1.0, exchange_ts=5.25, received_ts=6.0),
        ("kraken", "B/USD"): Removal("kraken", "B/USD"),
        ("binance", "C/USDT"): Ticker("binance", "C/USDT", last=2.0, received_ts=7.5),
    }
    commands = [list(command) for command in layout.ticker_commands(batch)]
    assert [command[0] for command in commands] == [
        "HSET",
        "HSET",
        "HDEL",
        "MSET",
        "DEL",
        "PUBLISH",
        "PUBLISH",
    ]
    assert commands[3][1:] == ["p:ticker_time:kraken:A/USD", "5.25", "p:ticker_time:binance:C/USDT", "7.5"]
    assert commands[4][1:] == ["p:ticker_time:kraken:B/USD"]
    assert [c[0] for c in RedisLayout("p:").ticker_commands(batch)] == [
        "HSET",
        "HSET",
        "HDEL",
        "PUBLISH",
        "PUBLISH",
    ]


def test_readers_take_records_of_either_layout() -> None:
    ticker = Ticker("kraken", "BTC/USD", last=10.0, bid=9.5, ask=10.5, received_ts=time.time())
    board = Board(stale_after=60.0)
    for kind in ("extended", "fullon"):
        layout = RedisLayout(kind=kind)
        record = layout.decode_ticker(layout.encode_ticker(ticker))
        assert record.get("received_ts") == (ticker.received_ts if kind == "extended" else None)
        board.update(record)
        assert board.lines(time.time())[1].split()[2:] == ["9.5", "10.5", "10", "0.0", "s", "fresh"]


def test_the_layout_is_fullon_in_fullon_mode_unless_set() -> None:
    assert structure({}).layout == RedisLayout("", "extended")
    fullon = {"database": {"mode": "fullon"}}
    assert structure(fullon).layout == RedisLayout("", "fullon")
    assert structure({**fullon, "redis": {"layout": "extended", "prefix": "x:"}}).layout == RedisLayout("x:")
    assert structure({"redis": {"layout": "fullon"}}).layout.strict
    assert load(environ={"REDIS_LAYOUT": "fullon"}).layout.strict


@pytest.mark.parametrize(
    ("raw", "environ", "problem"),
    [
        ({"redis": {"layout": "strict"}}, {}, "redis.layout: expected one of extended, fullon, got 'strict'"),
        ({"redis": {"layout": 1}}, {}, "redis.layout: expected a string, got 1"),
        (
            {},
            {"REDIS_LAYOUT": "Fullon"},
            "REDIS_LAYOUT (redis.layout): expected one of extended, fullon, got 'Fullon'",
        ),
    ],
)
def test_redis_layout_is_validated(raw: dict[str, Any], environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        if environ:
            load(environ=environ)
        else:
            structure(raw)
    assert error.value.problems == (problem,)
