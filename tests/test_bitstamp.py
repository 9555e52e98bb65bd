"""Bitstamp: order book + trades merged into tickers; control frames, errors, reconnect requests."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import ReconnectRequested, Rejected, Subscribed
from tickerd.exchanges.bitstamp import BitstampDecoder, native

# Real captured trade (cryptofeed sample data); the book frame has the captured diff_order_book shape.
TRADE = (
    '{"data":{"id":216000477,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000",'
    '"price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596000",'
    '"buy_order_id":1443875737346049,"sell_order_id":1443875731320832},"channel":"live_trades_ethusd",'
    '"event":"trade"}'
)
BOOK = (
    '{"data":{"timestamp":"1641343691","microtimestamp":"1641343691244908",'
    '"bids":[["3805.11","0.99302588"],["3805.01","12.00000000"]],'
    '"asks":[["3806.01","1.20000000"],["3806.50","3.50000000"]]},"channel":"order_book_ethusd","event":"data"}'
)
ERROR = '{"event":"bts:error","channel":"","data":{"code":null,"message":"Invalid channel provided."}}'


def succeeded(channel: str) -> str:
    return orjson.dumps({"event": "bts:subscription_succeeded", "channel": channel, "data": {}}).decode()


def decoder(*symbols: str) -> BitstampDecoder:
    dec = exchanges.get("bitstamp").decoder(symbols)
    assert isinstance(dec, BitstampDecoder)
    return dec


# -- decoder -------------------------------------------------------------------------------


def test_book_and_trades_merge_into_complete_tickers() -> None:
    dec = decoder("ETH/USD")
    [from_book] = dec.decode(BOOK)
    assert (from_book.exchange, from_book.symbol) == ("bitstamp", "ETH/USD")
    assert (from_book.bid, from_book.bid_size, from_book.ask, from_book.ask_size) == (
        3805.11,
        0.99302588,
        3806.01,
        1.2,
    )
    assert from_book.last is None  # no trade seen yet
    assert from_book.exchange_ts == pytest.approx(1641343691.244908)

    [from_trade] = dec.decode(TRADE)
    assert from_trade.last == 3805.44
    assert (from_trade.bid, from_trade.ask) == (3805.11, 3806.01)  # the book is kept
    assert from_trade.exchange_ts == pytest.approx(1641343699.596)

    [later_book] = dec.decode(BOOK.replace("3805.11", "3805.20"))
    assert (later_book.bid, later_book.last) == (3805.2, 3805.44)  # the last price is kept
    assert later_book.volume_24h is None and later_book.high_24h is None  # REST only


def test_an_empty_book_side_has_no_price() -> None:
    [ticker] = decoder("ETH/USD").decode(
        BOOK.replace('[["3806.01","1.20000000"],["3806.50","3.50000000"]]', "[]")
    )
    assert (ticker.bid, ticker.ask, ticker.ask_size) == (3805.11, None, None)


def test_untracked_pairs_are_dropped() -> None:
    dec = decoder("BTC/USD")
    assert dec.decode(BOOK) == [] and dec.decode(TRADE) == []
    assert dec.junk == 0


def test_control_frames_give_nothing_and_are_not_junk() -> None:
    dec = decoder("ETH/USD")
    for frame in (
        succeeded("order_book_ethusd"),
        '{"event":"bts:unsubscription_succeeded","channel":"live_trades_ethusd","data":{}}',
        '{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}',
    ):
        assert dec.decode(frame) == []
    assert dec.junk == 0


def test_junk_is_counted() -> None:
    dec = decoder("ETH/USD")
    for frame in ("not json", b"\xff", '{"event":"data","channel":"order_book_ethusd","data":{}}', '{"x":1}'):
        assert dec.decode(frame) == []
    assert dec.junk == 4


def test_subscribe_frames_are_one_channel_each() -> None:
    dec = decoder()
    frames = [orjson.loads(f) for f in dec.subscribe(["BTC/USD", "ETH/EUR"])]
    assert frames == [
        {"event": "bts:subscribe", "data": {"channel": "order_book_btcusd"}},
        {"event": "bts:subscribe", "data": {"channel": "live_trades_btcusd"}},
        {"event": "bts:subscribe", "data": {"channel": "order_book_etheur"}},
        {"event": "bts:subscribe", "data": {"channel": "live_trades_etheur"}},
    ]
    assert [orjson.loads(f)["event"] for f in dec.unsubscribe(["BTC/USD"])] == ["bts:unsubscribe"] * 2


def test_a_symbol_is_confirmed_once_both_channels_are() -> None:
    dec = decoder()
    dec.subscribe(["BTC/USD"])
    dec.decode(succeeded("order_book_btcusd"))
    assert dec.events == []
    dec.decode(succeeded("live_trades_btcusd"))
    assert dec.events == [Subscribed("BTC/USD")]


def test_an_error_without_channel_is_blamed_on_the_oldest_unanswered_request() -> None:
    dec = decoder()
    dec.subscribe(["BTC/USD", "FOO/USD", "ETH/USD"])
    for frame in (
        succeeded("order_book_btcusd"),
        succeeded("live_trades_btcusd"),
        ERROR,  # order_book_foousd
        ERROR,  # live_trades_foousd: the same symbol, reported once
        succeeded("order_book_ethusd"),
        succeeded("live_trades_ethusd"),
    ):
        assert dec.decode(frame) == []
    assert dec.events == [
        Subscribed("BTC/USD"),
        Rejected("FOO/USD", "order_book_foousd: Invalid channel provided."),
        Subscribed("ETH/USD"),
    ]
    assert dec.decode(ERROR) == [] and dec.events[-1] == Subscribed("ETH/USD")  # nothing left to blame
    assert dec.junk == 0


@pytest.mark.parametrize(
    "frame",
    [
        '{"event":"bts:request_reconnect","channel":"","data":""}',
        '{"event":"bts:request_reconnect","channel":"","data":{}}',
    ],
)
def test_a_reconnect_request_becomes_an_event(frame: str) -> None:
    dec = decoder("BTC/USD")
    assert dec.decode(frame) == []
    assert dec.events == [ReconnectRequested("bts:request_reconnect")]


def test_symbol_forms() -> None:
    assert native("BTC/USD") == "btcusd" and native("USDC/USD") == "usdcusd"
    adapter = exchanges.get("bitstamp")
    adapter.check_symbol("ETH/EUR")
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        adapter.check_symbol("BTC/USD:USD")


# -- data sanity -----------------------------------------------------------------------------


def test_an_insane_book_is_junk_and_the_book_stays() -> None:
    dec = decoder("ETH/USD")
    dec.decode(BOOK)
    assert dec.decode(BOOK.replace('"3805.11"', '"-1"')) == []
    assert dec.decode(BOOK.replace('"1.20000000"', '"NaN"')) == []
    assert dec.junk == 2 and dec.junk_reason == "ETH/USD: ask_size nan is not a valid amount"
    [ticker] = dec.decode(TRADE)
    assert (ticker.bid, ticker.ask_size, ticker.last) == (3805.11, 1.2, 3805.44)


def test_an_insane_trade_is_junk_and_the_last_price_stays() -> None:
    dec = decoder("ETH/USD")
    dec.decode(TRADE)
    assert dec.decode(TRADE.replace('"price_str":"3805.44"', '"price_str":"0"').replace("3805.44", "0")) == []
    assert dec.junk == 1
    [ticker] = dec.decode(BOOK)
    assert ticker.last == 3805.44


def test_a_book_or_trade_without_its_fields_is_junk() -> None:
    dec = decoder("ETH/USD")
    dec.decode(BOOK)
    assert dec.decode(BOOK.replace(',"asks":[["3806.01","1.20000000"],["3806.50","3.50000000"]]', "")) == []
    assert dec.decode(TRADE.replace('"price":3805.44,', "").replace('"price_str":"3805.44",', "")) == []
    assert dec.junk == 2
    [ticker] = dec.decode(TRADE)
    assert ticker.ask == 3806.01
