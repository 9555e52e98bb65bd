"""Bitget v2: decoder on the documentation's frames, one native name under several product types,
request batching, and the fake's ping rule through the daemon."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing
import trio_websocket

from tests.conftest import start_fake
from tests.test_exchange_contract import start
from tickerd import exchanges
from tickerd.config import FeedSettings
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.bitget import BitgetDecoder, arg, native
from tickerd.testing.bitget import FakeBitget

SPOT = "ETH/USDT"
PERP = "BTC/USDT:USDT"
INVERSE = "BTC/USD:BTC"
USDC = "BTC/USDC:USDC"

# The push examples of Bitget's docs: api-doc/spot/websocket/public/Tickers-Channel and
# api-doc/contract/websocket/public/Tickers-Channel.
SPOT_TICKER = (
    '{"action":"snapshot","arg":{"instType":"SPOT","channel":"ticker","instId":"ETHUSDT"},"data":[{'
    '"instId":"ETHUSDT","lastPr":"2200.10","open24h":"0.00","high24h":"0.00","low24h":"0.00",'
    '"change24h":"0.00","bidPr":"1792","askPr":"2200.1","bidSz":"0.0084","askSz":"19740.8811",'
    '"baseVolume":"0.0000","quoteVolume":"0.0000","openUtc":"0.00","changeUtc24h":"0",'
    '"ts":"1695702438018"}],"ts":1695702438029}'
)
FUTURES_TICKER = (
    '{"action":"snapshot","arg":{"instType":"USDT-FUTURES","channel":"ticker","instId":"BTCUSDT"},'
    '"data":[{"instId":"BTCUSDT","lastPr":"27000.5","bidPr":"27000","askPr":"27000.5","bidSz":"2.71",'
    '"askSz":"8.76","open24h":"27000.5","high24h":"30668.5","low24h":"26999.0","change24h":"-0.00002",'
    '"fundingRate":"0.000010","nextFundingTime":"1695722400000","markPrice":"27000.0",'
    '"indexPrice":"25702.4","holdingAmount":"929.502","baseVolume":"368.900",'
    '"quoteVolume":"10152429.961","openUtc":"27000.5","symbolType":1,"symbol":"BTCUSDT",'
    '"deliveryPrice":"0","ts":"1695715383021"}],"ts":1695715383039}'
)
# Acks: the examples of api-doc/common/websocket-intro (subscribe) and the Tickers-Channel page.
SPOT_ACK = '{"event":"subscribe","arg":{"instType":"SPOT","channel":"ticker","instId":"ETHUSDT"}}'
FUTURES_ACK = '{"event":"subscribe","arg":{"instType":"USDT-FUTURES","channel":"ticker","instId":"BTCUSDT"}}'
# The error format of the changelog's "Websocket error response format change" (23 Aug 2023),
# spelled with v1's product type ``SP``, and in v2's names and wording.
V1_ERROR = (
    '{"event":"error","arg":{"instType":"SP","channel":"ticker","instId":"BTC-USDT"},"code":30003,'
    '"msg":"instType:SP,channel:ticker,instId:BTC-USDT Symbol not exists","op":"subscribe"}'
)
ERROR = (
    '{"event":"error","arg":{"instType":"SPOT","channel":"ticker","instId":"NOPEUSDT"},"code":30003,'
    '"msg":"instType:SPOT,channel:ticker,instId:NOPEUSDT doesn\'t exist","op":"subscribe"}'
)


def decoder(*symbols: str) -> BitgetDecoder:
    return exchanges.get("bitget").decoder(symbols)  # type: ignore[return-value]


def futures(inst_type: str, inst_id: str) -> str:
    """The docs' futures push, for another product type and instrument."""
    return FUTURES_TICKER.replace('"USDT-FUTURES"', f'"{inst_type}"').replace('"BTCUSDT"', f'"{inst_id}"')


# -- decoder ---------------------------------------------------------------------------------


def test_futures_ticker_maps_every_field() -> None:
    [ticker] = decoder(PERP).decode(FUTURES_TICKER)
    assert (ticker.exchange, ticker.symbol) == ("bitget", PERP)
    assert (ticker.last, ticker.bid, ticker.ask) == (27000.5, 27000.0, 27000.5)
    assert (ticker.bid_size, ticker.ask_size, ticker.volume_24h) == (2.71, 8.76, 368.9)
    assert (ticker.high_24h, ticker.low_24h) == (30668.5, 26999.0)
    assert (ticker.change_24h, ticker.change_pct_24h) == (0.0, -0.002)  # change24h is a fraction
    assert ticker.exchange_ts == 1695715383.021
    assert (ticker.mark_price, ticker.index_price) == (27000.0, 25702.4)
    assert (ticker.funding_rate, ticker.next_funding_ts) == (0.00001, 1695722400.0)
    assert (ticker.open_interest, ticker.sequence) == (929.502, None)


