"""End to end: fake exchanges → tickerd → real Redis."""

from __future__ import annotations

import attrs
import pytest
import redis
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, stored, wait_health
from tickerd.config import ExchangeConfig
from tickerd.daemon import OFFLINE_HINT_AFTER
from tickerd.exchanges.kraken import Kraken
from tickerd.testing import FakeBinance, FakeKraken


async def test_kraken_tickers_reach_redis_with_their_values(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))

    await kraken.push(
        "BTC/USD", last=64000.5, bid=63999.9, ask=64001.1, bid_size=0.25, ask_size=3.0, volume=812.5
    )
    record = await updates.wait_for(lambda r: r["symbol"] == "BTC/USD" and r["last"] == 64000.5)

    assert record["exchange"] == "kraken"
    assert (record["price"], record["bid"], record["ask"]) == (64000.5, 63999.9, 64001.1)
    assert (record["bid_size"], record["ask_size"], record["volume"]) == (0.25, 3.0, 812.5)
    assert stored(redis_client, prefix, "kraken", "BTC/USD") == record
    assert stored(redis_client, prefix, "kraken", "ETH/USD") is not None  # from the snapshot


async def test_with_a_batch_window_every_latest_value_still_reaches_redis(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    """The daemon wires one pacer for all feeds and the window into the writer: a stream of
    updates on two symbols ends with each one's latest value stored."""
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(
        prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}, feed={"batch_window": 0.01}
    )
    daemon = await start_daemon(nursery, config)
    assert daemon.pacer.window == 0.01
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))
    for n in range(1, 51):
        await kraken.push("BTC/USD", last=100.0 + n)
        await kraken.push("ETH/USD", last=10.0 + n)

    def last(symbol: str) -> object:
        return (stored(redis_client, prefix, "kraken", symbol) or {}).get("last")

    with trio.fail_after(10):
        while (last("BTC/USD"), last("ETH/USD")) != (150.0, 60.0):
            await daemon.writer.flushed()
    assert daemon.writer.coalesced > 0  # the window gathered updates of a symbol into one write


async def test_binance_book_and_stats_merge_into_one_ticker(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    binance = await start_fake(nursery, FakeBinance())
    await start_daemon(nursery, make_config(prefix, {"binance": binance}, {"binance": ["BTC/USDT"]}))
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))

    await binance.push_stats("BTC/USDT", last=65000.0, volume=1500.0, high=66000.0, low=63000.0)
    await updates.wait_for(lambda r: r["last"] == 65000.0)
    await binance.push("BTC/USDT", bid=64999.0, ask=65001.0, bid_size=1.25, ask_size=0.5)
    record = await updates.wait_for(lambda r: r["bid"] == 64999.0)

    assert record["last"] == 65000.0  # the book update keeps the last price from @ticker
    assert (record["ask"], record["bid_size"], record["ask_size"]) == (65001.0, 1.25, 0.5)
    assert (record["volume"], record["high_24h"], record["low_24h"]) == (1500.0, 66000.0, 63000.0)
    assert stored(redis_client, prefix, "binance", "BTC/USDT") == record


async def test_add_and_remove_on_a_running_daemon(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    config = make_config(prefix, {"kraken": kraken, "binance": binance}, {"kraken": ["BTC/USD"]})
    daemon = await start_daemon(nursery, config)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))

    daemon.add("kraken", "ETH/USD")
    daemon.add("kraken", "ETH/USD")  # idempotent
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    subscribes = [m["params"]["symbol"] for m in kraken.received if m.get("method") == "subscribe"]
    assert subscribes == [["BTC/USD"], ["ETH/USD"]]  # only the new symbol, once
    assert kraken.connection_count == 1  # no connection restarted

    daemon.add("binance", "BTC/USDT")  # an exchange that was not running yet
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT"))
    await binance.push("BTC/USDT", bid=5.0)
    await updates.wait_for(lambda r: r["exchange"] == "binance" and r["bid"] == 5.0)

    daemon.remove("kraken", "BTC/USD")
    await kraken.wait_until(lambda: not kraken.is_subscribed("BTC/USD"))
    assert kraken.is_subscribed("ETH/USD") and kraken.connection_count == 1
    assert daemon.symbols() == {"kraken": ["ETH/USD"], "binance": ["BTC/USDT"]}

    daemon.remove("kraken", "ETH/USD")  # the last symbol: its connection closes
    await kraken.wait_until(lambda: not kraken.connections)
    daemon.add("kraken", "SOL/USD")
    await kraken.wait_until(lambda: kraken.is_subscribed("SOL/USD"))


async def test_add_rejects_bad_input_before_changing_anything(nursery: trio.Nursery, prefix: str) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
    with pytest.raises(KeyError, match="unknown exchange 'nope'"):
        daemon.add("nope", "BTC/USD")
    with pytest.raises(ValueError, match="unified symbol"):
        daemon.add("kraken", "btcusd")
    assert daemon.symbols() == {"kraken": ["BTC/USD"]}


