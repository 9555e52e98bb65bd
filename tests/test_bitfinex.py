"""Bitfinex v2: chanId routing, perpetuals' ticker and derivatives status merged, symbol forms,
control events; the 25-channel limit against the fake."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import make_config, start_daemon, start_fake
from tickerd import exchanges
from tickerd.exchanges.base import ReconnectRequested, Rejected, Reply, Subscribed
from tickerd.exchanges.bitfinex import BitfinexDecoder, native, unified
from tickerd.testing.bitfinex import FakeBitfinex

# Captured frames: an ack and a ticker with SEQ_ALL's trailing sequence number (cryptofeed
# sample data), a perpetual's ack and a ticker with an 11th (null) field (a 2026 probe).
ACK = '{"event":"subscribed","channel":"ticker","chanId":232949,"symbol":"tBFTUSD","pair":"BFTUSD"}'
TICKER = (
    "[232949,[0.068965,60157.36709703,0.0774,48578.50804052,0.001969,0.0262,0.076989,101459.39453471,"
    "0.0828,0.068961],1]"
)
PERP_ACK = (
    '{"event":"subscribed","channel":"ticker","chanId":761045,"symbol":"tBTCF0:USTF0","pair":"BTCF0:USTF0"}'
)
PERP_TICKER = (
    "[761045,[86697,14.34954787,86723,14.75896594,1060,0.01237494,86717,544.3267938,86898,85156,null]]"
)
INFO = (
    '{"event":"info","version":2,"serverId":"fb5877a3-ded1-4754-b9bf-fda9cc751d37","platform":{"status":1}}'
)
# The docs' "Status" page (ws-public-status): the ack and a derivatives status of tBTCF0:USTF0.
STATUS_ACK = '{"event":"subscribed","channel":"status","chanId":335856,"key":"deriv:tBTCF0:USTF0"}'
STATUS = (
    "[335856,[1596124822000,null,0.896,0.771995,null,1396531.67460709,null,1596153600000,0.0001056,6,"
    "null,-0.01381344,null,null,0.7664,null,null,246502.09001551,null,null,null,null,0.3]]"
)
# A status snapshot as bitfinex-api-go's tests decode it (2021, nested one row deep).
STATUS_SNAPSHOT = (
    "[335856,[[1609921474000,null,34568.786626655,34575.5,null,1856521.42387705,null,1609948800000,"
    "-0.00004348,481,null,0,null,null,34593.64333333333,null,null,11153.74635347,null,null,null,null,null]]]"
)


def decoder(*symbols: str) -> BitfinexDecoder:
    dec = exchanges.get("bitfinex").decoder(symbols)
    assert isinstance(dec, BitfinexDecoder)
    return dec


# -- decoder -------------------------------------------------------------------------------


def test_frames_are_routed_by_the_channel_id_of_the_ack() -> None:
    dec = decoder("BFT/USD")
    assert dec.decode(TICKER) == []  # no ack yet: the id means nothing
    assert dec.decode(ACK) == [] and dec.events == [Subscribed("BFT/USD")]
    [ticker] = dec.decode(TICKER)
    assert (ticker.exchange, ticker.symbol) == ("bitfinex", "BFT/USD")
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (
        0.068965,
        60157.36709703,
        0.0774,
        48578.50804052,
    )
    assert (ticker.last, ticker.volume_24h, ticker.high_24h, ticker.low_24h) == (
        0.076989,
        101459.39453471,
        0.0828,
        0.068961,
    )
    assert ticker.change_24h == 0.001969
    assert ticker.change_pct_24h == pytest.approx(2.62)  # the relative change is a fraction
    assert ticker.exchange_ts is None and ticker.received_ts > 0


def test_a_perpetual_with_an_appended_field() -> None:
    dec = decoder("BTC/USDT:USDT")
    dec.decode(PERP_ACK)
    [ticker] = dec.decode(PERP_TICKER)
    assert ticker.symbol == "BTC/USDT:USDT"
    assert (ticker.bid, ticker.ask, ticker.last) == (86697.0, 86723.0, 86717.0)
    assert ticker.change_pct_24h == pytest.approx(1.237494)


def perpetual() -> BitfinexDecoder:
    """A decoder of ``BTC/USDT:USDT`` whose ticker and status channels are subscribed."""
    dec = decoder("BTC/USDT:USDT")
    dec.decode(PERP_ACK)
    dec.decode(STATUS_ACK)
    return dec


def test_a_perpetuals_status_and_ticker_merge_into_one_record() -> None:
    """Mark price, spot-pair mid (the index), funding of the current 8 h period, next funding
    time (ms → s) and open interest come from the status; the ticker keeps them."""
    dec = perpetual()
    assert dec.events == [Subscribed("BTC/USDT:USDT")]  # the ticker's ack; the status adds none
    [first] = dec.decode(PERP_TICKER)
    assert first.last == 86717.0 and first.mark_price is None  # no status yet

    [status] = dec.decode(STATUS)
    assert (status.bid, status.ask, status.last, status.volume_24h) == (
        86697.0,
        86723.0,
        86717.0,
        544.3267938,
    )
    assert (status.mark_price, status.index_price) == (0.7664, 0.771995)
    assert status.funding_rate == -0.01381344  # negative funding is valid
    assert status.next_funding_ts == 1596153600.0
    assert status.open_interest == 246502.09001551
    assert (status.exchange_ts, status.sequence) == (None, None)  # TIME_MS is the status's time

    [ticker] = dec.decode(PERP_TICKER.replace("86717,544", "86720,545"))
    assert (ticker.last, ticker.mark_price, ticker.open_interest) == (86720.0, 0.7664, 246502.09001551)
    assert dec.junk == 0


def test_a_status_before_any_ticker_and_a_nested_snapshot() -> None:
    dec = perpetual()
    [ticker] = dec.decode(STATUS_SNAPSHOT)
    assert (ticker.last, ticker.bid) == (None, None)
    assert (ticker.mark_price, ticker.index_price, ticker.funding_rate) == (34593.64333333333, 34575.5, 0.0)
    assert (ticker.next_funding_ts, ticker.open_interest) == (1609948800.0, 11153.74635347)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (STATUS.replace("0.7664", "-0.7664"), "BTC/USDT:USDT: mark_price -0.7664 is not a valid price"),
        (STATUS.replace("246502.09001551", "-1"), "BTC/USDT:USDT: open_interest -1.0 is not a valid amount"),
        (STATUS.replace("246502.09001551", "null"), "TypeError: float() argument must be"),
        ("[335856,[1596124822000,null,0.896,0.771995,null,1396531.67460709]]", "IndexError"),
    ],
)
def test_an_insane_or_incomplete_status_is_junk_and_the_fields_stay(status: str, reason: str) -> None:
    """Mark price, funding, next funding time and open interest are always sent."""
    dec = perpetual()
    dec.decode(STATUS)
    assert dec.decode(status) == [] and dec.junk == 1
    assert dec.junk_reason.startswith(reason)
    [ticker] = dec.decode(PERP_TICKER)
    assert (ticker.mark_price, ticker.open_interest) == (0.7664, 246502.09001551)


def test_a_perpetual_without_a_spot_price_has_no_index() -> None:
    dec = perpetual()
    [ticker] = dec.decode(STATUS.replace("0.896,0.771995", "0.896,null"))
    assert (ticker.index_price, ticker.mark_price) == (None, 0.7664)


def test_heartbeats_and_control_events_give_nothing_and_are_not_junk() -> None:
    dec = decoder("BFT/USD")
    dec.decode(ACK)
    for frame in (
        '[232949,"hb"]',
        '[204928,"hb",127]',
        INFO,
        '{"event":"pong","ts":1511545528111,"cid":1}',
        '{"event":"conf","status":"OK","flags":196608}',
        '{"event":"unsubscribed","status":"OK","chanId":232949}',
        '{"event":"info","code":20060,"msg":"Entering in Maintenance mode"}',
    ):
        assert dec.decode(frame) == []
    assert dec.junk == 0
    assert dec.events == [Subscribed("BFT/USD")]


@pytest.mark.parametrize("code", [20051, 20061])
def test_restart_and_end_of_maintenance_ask_for_a_reconnect(code: int) -> None:
    dec = decoder("BTC/USD")
    assert dec.decode(orjson.dumps({"event": "info", "code": code, "msg": "…"})) == []
    [event] = dec.events
    assert isinstance(event, ReconnectRequested) and str(code) in event.reason


def test_an_error_is_reported_for_the_symbol_it_echoes() -> None:
    dec = decoder("BTC/USD", "NOPE/USD", "XTZ/USDT:USDT")
    refused = (
        '{"channel":"ticker","symbol":"tNOPE:USD","event":"error","msg":"symbol: invalid","code":10300,'
        '"pair":"NOPE:USD"}'
    )
    limit = (
        '{"channel":"ticker","symbol":"tXTZF0:USTF0","event":"error","msg":"subscribe: limit","code":10305,'
        '"pair":"XTZF0:USTF0"}'
    )
    assert dec.decode(refused) == [] and dec.decode(limit) == []
    assert dec.decode('{"event":"error","msg":"unsubscribe: invalid","code":10400}') == []
    assert dec.events == [
        Rejected("NOPE/USD", "10300: symbol: invalid"),
        Rejected("XTZ/USDT:USDT", "10305: subscribe: limit"),
    ]
    assert dec.junk == 0


def test_a_perpetual_refused_on_both_channels_is_rejected_once() -> None:
    dec = decoder("NOPE/USDT:USDT")
    ticker = (
        '{"channel":"ticker","symbol":"tNOPEF0:USTF0","event":"error","msg":"symbol: invalid","code":10300,'
        '"pair":"NOPEF0:USTF0"}'
    )
    status = (
        '{"channel":"status","key":"deriv:tNOPEF0:USTF0","event":"error","msg":"symbol: invalid",'
        '"code":10300}'
    )
    assert dec.decode(ticker) == [] and dec.decode(status) == []
    assert dec.events == [Rejected("NOPE/USDT:USDT", "10300: symbol: invalid")]


def test_a_duplicate_subscription_confirms_the_existing_channel() -> None:
    dec = decoder("BFT/USD")
    dup = (
        '{"channel":"ticker","symbol":"tBFTUSD","event":"error","msg":"subscribe: dup","code":10301,'
        '"chanId":232949,"pair":"BFTUSD"}'
    )
    assert dec.decode(dup) == [] and dec.events == [Subscribed("BFT/USD")]
    assert [t.symbol for t in dec.decode(TICKER)] == ["BFT/USD"]


def test_subscribe_one_channel_per_symbol_and_unsubscribe_by_channel_id() -> None:
    """Spot pairs take a ``ticker`` channel, perpetuals a ``status`` channel too."""
    dec = decoder()
    frames = [orjson.loads(f) for f in dec.subscribe(["BTC/USD", "DOGE/USD", "ETH/USDT:USDT"])]
    assert frames == [
        {"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"},
        {"event": "subscribe", "channel": "ticker", "symbol": "tDOGE:USD"},
        {"event": "subscribe", "channel": "ticker", "symbol": "tETHF0:USTF0"},
        {"event": "subscribe", "channel": "status", "key": "deriv:tETHF0:USTF0"},
    ]
    dec.decode('{"event":"subscribed","channel":"ticker","chanId":17,"symbol":"tBTCUSD","pair":"BTCUSD"}')
    assert [orjson.loads(f) for f in dec.unsubscribe(["BTC/USD"])] == [{"event": "unsubscribe", "chanId": 17}]
    assert dec.decode("[17,[1,1,2,1,0,0,1.5,1,2,1]]") == []  # in flight after the unsubscribe: dropped

    dec = perpetual()
    unsubscribes = [orjson.loads(f) for f in dec.unsubscribe(["BTC/USDT:USDT"])]
    assert unsubscribes == [
        {"event": "unsubscribe", "chanId": 761045},
        {"event": "unsubscribe", "chanId": 335856},
    ]
    assert dec.decode(STATUS) == [] and dec.junk == 0  # in flight: dropped


def test_a_symbol_removed_before_its_ack_is_unsubscribed_when_the_ack_comes() -> None:
    dec = decoder()
    dec.subscribe(["BTC/USD"])
    assert dec.unsubscribe(["BTC/USD"]) == []  # no channel id known yet
    dec.decode('{"event":"subscribed","channel":"ticker","chanId":17,"symbol":"tBTCUSD","pair":"BTCUSD"}')
    assert dec.events == [Reply('{"event":"unsubscribe","chanId":17}')]


def test_junk_is_counted() -> None:
    dec = decoder("BFT/USD")
    dec.decode(ACK)
    for frame in ("not json", b"\xfe", '[232949,"what"]', "[232949,[1,2]]", '{"event":"nope"}', "{}"):
        assert dec.decode(frame) == []
    assert dec.junk == 6


@pytest.mark.parametrize(
    ("symbol", "bitfinex"),
    [
        ("BTC/USD", "tBTCUSD"),
        ("ETH/BTC", "tETHBTC"),
        ("BTC/USDT", "tBTCUST"),
        ("DOGE/USD", "tDOGE:USD"),
        ("BCH/USD", "tBCHN:USD"),
        ("TESTBTC/TESTUSD", "tTESTBTC:TESTUSD"),
        ("BTC/USDT:USDT", "tBTCF0:USTF0"),
        ("ETH/BTC:BTC", "tETHF0:BTCF0"),
        ("EUROPE50IX/USDT:USDT", "tEUROPE50IXF0:USTF0"),
    ],
)
def test_symbol_mapping_both_ways(symbol: str, bitfinex: str) -> None:
    assert native(symbol) == bitfinex
    assert unified(bitfinex) == symbol


def test_perpetuals_must_settle_in_their_quote() -> None:
    adapter = exchanges.get("bitfinex")
    adapter.check_symbol("BTC/USDT:USDT")
    with pytest.raises(ValueError, match="BASE/QUOTE:QUOTE"):
        adapter.check_symbol("BTC/USD:BTC")


# -- against the fake, with the real daemon and real Redis ----------------------------------


async def test_symbols_are_spread_over_connections_of_25_channels(nursery: trio.Nursery, prefix: str) -> None:
    """A perpetual takes two channels, a spot symbol one: 25 spot symbols fill one connection,
    30 perpetuals need three of at most 12."""
    fake = FakeBitfinex(max_channels=25)
    await start_fake(nursery, fake)
    symbols = [f"S{i:02d}/USD" for i in range(25)] + [f"C{i:02d}/USDT:USDT" for i in range(30)]
    await start_daemon(nursery, make_config(prefix, {"bitfinex": fake}, {"bitfinex": symbols}))
    with trio.fail_after(5):
        await fake.wait_until(
            lambda: (
                sum(len(fake.channels(c)) for c in fake.connections) == 85
                and all(fake.is_subscribed(s) for s in symbols)
            )
        )
    assert sorted(len(fake.channels(c)) for c in fake.connections) == [12, 24, 24, 25]
    assert fake.violations == []


# -- data sanity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "[-0.068965,60157.3,0.0774,48578.5,0.001969,0.0262,0.076989,101459.3,0.0828,0.068961]",  # bid
        "[0.068965,60157.3,0,48578.5,0.001969,0.0262,0.076989,101459.3,0.0828,0.068961]",  # ask
        "[0.068965,-1,0.0774,48578.5,0.001969,0.0262,0.076989,101459.3,0.0828,0.068961]",  # bid size
        "[0.068965,60157.3,null,48578.5,0.001969,0.0262,0.076989,101459.3,0.0828,0.068961]",  # no ask
        "[0.068965,60157.3,0.0774,48578.5,0.001969,0.0262,0.076989,101459.3,0.0828]",  # one short
    ],
)
def test_an_insane_or_incomplete_payload_is_junk(payload: str) -> None:
    """Every payload is a full snapshot of ten numbers."""
    dec = decoder("BFT/USD")
    dec.decode(ACK)
    assert dec.decode(f"[232949,{payload}]") == [] and dec.junk == 1
    assert len(dec.decode(TICKER)) == 1  # the channel goes on


def test_a_negative_daily_change_is_no_junk() -> None:
    dec = decoder("BFT/USD")
    dec.decode(ACK)
    [ticker] = dec.decode(TICKER.replace("0.001969,0.0262", "-0.001969,-0.0262"))
    assert (ticker.change_24h, ticker.change_pct_24h) == (-0.001969, -2.62)