def test_spot_ticker_maps_every_field_and_no_derivative_one() -> None:
    [ticker] = decoder(SPOT).decode(SPOT_TICKER)
    assert (ticker.symbol, ticker.last, ticker.bid, ticker.ask) == (SPOT, 2200.1, 1792.0, 2200.1)
    assert (ticker.bid_size, ticker.ask_size, ticker.volume_24h) == (0.0084, 19740.8811, 0.0)
    assert (ticker.change_24h, ticker.change_pct_24h, ticker.exchange_ts) == (2200.1, 0.0, 1695702438.018)
    assert (ticker.mark_price, ticker.index_price, ticker.funding_rate) == (None, None, None)
    assert (ticker.next_funding_ts, ticker.open_interest) == (None, None)


def test_the_change_is_exact() -> None:
    frame = SPOT_TICKER.replace('"open24h":"0.00"', '"open24h":"2100.3"').replace(
        '"change24h":"0.00"', '"change24h":"0.0475"'
    )
    [ticker] = decoder(SPOT).decode(frame)
    assert (ticker.change_24h, ticker.change_pct_24h) == (99.8, 4.75)  # no float noise


def test_one_native_name_is_two_markets_told_apart_by_product_type() -> None:
    dec = decoder("BTC/USDT", PERP)
    [spot] = dec.decode(SPOT_TICKER.replace("ETHUSDT", "BTCUSDT"))
    [perp] = dec.decode(FUTURES_TICKER)
    assert (spot.symbol, spot.mark_price) == ("BTC/USDT", None)
    assert (perp.symbol, perp.mark_price) == (PERP, 27000.0)
    dec.unsubscribe([PERP])
    assert dec.decode(FUTURES_TICKER) == [] and dec.decode(SPOT_TICKER.replace("ETHUSDT", "BTCUSDT"))


def test_coin_and_usdc_futures() -> None:
    dec = decoder(INVERSE, USDC)
    [inverse] = dec.decode(futures("COIN-FUTURES", "BTCUSD"))
    [usdc] = dec.decode(futures("USDC-FUTURES", "BTCPERP"))
    assert (inverse.symbol, inverse.funding_rate, usdc.symbol, usdc.open_interest) == (
        INVERSE,
        0.00001,
        USDC,
        929.502,
    )


def test_untracked_instruments_are_dropped() -> None:
    dec = decoder(SPOT)
    assert dec.decode(FUTURES_TICKER) == [] and dec.decode(futures("SPOT", "BTCUSDT")) == []
    assert dec.junk == 0


def test_acks_errors_and_pong() -> None:
    dec = decoder(SPOT, PERP, "NOPE/USDT")
    unsubscribed = SPOT_ACK.replace('"subscribe"', '"unsubscribe"')
    for frame in (SPOT_ACK, FUTURES_ACK, ERROR, V1_ERROR, unsubscribed, "pong", b"pong"):
        assert dec.decode(frame) == []
    assert dec.events == [
        Subscribed(SPOT),
        Subscribed(PERP),
        Rejected("NOPE/USDT", "30003: instType:SPOT,channel:ticker,instId:NOPEUSDT doesn't exist"),
    ]  # the v1 error names a product type of v1: no symbol of this connection
    assert dec.junk == 0


def test_errors_naming_no_tracked_ticker_blame_nobody() -> None:
    dec = decoder(SPOT, PERP)
    dec.decode('{"event":"error","code":30016,"msg":"param error"}')
    dec.decode(ERROR.replace('"ticker"', '"candle1m"').replace("NOPEUSDT", "ETHUSDT"))
    dec.decode(ERROR.replace('"SPOT"', '"COIN-FUTURES"').replace("NOPEUSDT", "BTCUSDT"))
    assert dec.events == [] and dec.junk == 0


def test_junk_is_counted() -> None:
    dec = decoder(SPOT)
    candle = SPOT_TICKER.replace('"ticker"', '"candle1m"')
    for frame in ("ping?", '{"event":"mystery"}', candle, futures("MARGIN", "BTCUSDT"), b"\xff", "{}", "[]"):
        assert dec.decode(frame) == []
    assert dec.junk == 7


