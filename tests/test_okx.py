"""OKX v5: decoder on real frame shapes, symbol forms, request batching."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import ReconnectRequested, Rejected, Subscribed
from tickerd.exchanges.okx import OKXDecoder

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
