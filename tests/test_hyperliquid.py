"""Hyperliquid: ``bbo`` + ``activeAssetCtx`` decoding on real frame shapes, the fake, the daemon."""

from __future__ import annotations

import random

import orjson
import pytest
import redis
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, stored, until
from tickerd import exchanges
from tickerd.config import FeedSettings
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.hyperliquid import HyperliquidDecoder, coin_of, unified
from tickerd.feed import Feed
from tickerd.health import ExchangeHealth
from tickerd.model import Ticker
from tickerd.testing.hyperliquid import FakeHyperliquid

BTC = "BTC/USDC:USDC"
#: Shape of the official SDK's ``BboData``; ``bbo`` is ``[best bid, best ask]``, ``time`` in ms.
BBO = (
    '{"channel":"bbo","data":{"coin":"BTC","time":1754450974231,'
    '"bbo":[{"px":"113373.0","sz":"7.6699","n":17},{"px":"113374.0","sz":"0.12","n":3}]}}'
)
#: A frame captured from wss://api.hyperliquid.xyz/ws (2026-07-31), coin renamed to BTC.
CTX = (
    '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"funding":"0.0000074304",'
    '"openInterest":"221413.164","prevDayPx":"337.34","dayNtlVlm":"172946726.7845301032",'
    '"premium":"0.0002355392","oraclePx":"312.05","markPx":"312.12","midPx":"312.13",'
    '"impactPxs":["312.094","312.153"],"dayBaseVlm":"534571.812"}}}'
)


def decoder(*symbols: str) -> HyperliquidDecoder:
    return exchanges.get("hyperliquid").decoder(symbols)  # type: ignore[return-value]


def error(text: str) -> bytes:
    return orjson.dumps({"channel": "error", "data": text})


def test_bbo_maps_book_and_time() -> None:
    [ticker] = decoder(BTC).decode(BBO)
    assert (ticker.exchange, ticker.symbol) == ("hyperliquid", BTC)
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (113373.0, 7.6699, 113374.0, 0.12)
    assert ticker.exchange_ts == 1754450974.231
    assert ticker.last is None and ticker.volume_24h is None  # no context yet


def test_context_and_book_merge_into_complete_tickers() -> None:
    dec = decoder(BTC)
    [first] = dec.decode(CTX)
    assert first.last == 312.13  # the mid price: Hyperliquid publishes no last trade here
    assert first.volume_24h == 534571.812  # base volume, not the notional dayNtlVlm
    assert first.change_24h == pytest.approx(312.13 - 337.34)
    assert first.change_pct_24h == pytest.approx((312.13 - 337.34) / 337.34 * 100)
    assert first.bid is None and first.exchange_ts is None
    assert first.high_24h is None and first.low_24h is None  # Hyperliquid sends none

    [second] = dec.decode(BBO)
    assert second.bid == 113373.0 and second.ask_size == 0.12
    assert (second.last, second.volume_24h) == (312.13, 534571.812)  # kept from the context

    [third] = dec.decode(CTX.replace('"midPx":"312.13"', '"midPx":"312.5"'))
    assert third.last == 312.5 and third.bid == 113373.0  # the book is kept too
    assert third.exchange_ts == 1754450974.231  # the time of the book it carries


def test_one_sided_book_and_null_mid() -> None:
    dec = decoder(BTC)
    one_sided = BBO.replace('{"px":"113374.0","sz":"0.12","n":3}', "null")
    [ticker] = dec.decode(one_sided)
    assert (ticker.bid, ticker.ask, ticker.ask_size) == (113373.0, None, None)
    [ticker] = dec.decode(CTX.replace('"midPx":"312.13"', '"midPx":null'))
    assert ticker.last == 312.12  # the mark price while there is no mid


def test_greeting_pong_and_acks_are_not_junk() -> None:
    dec = decoder(BTC)
    ack = (
        '{"channel":"subscriptionResponse","data":{"method":"unsubscribe",'
        '"subscription":{"type":"bbo","coin":"BTC"}}}'
    )
    for frame in ("Websocket connection established.", '{"channel":"pong"}', ack):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []


def test_junk_is_counted_and_other_coins_dropped() -> None:
    dec = decoder(BTC)
    assert dec.decode(BBO.replace('"BTC"', '"ETH"')) == []
    assert dec.junk == 0
    for frame in ("pong", '{"channel":"allMids","data":{"mids":{}}}', '{"data":1}', b"\x00\xff", "[]"):
        assert dec.decode(frame) == []
    assert dec.junk == 5