def test_symbols_map_to_their_product_type_and_batch_within_4096_bytes() -> None:
    [frame] = decoder().subscribe([SPOT, PERP, INVERSE, USDC])
    assert orjson.loads(frame) == {
        "op": "subscribe",
        "args": [
            {"instType": "SPOT", "channel": "ticker", "instId": "ETHUSDT"},
            {"instType": "USDT-FUTURES", "channel": "ticker", "instId": "BTCUSDT"},
            {"instType": "COIN-FUTURES", "channel": "ticker", "instId": "BTCUSD"},
            {"instType": "USDC-FUTURES", "channel": "ticker", "instId": "BTCPERP"},
        ],
    }
    many = [f"COIN{i}/USDT:USDT" for i in range(200)]
    frames = decoder().subscribe(many)
    assert len(frames) > 1
    sizes = [len(orjson.dumps(orjson.loads(request)["args"])) for request in frames]
    assert max(sizes) <= 4096 < sizes[0] + len(orjson.dumps(arg(many[0]))) + 1  # as full as allowed
    assert [a for f in frames for a in orjson.loads(f)["args"]] == [arg(s) for s in many]
    dec = decoder()
    dec.subscribe([PERP])
    [unsub] = dec.unsubscribe([PERP])
    assert orjson.loads(unsub) == {"op": "unsubscribe", "args": [arg(PERP)]}


def test_check_symbol_names_the_expected_forms() -> None:
    bitget = exchanges.get("bitget")
    for good in (SPOT, PERP, INVERSE, USDC, "ETH/BTC"):
        bitget.check_symbol(good)
    assert [native(s) for s in (SPOT, PERP, INVERSE, USDC)] == ["ETHUSDT", "BTCUSDT", "BTCUSD", "BTCPERP"]
    for bad in ("BTC/USDT:BTC", "BTC/USD:USD", "BTC/EUR:EUR", "BTC/USDC:USDT"):
        with pytest.raises(ValueError, match="bitget serves spot BASE/QUOTE"):
            bitget.check_symbol(bad)
    with pytest.raises(ValueError, match="serves no dated futures"):
        bitget.check_symbol("BTC/USD:BTC-261225")


# -- data sanity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bidPr", "-1"),
        ("askPr", "0"),
        ("lastPr", "NaN"),
        ("bidSz", "-5"),
        ("markPrice", "0"),
        ("holdingAmount", "-1"),
    ],
)
def test_an_insane_number_makes_the_push_junk(field: str, value: str) -> None:
    dec = decoder(PERP)
    push = orjson.loads(FUTURES_TICKER)
    push["data"][0][field] = value
    assert dec.decode(orjson.dumps(push)) == [] and dec.junk == 1


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (SPOT_TICKER, "bidPr"),
        (SPOT_TICKER, "change24h"),
        (SPOT_TICKER, "ts"),
        (FUTURES_TICKER, "markPrice"),
        (FUTURES_TICKER, "nextFundingTime"),
        (FUTURES_TICKER, "holdingAmount"),
    ],
)
def test_a_push_without_a_field_is_junk(frame: str, field: str) -> None:
    """Every push is a full object: one without a field is not a ticker with a null."""
    dec = decoder(SPOT, PERP)
    push = orjson.loads(frame)
    del push["data"][0][field]
    assert dec.decode(orjson.dumps(push)) == [] and dec.junk == 1
    assert dec.junk_reason == f"missing field '{field}'"


def test_a_negative_funding_rate_and_zero_open_interest_are_valid() -> None:
    frame = FUTURES_TICKER.replace('"0.000010"', '"-0.00375"').replace('"929.502"', '"0"')
    [ticker] = decoder(PERP).decode(frame)
    assert (ticker.funding_rate, ticker.open_interest) == (-0.00375, 0.0)


# -- the fake's rules ------------------------------------------------------------------------


async def test_the_fake_closes_a_connection_that_does_not_ping(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeBitget())
    began = trio.current_time()
    async with trio_websocket.open_websocket_url(fake.url) as ws:
        await ws.send_message(orjson.dumps({"op": "subscribe", "args": [arg(PERP)]}).decode())
        assert orjson.loads(await ws.get_message())["event"] == "subscribe"
        await ws.get_message()  # the snapshot
        await trio.sleep(100)
        await ws.send_message("ping")
        assert await ws.get_message() == "pong"
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await ws.get_message()
    assert trio.current_time() - began >= 100 + fake.ping_timeout


async def test_pongs_keep_a_quiet_connection_open_past_the_ping_rule_and_the_watchdog(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    """Nothing but pongs for five of Bitget's 2-minute ping limits, with the default silence
    timeout: the pings keep the server's side open, their pongs the watchdog's."""
    feed = {"silence_timeout": FeedSettings().silence_timeout}
    fake, daemon = await start(nursery, prefix, exchanges.get("bitget"), [SPOT, PERP], feed=feed)
    [conn] = fake.connections
    await trio.sleep(5 * fake.ping_timeout)  # type: ignore[attr-defined]
    assert fake.connections == [conn] and fake.connection_count == 1
    assert fake.keepalives >= 5 * 120 / 20 - 1
    assert daemon.health().exchanges["bitget"].reconnects == 0 and fake.violations == []
