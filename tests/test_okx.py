"""OKX v5: decoder on real frame shapes, and the daemon against the fake server."""

from __future__ import annotations

import random

import orjson
import pytest
import redis
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, stored
from tickerd import exchanges
from tickerd.config import FeedSettings
from tickerd.exchanges.base import ReconnectRequested, Rejected, Subscribed
from tickerd.exchanges.okx import OKXDecoder
from tickerd.feed import Feed
from tickerd.health import ExchangeHealth
from tickerd.model import Ticker
from tickerd.testing import fake_for
from tickerd.testing.okx import FakeOKX

SPOT = "BTC/USDT"
SWAP = "BTC/USDT:USDT"

# Real frames: a swap push and ack captured by ccxt (PR 19076), a spot push from ccxt PR 18558,
# the error from okxapi/python-okx#21 and the notice from sieblyio/okx-api#141.
SWAP_TICKER = (
    '{"arg":{"channel":"tickers","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP","instId":"BTC-USDT-SWAP",'
    '"last":"26008","lastSz":"78","askPx":"26008.1","askSz":"73","bidPx":"26008","bidSz":"1605",'
    '"open24h":"27198.2","high24h":"27600","low24h":"25640.4","sodUtc0":"25942","sodUtc8":"26919.4",'
    '"volCcy24h":"214272.91","vol24h":"21427291","ts":"1693560446879"}]}'
)
SPOT_TICKER = (
    '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT",'
    '"last":"30983","lastSz":"0.02419975","askPx":"31007.2","askSz":"0.00003367","bidPx":"30983",'
    '"bidSz":"19.17235638","open24h":"30366.5","high24h":"154485.3","low24h":"9900","sodUtc0":"30597.3",'
    '"sodUtc8":"30906.3","volCcy24h":"481115905184.001969898","vol24h":"12593106.08835147",'
    '"ts":"1689295487014"}]}'
)
ACK = '{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT-SWAP"}}'
ERROR = '{"event":"error","msg":"channel:tickers,instId:LTC-USD doesn\'t exist","code":"60018"}'
NOTICE = (
    '{"event":"notice","msg":"The connection will soon be closed for a service upgrade. Please reconnect.",'
    '"code":"64008","connId":"761bf5d1"}'
)


def decoder(*symbols: str) -> OKXDecoder:
    return exchanges.get("okx").decoder(symbols)  # type: ignore[return-value]


# -- decoder ---------------------------------------------------------------------------------


def test_swap_ticker_maps_every_field() -> None:
    [ticker] = decoder(SWAP).decode(SWAP_TICKER)
    assert (ticker.exchange, ticker.symbol) == ("okx", SWAP)
    assert (ticker.last, ticker.bid, ticker.ask) == (26008.0, 26008.0, 26008.1)
    assert (ticker.bid_size, ticker.ask_size) == (1605.0, 73.0)  # contracts
    assert ticker.volume_24h == 214272.91  # volCcy24h: base currency for swaps, not contracts
    assert (ticker.high_24h, ticker.low_24h) == (27600.0, 25640.4)
    assert ticker.change_24h == -1190.2
    assert ticker.change_pct_24h == pytest.approx(-4.3760249)
    assert ticker.exchange_ts == 1693560446.879


def test_spot_volume_is_the_base_volume() -> None:
    [ticker] = decoder(SPOT).decode(SPOT_TICKER)
    assert (ticker.symbol, ticker.last, ticker.volume_24h) == (SPOT, 30983.0, 12593106.08835147)
    assert (ticker.bid_size, ticker.ask_size) == (19.17235638, 0.00003367)
    assert ticker.change_24h == 616.5


def test_untracked_instruments_are_dropped() -> None:
    dec = decoder(SPOT)
    assert dec.decode(SWAP_TICKER) == [] and dec.junk == 0


def test_ack_error_notice_and_pong() -> None:
    dec = decoder(SWAP, "LTC/USD")
    for frame in (ACK, ERROR, NOTICE, "pong", b"pong", '{"event":"channel-conn-count","connCount":"2"}'):
        assert dec.decode(frame) == []
    assert dec.events == [
        Subscribed(SWAP),
        Rejected("LTC/USD", "60018: channel:tickers,instId:LTC-USD doesn't exist"),
        ReconnectRequested(
            "64008: The connection will soon be closed for a service upgrade. Please reconnect."
        ),
    ]
    assert dec.junk == 0


def test_other_notices_and_unattributable_errors_do_nothing() -> None:
    dec = decoder(SWAP)
    dec.decode('{"event":"notice","code":"64009","msg":"something else"}')
    dec.decode('{"event":"error","code":"60012","msg":"Illegal request: {\\"op\\":\\"subscribe\\"}"}')
    assert dec.events == [] and dec.junk == 0


def test_junk_is_counted() -> None:
    dec = decoder(SWAP)
    for frame in ("ping?", '{"event":"mystery"}', '{"arg":{"channel":"tickers"},"data":[{}]}', b"\xff", "{}"):
        assert dec.decode(frame) == []
    assert dec.junk == 5