async def test_symbols_are_chunked_over_connections(
    nursery: trio.Nursery, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Kraken, "max_symbols_per_connection", 2)
    kraken = await start_fake(nursery, FakeKraken())
    symbols = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ADA/USD"]
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": symbols}))
    await kraken.wait_until(lambda: all(kraken.is_subscribed(s) for s in symbols))
    assert sorted(len(c.subscribed) for c in kraken.connections) == [1, 2, 2]
    await wait_health(daemon, lambda h: h.exchanges["kraken"].connections == 3)


async def test_symbols_per_connection_splits_below_the_exchange_limit(
    nursery: trio.Nursery, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    symbols = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ADA/USD"]
    config = make_config(prefix, {"kraken": kraken}, {"kraken": symbols})
    config = attrs.evolve(
        config, exchanges={"kraken": attrs.evolve(config.exchanges["kraken"], symbols_per_connection=2)}
    )
    daemon = await start_daemon(nursery, config)
    await kraken.wait_until(lambda: all(kraken.is_subscribed(s) for s in symbols))
    assert sorted(len(c.subscribed) for c in kraken.connections) == [1, 2, 2]
    await wait_health(daemon, lambda h: h.exchanges["kraken"].connections == 3)


async def test_rejected_symbol_is_in_health_and_the_others_flow(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.reject("FOO/USD")
    daemon = await start_daemon(
        nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["FOO/USD", "BTC/USD"]})
    )
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await kraken.push("BTC/USD", last=77.0)
    await updates.wait_for(lambda r: r["last"] == 77.0)
    health = daemon.health().exchanges["kraken"]
    assert health.rejected == {"FOO/USD": "Currency pair not supported FOO/USD"}
    assert health.state == "connected"


async def test_an_exchange_that_fails_is_left_alone_while_others_go_on(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    binance.refuse = True
    config = make_config(
        prefix,
        {"kraken": kraken, "binance": binance},
        {"kraken": ["BTC/USD"], "binance": ["BTC/USDT"]},
        feed={"max_retries": 2, "reconnect_delay": 0.01},
    )
    daemon = await start_daemon(nursery, config)
    await binance.wait_until(lambda: len(binance.attempt_times) == 2)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await kraken.push("BTC/USD", last=11.0)
    await updates.wait_for(lambda r: r["last"] == 11.0)
    await wait_health(daemon, lambda h: h.exchanges["binance"].state == "failed")
    assert daemon.health().exchanges["kraken"].state == "connected"
    assert "503" in (daemon.health().exchanges["binance"].last_error or "")


async def test_a_symbol_added_after_a_connection_gave_up_gets_a_new_one(
    nursery: trio.Nursery, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.refuse = True
    config = make_config(
        prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}, feed={"max_retries": 1, "reconnect_delay": 0.01}
    )
    daemon = await start_daemon(nursery, config)
    await wait_health(daemon, lambda h: h.exchanges["kraken"].state == "failed")
    kraken.refuse = False
    daemon.add("kraken", "ETH/USD")
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    assert not kraken.is_subscribed("BTC/USD")  # the failed connection stays given up
    await wait_health(daemon, lambda h: h.exchanges["kraken"].state == "degraded")


@pytest.mark.parametrize("one_connects", [False, True])
async def test_a_hint_says_once_that_the_machine_may_be_offline_when_no_exchange_ever_connected(
    nursery: trio.Nursery, prefix: str, clock: trio.testing.MockClock, logs: list[str], one_connects: bool
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    kraken.refuse = True
    binance.refuse = not one_connects
    fakes = {"kraken": kraken, "binance": binance}
    await start_daemon(nursery, make_config(prefix, fakes, {"kraken": ["BTC/USD"], "binance": ["BTC/USDT"]}))
    await trio.sleep(OFFLINE_HINT_AFTER - 1)  # virtual time, as every wait below
    assert not any("may be offline" in line for line in logs)
    await trio.sleep(3 * OFFLINE_HINT_AFTER)
    hints = [line for line in logs if "may be offline" in line]
    assert len(hints) == (0 if one_connects else 1)
    assert all("`tickerd demo`" in hint for hint in hints)
    assert any("no connection (" in line for line in logs)  # kraken's own lines say why


async def test_apply_keeps_the_configured_url_where_it_gives_none(
    nursery: trio.Nursery, prefix: str, logs: list[str]
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await daemon.apply({"kraken": ExchangeConfig(symbols=("BTC/USD", "ETH/USD"))})  # the README's example
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))
    assert kraken.connection_count == 1  # the same connection: not restarted, not re-pointed
    assert not any("restarted" in line for line in logs)
