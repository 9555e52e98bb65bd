"""OKX v5: decoder on real frame shapes, the derivative channels merged, symbol forms, request
batching."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import Updates, until
from tests.test_exchange_contract import QUIET, real_time, start
from tickerd import exchanges
from tickerd.exchanges.base import ReconnectRequested, Rejected, Subscribed
from tickerd.exchanges.okx import OKXDecoder, channels, native

SPOT = "BTC/USDT"
SWAP = "BTC/USDT:USDT"
INVERSE = "BTC/USD:BTC"
FUTURE = "BTC/USDT:USDT-261225"

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
# A dated future's push, real traffic (cryptofeed's sample data, per the protocol reference).
FUTURE_TICKER = (
    '{"arg":{"channel":"tickers","instId":"BTC-USD-220527"},"data":[{"instType":"FUTURES",'
    '"instId":"BTC-USD-220527","last":"30218.8","lastSz":"1","askPx":"30220.1","askSz":"3","bidPx":"30210.4",'
    '"bidSz":"4","open24h":"29571.4","high24h":"31003.3","low24h":"27930.8","sodUtc0":"28935.3",'
    '"sodUtc8":"30320.5","volCcy24h":"2620.289","vol24h":"779573","ts":"1652459223003"}]}'
)
# The derivative channels' pushes: the examples of OKX's docs (Public data, WebSocket).
MARK = (
    '{"arg":{"channel":"mark-price","instId":"LTC-USD-190628"},"data":[{"instType":"FUTURES",'
    '"instId":"LTC-USD-190628","markPx":"0.1","ts":"1597026383085"}]}'
)
FUNDING = (
    '{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"formulaType":"noRate",'
    '"fundingRate":"0.0001875391284828","fundingTime":"1700726400000","impactValue":"",'
    '"instId":"BTC-USD-SWAP","instType":"SWAP","interestRate":"","method":"current_period",'
    '"maxFundingRate":"0.00375","minFundingRate":"-0.00375","nextFundingRate":"",'
    '"nextFundingTime":"1700755200000","premium":"0.0001233824646391","settFundingRate":"0.0001699799259033",'
    '"settState":"settled","ts":"1700724675402"}]}'
)
OPEN_INTEREST = (
    '{"arg":{"channel":"open-interest","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP",'
    '"instType":"SWAP","oi":"2216113.01000000309","oiCcy":"22161.1301000000309",'
    '"oiUsd":"1939251795.54769270396321","ts":"1743041250440"}]}'
)
INDEX = (
    '{"arg":{"channel":"index-tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","idxPx":"0.1",'
    '"high24h":"0.5","low24h":"0.1","open24h":"0.1","sodUtc0":"0.1","sodUtc8":"0.1","ts":"1597026383085"}]}'
)
MARK_ACK = (
    '{"id":"1512","event":"subscribe","arg":{"channel":"mark-price","instId":"LTC-USD-190628"},'
    '"connId":"a4d3ae55"}'
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
    symbols = [SPOT, SWAP, INVERSE, "ETH/USDC:USDC", FUTURE, "BTC/USD:BTC-261225"]
    [frame] = decoder().subscribe(symbols)
    request = orjson.loads(frame)
    assert request["op"] == "subscribe"
    assert [(a["channel"], a["instId"]) for a in request["args"]] == [
        ("tickers", "BTC-USDT"),  # spot: tickers only
        ("tickers", "BTC-USDT-SWAP"),
        ("mark-price", "BTC-USDT-SWAP"),
        ("funding-rate", "BTC-USDT-SWAP"),
        ("open-interest", "BTC-USDT-SWAP"),
        ("index-tickers", "BTC-USDT"),
        ("tickers", "BTC-USD-SWAP"),
        ("mark-price", "BTC-USD-SWAP"),
        ("funding-rate", "BTC-USD-SWAP"),
        ("open-interest", "BTC-USD-SWAP"),
        ("index-tickers", "BTC-USD"),
        ("tickers", "ETH-USDC-SWAP"),
        ("mark-price", "ETH-USDC-SWAP"),
        ("funding-rate", "ETH-USDC-SWAP"),
        ("open-interest", "ETH-USDC-SWAP"),
        ("index-tickers", "ETH-USDC"),
        ("tickers", "BTC-USDT-261225"),  # a future: no funding; its index is subscribed already
        ("mark-price", "BTC-USDT-261225"),
        ("open-interest", "BTC-USDT-261225"),
        ("tickers", "BTC-USD-261225"),
        ("mark-price", "BTC-USD-261225"),
        ("open-interest", "BTC-USD-261225"),
    ]
    many = decoder().subscribe([f"C{i}/USDT" for i in range(250)])
    assert [len(orjson.loads(f)["args"]) for f in many] == [100, 100, 50]
    swaps = decoder().subscribe([f"C{i}/USDT:USDT" for i in range(45)])  # five args each
    assert [len(orjson.loads(f)["args"]) for f in swaps] == [100, 100, 25]
    dec = decoder()
    dec.subscribe([SWAP])
    [unsub] = dec.unsubscribe([SWAP])
    assert orjson.loads(unsub) == {
        "op": "unsubscribe",
        "args": [{"channel": c, "instId": "BTC-USDT-SWAP"} for c in channels(SWAP)]
        + [{"channel": "index-tickers", "instId": "BTC-USDT"}],
    }


def test_an_index_is_unsubscribed_with_the_last_derivative_on_it() -> None:
    dec = decoder()
    dec.subscribe([SWAP, FUTURE])
    [first] = dec.unsubscribe([SWAP])
    assert "index-tickers" not in {a["channel"] for a in orjson.loads(first)["args"]}
    [last] = dec.unsubscribe([FUTURE])
    assert orjson.loads(last)["args"][-1] == {"channel": "index-tickers", "instId": "BTC-USDT"}
    [again] = dec.subscribe([FUTURE])  # and subscribed again with the next one
    assert orjson.loads(again)["args"][-1] == {"channel": "index-tickers", "instId": "BTC-USDT"}


def test_check_symbol_names_the_expected_forms() -> None:
    okx = exchanges.get("okx")
    for good in (SPOT, SWAP, INVERSE, "ETH/USDC:USDC", FUTURE, "BTC/USD:BTC-261225"):
        okx.check_symbol(good)
    assert [native(s) for s in (FUTURE, "BTC/USD:BTC-261225")] == ["BTC-USDT-261225", "BTC-USD-261225"]
    for bad in ("BTC/USDT:BTC", "BTC/USD:USD", "BTC-USDT", "BTC/USD:USD-261225"):
        with pytest.raises(ValueError, match="BASE/"):
            okx.check_symbol(bad)


# -- derivative channels ---------------------------------------------------------------------


def test_derivative_pushes_merge_into_the_record_of_the_price() -> None:
    dec = decoder(SWAP)
    [ticker] = dec.decode(SWAP_TICKER)
    assert (ticker.mark_price, ticker.open_interest, ticker.sequence) == (None, None, None)
    [ticker] = dec.decode(OPEN_INTEREST)
    assert ticker.open_interest == 22161.1301000000309  # oiCcy: BTC, not contracts
    assert (ticker.last, ticker.bid, ticker.ask, ticker.volume_24h) == (26008.0, 26008.0, 26008.1, 214272.91)
    assert ticker.exchange_ts == 1743041250.44  # the push's own time
    [ticker] = dec.decode(INDEX)
    assert (ticker.index_price, ticker.open_interest) == (0.1, 22161.1301000000309)
    [ticker] = dec.decode(SWAP_TICKER)  # a new tickers push keeps the derivative fields
    assert (ticker.index_price, ticker.open_interest, ticker.exchange_ts) == (
        0.1,
        22161.1301000000309,
        1693560446.879,
    )


def test_funding_is_the_current_rate_and_its_settlement_time() -> None:
    """``fundingTime`` is when the current rate is paid (the next payment); ``nextFundingTime``
    is the period after it."""
    dec = decoder(INVERSE)
    assert dec.decode(FUNDING) == []  # no tickers push yet: kept, not sent
    [ticker] = dec.decode(SWAP_TICKER.replace("BTC-USDT-SWAP", "BTC-USD-SWAP"))
    assert (ticker.symbol, ticker.funding_rate) == (INVERSE, 0.0001875391284828)
    assert ticker.next_funding_ts == 1700726400.0
    assert dec.junk == 0


def test_a_dated_futures_mark_and_ticker() -> None:
    dec = decoder("LTC/USD:LTC-190628", "BTC/USD:BTC-220527")
    assert dec.decode(MARK_ACK) == [] and dec.events == []  # only the tickers ack confirms
    assert dec.decode(MARK) == []
    [ticker] = dec.decode(FUTURE_TICKER)
    assert (ticker.symbol, ticker.last, ticker.bid_size) == ("BTC/USD:BTC-220527", 30218.8, 4.0)  # contracts
    assert ticker.volume_24h == 2620.289  # volCcy24h: BTC
    [mark] = dec.decode(MARK.replace("LTC-USD-190628", "BTC-USD-220527"))
    assert (mark.mark_price, mark.last, mark.funding_rate) == (0.1, 30218.8, None)


def test_an_index_push_updates_every_derivative_on_it_and_no_spot() -> None:
    dec = decoder(SPOT, SWAP, FUTURE)
    dec.decode(SWAP_TICKER)
    dec.decode(SWAP_TICKER.replace("BTC-USDT-SWAP", "BTC-USDT-261225"))
    tickers = dec.decode(INDEX)
    assert sorted((t.symbol, t.index_price) for t in tickers) == [(SWAP, 0.1), (FUTURE, 0.1)]


def test_only_the_tickers_ack_and_refusal_speak_for_a_symbol() -> None:
    """The index ``BTC-USDT`` is spelled as the spot pair is: its ack and error are not the
    spot symbol's, and a derivative channel's error does not reject the derivative."""
    dec = decoder(SPOT, SWAP)
    dec.decode(
        '{"event":"subscribe","arg":{"channel":"index-tickers","instId":"BTC-USDT"},"connId":"a4d3ae55"}'
    )
    dec.decode(
        '{"event":"error","code":"60018","msg":"channel:index-tickers,instId:BTC-USDT doesn\'t exist"}'
    )
    dec.decode(
        '{"event":"error","code":"60018","msg":"channel:funding-rate,instId:BTC-USDT-SWAP doesn\'t exist"}'
    )
    assert dec.events == []
    dec.decode('{"event":"error","code":"60018","msg":"channel:tickers,instId:BTC-USDT-SWAP doesn\'t exist"}')
    dec.decode('{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a4d3ae55"}')
    assert dec.events == [
        Rejected(SWAP, "60018: channel:tickers,instId:BTC-USDT-SWAP doesn't exist"),
        Subscribed(SPOT),
    ]


# -- data sanity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("bidPx", "-1"), ("askPx", "0"), ("last", "NaN"), ("bidSz", "-5")]
)
def test_an_insane_number_makes_the_push_junk(field: str, value: str) -> None:
    dec = decoder(SWAP)
    item = orjson.loads(SWAP_TICKER)
    item["data"][0][field] = value
    assert dec.decode(orjson.dumps(item)) == [] and dec.junk == 1


@pytest.mark.parametrize("field", ["bidPx", "askSz", "last", "open24h", "volCcy24h", "ts"])
def test_a_push_without_a_field_is_junk(field: str) -> None:
    """Every push is a full object: one without ``bidPx`` must not null the stored bid."""
    dec = decoder(SWAP)
    item = orjson.loads(SWAP_TICKER)
    del item["data"][0][field]
    assert dec.decode(orjson.dumps(item)) == [] and dec.junk == 1
    assert dec.junk_reason == f"missing field '{field}'"


@pytest.mark.parametrize(
    ("frame", "field", "value"),
    [
        (MARK, "markPx", "-1"),
        (OPEN_INTEREST, "oiCcy", "-5"),
        (INDEX, "idxPx", "0"),
        (FUNDING, "fundingRate", "NaN"),
    ],
)
def test_an_insane_derivative_push_is_junk_and_the_merged_view_stays(
    frame: str, field: str, value: str
) -> None:
    symbol = {MARK: "LTC/USD:LTC-190628", OPEN_INTEREST: SWAP, INDEX: SWAP, FUNDING: INVERSE}[frame]
    dec = decoder(symbol)
    item = orjson.loads(frame)
    item["data"][0][field] = value
    assert dec.decode(orjson.dumps(item)) == [] and dec.junk == 1
    [ticker] = dec.decode(SWAP_TICKER.replace("BTC-USDT-SWAP", native(symbol)))
    assert (ticker.mark_price, ticker.index_price, ticker.funding_rate, ticker.open_interest) == (None,) * 4


def test_a_negative_funding_rate_and_zero_open_interest_are_valid() -> None:
    dec = decoder(INVERSE)
    dec.decode(SWAP_TICKER.replace("BTC-USDT-SWAP", "BTC-USD-SWAP"))
    [ticker] = dec.decode(FUNDING.replace('"fundingRate":"0.0001875391284828"', '"fundingRate":"-0.00375"'))
    assert ticker.funding_rate == -0.00375
    [ticker] = dec.decode(
        OPEN_INTEREST.replace("BTC-USDT-SWAP", "BTC-USD-SWAP").replace("22161.1301000000309", "0")
    )
    assert (ticker.open_interest, ticker.funding_rate) == (0.0, -0.00375)


@pytest.mark.parametrize(("frame", "field"), [(MARK, "markPx"), (FUNDING, "fundingTime"), (INDEX, "ts")])
def test_a_derivative_push_without_a_field_is_junk(frame: str, field: str) -> None:
    dec = decoder("LTC/USD:LTC-190628", INVERSE, SWAP)
    item = orjson.loads(frame)
    del item["data"][0][field]
    assert dec.decode(orjson.dumps(item)) == [] and dec.junk == 1
    assert dec.junk_reason == f"missing field '{field}'"


# -- through the daemon ----------------------------------------------------------------------


async def test_derivatives_on_one_index_share_its_subscription_through_live_changes(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    # The spot symbol keeps the connection up once both derivatives have left.
    fake, daemon = await start(nursery, prefix, exchanges.get("okx"), [SPOT, SWAP, FUTURE])

    def index_args(op: str) -> list[dict[str, Any]]:
        sent = [m for m in fake.received if isinstance(m, dict) and m.get("op") == op]
        return [a for m in sent for a in m["args"] if a["channel"] == "index-tickers"]

    assert index_args("subscribe") == [{"channel": "index-tickers", "instId": "BTC-USDT"}]
    with real_time(clock):
        await fake.push(FUTURE, index=123.5)
        await updates.wait_for(lambda r: r["symbol"] == SWAP and r["index_price"] == 123.5)
    daemon.remove("okx", SWAP)
    await until(fake, lambda: not fake.is_subscribed(SWAP), within=QUIET)
    assert index_args("unsubscribe") == []  # the future still reads it
    daemon.remove("okx", FUTURE)
    await until(fake, lambda: index_args("unsubscribe"), within=QUIET)
    assert index_args("unsubscribe") == [{"channel": "index-tickers", "instId": "BTC-USDT"}]
    assert not fake.is_subscribed(FUTURE) and fake.violations == []
