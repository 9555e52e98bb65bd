"""Binance spot decoder on real frame shapes: bookTicker merged with 24hrTicker."""

from __future__ import annotations

import orjson

from tickerd import exchanges
from tickerd.exchanges.base import ReconnectRequested, Rejected, Reply, Subscribed
from tickerd.exchanges.binance import BinanceDecoder

BOOK = (
    '{"u":499869768,"s":"BTCUSDT","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}'
)
STATS = (
    '{"e":"24hrTicker","E":1672515782136,"s":"BTCUSDT","p":"0.0015","P":"250.00","w":"0.0018",'
    '"x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010",'
    '"h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}'
)


def decoder(*symbols: str) -> BinanceDecoder:
    return exchanges.get("binance").decoder(symbols)  # type: ignore[return-value]


def test_stats_then_book_merge_into_complete_tickers() -> None:
    dec = decoder("BTC/USDT")
    [first] = dec.decode(STATS)
    assert (first.symbol, first.last, first.bid, first.ask) == ("BTC/USDT", 0.0025, 0.0024, 0.0026)
    assert (first.volume_24h, first.high_24h, first.low_24h) == (10000.0, 0.0025, 0.0010)
    assert (first.change_24h, first.change_pct_24h) == (0.0015, 250.0)
    assert first.exchange_ts == 1672515782.136

    [second] = dec.decode(BOOK)
    assert (second.bid, second.bid_size, second.ask, second.ask_size) == (0.3521, 672.0, 0.3526, 3199.0)
    assert second.last == 0.0025 and second.volume_24h == 10000.0  # kept from the stats
    assert second.exchange_ts is None  # bookTicker carries no time

    [third] = dec.decode(STATS)
    assert third.bid == 0.3521  # the real-time book wins over the stats' older best prices


def test_older_book_is_ignored() -> None:
    dec = decoder("BTC/USDT")
    dec.decode(BOOK)
    older = BOOK.replace("499869768", "499869700").replace("0.35210000", "0.1")
    assert dec.decode(older) == []


def test_book_only_ticker_has_no_stats() -> None:
    [ticker] = decoder("BTC/USDT").decode(BOOK)
    assert ticker.last is None and ticker.volume_24h is None and ticker.bid == 0.3521


def test_other_symbols_and_junk() -> None:
    dec = decoder("ETH/USDT")
    assert dec.decode(BOOK) == [] and dec.decode(STATS) == []
    assert dec.junk == 0
    for frame in ("{", '{"e":"trade"}', "[]", '{"u":1}'):
        assert dec.decode(frame) == []
    assert dec.junk == 4


def test_subscribe_request_and_ack() -> None:
    dec = decoder()
    [frame] = dec.subscribe(["BTC/USDT", "ETH/USDT"])
    request = orjson.loads(frame)
    assert request["method"] == "SUBSCRIBE"
    assert request["params"] == [
        "btcusdt@bookTicker",
        "btcusdt@ticker",
        "ethusdt@bookTicker",
        "ethusdt@ticker",
    ]
    assert dec.decode(f'{{"result":null,"id":{request["id"]}}}') == []
    assert dec.events == [Subscribed("BTC/USDT"), Subscribed("ETH/USDT")]


def test_refused_batch_is_retried_symbol_by_symbol_then_rejected() -> None:
    dec = decoder()
    request = orjson.loads(dec.subscribe(["BTC/USDT", "BAD/USDT"])[0])
    dec.decode(f'{{"code":2,"msg":"Invalid request: invalid stream","id":{request["id"]}}}')
    retries = [orjson.loads(e.frame) for e in dec.events if isinstance(e, Reply)]
    assert [r["params"] for r in retries] == [
        ["btcusdt@bookTicker", "btcusdt@ticker"],
        ["badusdt@bookTicker", "badusdt@ticker"],
    ]
    dec.events.clear()
    dec.decode(f'{{"code":2,"msg":"Invalid request: invalid stream","id":{retries[1]["id"]}}}')
    assert dec.events == [Rejected("BAD/USDT", "2: Invalid request: invalid stream")]


def test_server_shutdown_asks_for_a_reconnect() -> None:
    dec = decoder("BTC/USDT")
    assert dec.decode('{"e":"serverShutdown","E":1672515782136}') == []
    assert dec.events == [ReconnectRequested("serverShutdown")]


def test_perpetuals_are_not_spot() -> None:
    adapter = exchanges.get("binance")
    adapter.check_symbol("BTC/USDT")
    try:
        adapter.check_symbol("BTC/USDT:USDT")
    except ValueError as exc:
        assert "spot only" in str(exc)
    else:
        raise AssertionError("a perpetual was accepted")


# -- data sanity -----------------------------------------------------------------------------


def test_an_insane_book_is_junk_and_the_merged_book_stays() -> None:
    """The live report: bid −1, ask −5 was written as is."""
    dec = decoder("BTC/USDT")
    dec.decode(BOOK)
    insane = (
        BOOK.replace("499869768", "499869769").replace('"0.35210000"', '"-1"').replace('"0.35260000"', '"-5"')
    )
    assert dec.decode(insane) == [] and dec.junk == 1
    assert dec.junk_reason == "BTC/USDT: bid -1.0 is not a valid price"
    for price in ('"0"', '"NaN"', '"inf"'):
        assert dec.decode(BOOK.replace('"0.35210000"', price)) == []
    assert dec.junk == 4
    [ticker] = dec.decode(STATS)
    assert (ticker.bid, ticker.ask) == (0.3521, 0.3526)  # the last good book, not the junk one
    [ticker] = dec.decode(BOOK)  # and its update id was not moved by the junk either
    assert ticker.bid == 0.3521


def test_insane_statistics_are_junk_and_the_merged_ones_stay() -> None:
    dec = decoder("BTC/USDT")
    dec.decode(STATS)
    assert dec.decode(STATS.replace('"c":"0.0025"', '"c":"-0.0025"')) == []
    assert dec.decode(STATS.replace('"v":"10000"', '"v":"-1"')) == []
    assert dec.junk == 2
    [ticker] = dec.decode(BOOK)
    assert (ticker.last, ticker.volume_24h) == (0.0025, 10000.0)


def test_a_frame_without_a_field_its_kind_always_carries_is_junk() -> None:
    """A bookTicker without ``a`` or a 24hrTicker without ``c`` must not null the stored value."""
    dec = decoder("BTC/USDT")
    dec.decode(STATS)
    dec.decode(BOOK)
    assert dec.decode(BOOK.replace(',"a":"0.35260000"', "")) == []
    assert dec.junk_reason == "missing field 'a'"
    assert dec.decode(STATS.replace('"c":"0.0025",', "")) == []
    assert dec.decode(STATS.replace('"h":"0.0025"', '"h":null')) == []
    assert dec.junk == 3
    [ticker] = dec.decode(BOOK)
    assert (ticker.last, ticker.ask, ticker.high_24h) == (0.0025, 0.3526, 0.0025)


def test_a_crossed_book_is_kept_and_counted() -> None:
    dec = decoder("BTC/USDT")
    [ticker] = dec.decode(BOOK.replace('"0.35210000"', '"0.4"'))
    assert (ticker.bid, ticker.ask) == (0.4, 0.3526) and dec.crossed == 1 and dec.junk == 0