def test_subscribe_frames_one_per_feed_and_acks() -> None:
    dec = decoder()
    frames = [orjson.loads(f) for f in dec.subscribe([BTC, "ETH/USDC:USDC"])]
    assert frames == [
        {"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}},
        {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}},
        {"method": "subscribe", "subscription": {"type": "bbo", "coin": "ETH"}},
        {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "ETH"}},
    ]
    ack = {"channel": "subscriptionResponse", "data": frames[2]}
    assert dec.decode(orjson.dumps(ack)) == []
    assert dec.events == [Subscribed("ETH/USDC:USDC")]


def test_unknown_coin_is_rejected_once_and_the_others_go_on() -> None:
    dec = decoder(BTC, "FOO/USDC:USDC")
    for feed in ("bbo", "activeAssetCtx"):
        dec.decode(error(f'Invalid subscription {{"type":"{feed}","coin":"FOO"}}'))
    assert dec.events == [Rejected("FOO/USDC:USDC", 'Invalid subscription {"type":"bbo","coin":"FOO"}')]
    assert dec.decode(BBO)[0].symbol == BTC
    dec.events.clear()
    dec.decode(error("Error parsing JSON into valid websocket request: x"))  # names no coin
    assert dec.events == [] and dec.junk == 0


def test_already_subscribed_means_subscribed() -> None:
    dec = decoder(BTC)
    dec.decode(error('Already subscribed: {"type":"activeAssetCtx","coin":"BTC"}'))
    assert dec.events == [Subscribed(BTC)]


def test_thousand_unit_coin_falls_back_to_lowercase_k_then_rejects() -> None:
    pepe = "KPEPE/USDC:USDC"
    dec = decoder(pepe)
    dec.decode(error('Invalid subscription {"type":"bbo","coin":"KPEPE"}'))
    retries = [orjson.loads(e.frame) for e in dec.events if isinstance(e, Reply)]
    assert [r["subscription"] for r in retries] == [
        {"type": "bbo", "coin": "kPEPE"},
        {"type": "activeAssetCtx", "coin": "kPEPE"},
    ]
    dec.events.clear()
    dec.decode(error('Invalid subscription {"type":"activeAssetCtx","coin":"KPEPE"}'))  # the other feed
    assert dec.events == []
    [ticker] = dec.decode(BBO.replace('"BTC"', '"kPEPE"'))
    assert ticker.symbol == pepe
    [frame, _] = dec.unsubscribe([pepe])
    assert orjson.loads(frame)["subscription"]["coin"] == "kPEPE"

    dec = decoder(pepe)
    dec.decode(error('Invalid subscription {"type":"bbo","coin":"KPEPE"}'))
    dec.events.clear()
    dec.decode(error('Invalid subscription {"type":"bbo","coin":"kPEPE"}'))
    assert dec.events == [Rejected(pepe, 'Invalid subscription {"type":"bbo","coin":"kPEPE"}')]


def test_unsubscribe_untracks() -> None:
    dec = decoder(BTC)
    frames = [orjson.loads(f) for f in dec.unsubscribe([BTC])]
    assert {f["method"] for f in frames} == {"unsubscribe"}
    assert dec.decode(BBO) == [] and dec.decode(CTX) == []


def test_symbol_forms() -> None:
    adapter = exchanges.get("hyperliquid")
    adapter.check_symbol(BTC)
    adapter.check_symbol("KPEPE/USDC:USDC")
    for bad in ("BTC/USDC", "BTC/USDT:USDT", "BTC/USD:BTC"):
        with pytest.raises(ValueError, match="expected BASE/USDC:USDC"):
            adapter.check_symbol(bad)
    with pytest.raises(ValueError, match="not a unified symbol"):
        adapter.check_symbol("kPEPE/USDC:USDC")  # the unified form is upper-case
    assert (coin_of(BTC), unified("BTC"), unified("kPEPE")) == ("BTC", BTC, "KPEPE/USDC:USDC")


# -- against the fake, with the daemon and real Redis ---------------------------------------