def test_symbols_map_both_ways_and_batch_many_to_a_request() -> None:
    symbols = [SPOT, SWAP, "BTC/USD:BTC", "ETH/USDC:USDC"]
    [frame] = decoder().subscribe(symbols)
    request = orjson.loads(frame)
    assert request["op"] == "subscribe"
    assert [a["instId"] for a in request["args"]] == [
        "BTC-USDT",
        "BTC-USDT-SWAP",
        "BTC-USD-SWAP",
        "ETH-USDC-SWAP",
    ]
    assert {a["channel"] for a in request["args"]} == {"tickers"}
    many = decoder().subscribe([f"C{i}/USDT" for i in range(250)])
    assert [len(orjson.loads(f)["args"]) for f in many] == [100, 100, 50]
    [unsub] = decoder(SWAP).unsubscribe([SWAP])
    assert orjson.loads(unsub) == {
        "op": "unsubscribe",
        "args": [{"channel": "tickers", "instId": "BTC-USDT-SWAP"}],
    }


def test_check_symbol_names_the_expected_forms() -> None:
    okx = exchanges.get("okx")
    for good in (SPOT, SWAP, "BTC/USD:BTC", "ETH/USDC:USDC"):
        okx.check_symbol(good)
    for bad in ("BTC/USDT:BTC", "BTC/USD:USD", "BTC-USDT"):
        with pytest.raises(ValueError, match="BASE/"):
            okx.check_symbol(bad)


# -- against the fake ------------------------------------------------------------------------


async def test_spot_and_swap_reach_redis_from_one_batched_request(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    fake = await start_fake(nursery, fake_for("okx")())
    await start_daemon(nursery, make_config(prefix, {"okx": fake}, {"okx": [SPOT, SWAP]}))
    with trio.fail_after(10):
        await fake.wait_until(lambda: fake.is_subscribed(SPOT) and fake.is_subscribed(SWAP))
    assert fake.connection_count == 1
    assert [m["op"] for m in fake.received if isinstance(m, dict)] == ["subscribe"]

    await fake.push(SWAP, last=65000.5, bid=64999.5, ask=65001.0, bid_size=30.0, ask_size=40.0, volume=900.0)
    record = await updates.wait_for(lambda r: r["symbol"] == SWAP and r["last"] == 65000.5)
    assert (record["bid"], record["ask"], record["bid_size"], record["ask_size"]) == (
        64999.5,
        65001.0,
        30.0,
        40.0,
    )
    assert record["volume"] == 900.0
    assert stored(redis_client, prefix, "okx", SWAP) == record
    await fake.push(SPOT, last=64000.0, volume=12.5)
    record = await updates.wait_for(lambda r: r["symbol"] == SPOT and r["last"] == 64000.0)
    assert record["volume"] == 12.5


async def test_rejected_instrument_does_not_stop_the_others(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    fake = await start_fake(nursery, FakeOKX())
    fake.reject("NOPE/USDT")
    daemon = await start_daemon(
        nursery, make_config(prefix, {"okx": fake}, {"okx": [SPOT, "NOPE/USDT", SWAP]})
    )
    with trio.fail_after(10):
        await fake.wait_until(lambda: fake.is_subscribed(SPOT) and fake.is_subscribed(SWAP))
    await fake.push(SWAP, last=3.25)
    await updates.wait_for(lambda r: r["symbol"] == SWAP and r["last"] == 3.25)
    # Frames arrive in order: the error that came before this push has been handled.
    rejected = daemon.health().exchanges["okx"].rejected
    assert list(rejected) == ["NOPE/USDT"] and "NOPE-USDT doesn't exist" in rejected["NOPE/USDT"]


async def test_upgrade_notice_rotates_before_the_server_closes(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    fake = await start_fake(nursery, FakeOKX())
    await start_daemon(nursery, make_config(prefix, {"okx": fake}, {"okx": [SWAP]}))
    with trio.fail_after(10):
        await fake.wait_until(lambda: fake.is_subscribed(SWAP))
        first = fake.connections[0]
        await fake.notice(close_after=30.0)
        await fake.wait_until(
            lambda: fake.connection_count == 2 and first.closed and fake.is_subscribed(SWAP)
        )
    await fake.push(SWAP, last=70000.0)
    await updates.wait_for(lambda r: r["symbol"] == SWAP and r["last"] == 70000.0)


async def test_text_pings_keep_a_quiet_connection_open(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = await start_fake(nursery, FakeOKX())
    send, _receive = trio.open_memory_channel[Ticker](100)
    feed = Feed(
        exchanges.get("okx"),
        fake.url,
        [SWAP],
        settings=FeedSettings(silence_timeout=30.0),
        sink=send,
        health=ExchangeHealth("okx"),
        feed_id=1,
        rng=random.Random(1),
    )
    nursery.start_soon(feed.run)

    def pings() -> list[float]:
        return [t for m, t in zip(fake.received, fake.received_times, strict=True) if m == "ping"]

    with trio.fail_after(300):
        await fake.wait_until(lambda: fake.is_subscribed(SWAP))
        opened = fake.connections[0].opened_at
        await fake.wait_until(lambda: len(pings()) >= 10)
    for n, at in enumerate(pings(), start=1):
        assert abs(at - opened - 20.0 * n) < 1.0
    # 200 s with no ticker pushed: each pong counts as a push for OKX's 30 s rule.
    assert fake.connection_count == 1 and fake.pongs >= 10