async def test_tickers_reach_redis_with_their_values(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, updates: Updates
) -> None:
    fake = FakeHyperliquid()
    await start_fake(nursery, fake)
    symbols = [BTC, "ETH/USDC:USDC"]
    await start_daemon(nursery, make_config(prefix, {"hyperliquid": fake}, {"hyperliquid": symbols}))
    await until(fake, lambda: all(fake.is_subscribed(s) for s in symbols))

    await fake.push(BTC, last=64000.5, bid=63999.5, ask=64001.5, bid_size=0.25, ask_size=3.0, volume=812.5)
    record = await updates.wait_for(
        lambda r: r["symbol"] == BTC and r["last"] == 64000.5 and r["bid"] == 63999.5
    )
    assert record["exchange"] == "hyperliquid"
    assert (record["price"], record["ask"], record["bid_size"], record["ask_size"]) == (
        64000.5,
        64001.5,
        0.25,
        3.0,
    )
    assert record["volume"] == 812.5

    await fake.push_bbo(BTC, bid=64010.0)
    record = await updates.wait_for(lambda r: r["symbol"] == BTC and r["bid"] == 64010.0)
    assert record["last"] == 64000.5 and record["volume"] == 812.5  # a book update keeps the context
    assert stored(redis_client, prefix, "hyperliquid", BTC) == record
    assert stored(redis_client, prefix, "hyperliquid", "ETH/USDC:USDC") is not None  # from the first push


async def test_rejected_coin_does_not_stop_the_others_and_kilo_coins_resolve(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    fake = await start_fake(nursery, FakeHyperliquid())
    fake.reject("FOO/USDC:USDC")
    symbols = [BTC, "FOO/USDC:USDC", "KPEPE/USDC:USDC"]
    daemon = await start_daemon(nursery, make_config(prefix, {"hyperliquid": fake}, {"hyperliquid": symbols}))
    await until(fake, lambda: fake.is_subscribed(BTC) and fake.is_subscribed("KPEPE/USDC:USDC"))
    await until(
        fake, lambda: {"FOO", "kPEPE"} <= {m.get("subscription", {}).get("coin") for m in fake.received}
    )

    await fake.push("KPEPE/USDC:USDC", last=0.0123)  # sent after the errors, on the same socket
    await updates.wait_for(lambda r: r["symbol"] == "KPEPE/USDC:USDC" and r["last"] == 0.0123)
    await fake.push(BTC, last=65000.0)
    await updates.wait_for(lambda r: r["symbol"] == BTC and r["last"] == 65000.0)

    health = daemon.health().exchanges["hyperliquid"]
    assert list(health.rejected) == ["FOO/USDC:USDC"]
    assert "Invalid subscription" in health.rejected["FOO/USDC:USDC"]
    assert health.connections == 1 and health.junk == 0


async def test_a_dropped_connection_heals(nursery: trio.Nursery, prefix: str, updates: Updates) -> None:
    fake = await start_fake(nursery, FakeHyperliquid())
    config = make_config(
        prefix, {"hyperliquid": fake}, {"hyperliquid": [BTC]}, feed={"reconnect_delay": 0.01}
    )
    await start_daemon(nursery, config)
    await until(fake, lambda: fake.is_subscribed(BTC))
    await fake.drop()
    await until(fake, lambda: fake.connection_count == 2 and fake.is_subscribed(BTC))
    await fake.push(BTC, last=66000.0)
    await updates.wait_for(lambda r: r["symbol"] == BTC and r["last"] == 66000.0)


async def test_pings_every_30_seconds_and_pongs_keep_a_quiet_socket(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = await start_fake(nursery, FakeHyperliquid())
    send, receive = trio.open_memory_channel[Ticker](100)
    settings = FeedSettings(silence_timeout=40.0)
    adapter = exchanges.get("hyperliquid")
    feed = Feed(
        adapter,
        fake.url,
        [BTC],
        settings=settings,
        sink=send,
        health=ExchangeHealth("hyperliquid"),
        feed_id=1,
        rng=random.Random(1),
    )
    nursery.start_soon(feed.run)
    await until(fake, lambda: fake.is_subscribed(BTC))
    opened = fake.connections[0].opened_at

    def pings() -> list[float]:
        return [t for m, t in zip(fake.received, fake.received_times, strict=True) if m == {"method": "ping"}]

    with trio.fail_after(200):  # virtual seconds
        await fake.wait_until(lambda: len(pings()) >= 3)
    for n, at in enumerate(pings(), start=1):
        assert abs(at - opened - 30.0 * n) <= 40.0 / 4  # one watchdog step of virtual-clock slack
    assert fake.connection_count == 1  # the pongs kept the silence watchdog quiet
    assert receive.statistics().current_buffer_used >= 1  # the subscription's first frames
