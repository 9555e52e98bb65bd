"""Bitvavo decoder on the frames of Bitvavo's WebSocket documentation: ``ticker`` (changed
fields only) merged with ``ticker24h``; subscription answers and refusals."""

from __future__ import annotations

import orjson
import trio
import trio.testing

from tests.conftest import Updates
from tests.test_exchange_contract import real_time, start
from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.bitvavo import BitvavoDecoder
from tickerd.testing.bitvavo import FakeBitvavo

# "Ticker subscription": the ticker event (every field; the wire sends the changed ones).
TICKER = (
    '{"event":"ticker","market":"BTC-EUR","bestBid":"9156.8","bestBidSize":"0.12840531",'
    '"bestAsk":"9157.9","bestAskSize":"0.1286605","lastPrice":"9156.9"}'
)
# "Ticker 24 hour subscription": the ticker24h event as documented (``data`` one object).
DATA = (
    '{"market":"BTC-EUR","timestamp":1566564813057,"open":"9072.9","high":"9263.6","low":"9062.8",'
    '"last":"9231.8","bid":"9225","bidSize":"1.14732373","ask":"9225.1","askSize":"0.65371786",'
    '"volume":"85.70530211","volumeQuote":"785714.14"}'
)
TICKER24H = f'{{"event":"ticker24h","data":{DATA}}}'
#: As the server sends it: ``data`` a list.
TICKER24H_WIRE = f'{{"event":"ticker24h","data":[{DATA}]}}'
# The answers to a subscribe: "Ticker subscription" confirmation, and an unknown market's refusal.
SUBSCRIBED = '{"event":"subscribed","subscriptions":{"ticker":["BTC-EUR"],"ticker24h":["BTC-EUR"]}}'
REFUSED = '{"action":"subscribe","errorCode":205,"error":"market parameter NOPE-EUR is invalid."}'


def decoder(*symbols: str) -> BitvavoDecoder:
    return exchanges.get("bitvavo").decoder(symbols)  # type: ignore[return-value]


def test_ticker_then_statistics_merge_into_complete_tickers() -> None:
    dec = decoder("BTC/EUR")
    [first] = dec.decode(TICKER)
    assert (first.exchange, first.symbol, first.last) == ("bitvavo", "BTC/EUR", 9156.9)
    assert (first.bid, first.bid_size, first.ask, first.ask_size) == (9156.8, 0.12840531, 9157.9, 0.1286605)
    assert first.volume_24h is None and first.exchange_ts is None

    [second] = dec.decode(TICKER24H)
    assert (second.last, second.high_24h, second.low_24h, second.volume_24h) == (
        9231.8,
        9263.6,
        9062.8,
        85.70530211,
    )
    assert second.change_24h is not None and abs(second.change_24h - 158.9) < 1e-9
    assert second.change_pct_24h is not None and abs(second.change_pct_24h - 158.9 / 9072.9 * 100) < 1e-9
    assert second.exchange_ts == 1566564813.057
    assert (second.bid, second.ask) == (9156.8, 9157.9)  # the real-time book wins over the 24 h one
    assert second.sequence is None


def test_the_wire_form_of_ticker24h_is_a_list() -> None:
    dec = decoder("BTC/EUR", "ETH/EUR")
    other = DATA.replace("BTC-EUR", "ETH-EUR").replace('"last":"9231.8"', '"last":"180.5"')
    tickers = dec.decode(f'{{"event":"ticker24h","data":[{DATA},{other}]}}')
    assert [(t.symbol, t.last) for t in tickers] == [("BTC/EUR", 9231.8), ("ETH/EUR", 180.5)]
    assert dec.decode(TICKER24H_WIRE)[0].symbol == "BTC/EUR"


def test_statistics_fill_the_book_until_the_ticker_sends_it() -> None:
    dec = decoder("BTC/EUR")
    [ticker] = dec.decode(TICKER24H_WIRE)
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (
        9225.0,
        1.14732373,
        9225.1,
        0.65371786,
    )
    [ticker] = dec.decode('{"event":"ticker","market":"BTC-EUR","lastPrice":"9230"}')
    assert (ticker.bid, ticker.last, ticker.volume_24h) == (9225.0, 9230.0, 85.70530211)


def test_partial_ticker_events_change_only_what_they_carry() -> None:
    """The wire sends a side with its size, or the last price, alone."""
    dec = decoder("BTC/EUR")
    dec.decode(TICKER)
    [bid] = dec.decode('{"event":"ticker","market":"BTC-EUR","bestBid":"9157.0","bestBidSize":"0.5"}')
    assert (bid.bid, bid.bid_size, bid.ask, bid.ask_size, bid.last) == (
        9157.0,
        0.5,
        9157.9,
        0.1286605,
        9156.9,
    )
    [ask] = dec.decode('{"event":"ticker","market":"BTC-EUR","bestAsk":"9158.0","bestAskSize":"0.25"}')
    assert (ask.bid, ask.ask, ask.ask_size) == (9157.0, 9158.0, 0.25)
    [last] = dec.decode('{"event":"ticker","market":"BTC-EUR","lastPrice":"9157.5"}')
    assert (last.bid, last.ask, last.last) == (9157.0, 9158.0, 9157.5)


def test_other_markets_control_answers_and_junk() -> None:
    dec = decoder("ETH/EUR")
    assert dec.decode(TICKER) == [] and dec.decode(TICKER24H) == []
    assert dec.decode('{"event":"unsubscribed","subscriptions":{}}') == []
    assert dec.decode('{"action":"getTime","response":{"time":1548229729131}}') == []
    assert dec.junk == 0
    for frame in ("{", "[]", '{"event":"trade"}', '{"errorCode":102,"error":"Invalid JSON."}'):
        assert dec.decode(frame) == []
    assert dec.junk == 4


def test_subscribe_request_and_its_confirmation() -> None:
    dec = decoder()
    [frame] = dec.subscribe(["BTC/EUR", "ETH/EUR"])
    assert orjson.loads(frame) == {
        "action": "subscribe",
        "channels": [
            {"name": "ticker", "markets": ["BTC-EUR", "ETH-EUR"]},
            {"name": "ticker24h", "markets": ["BTC-EUR", "ETH-EUR"]},
        ],
    }
    # The answer lists the connection's every subscription; ETH-EUR lacks ticker24h here.
    dec.decode(
        '{"event":"subscribed","subscriptions":{"ticker":["BTC-EUR","ETH-EUR","XRP-EUR"],'
        '"ticker24h":["BTC-EUR","XRP-EUR"]}}'
    )
    assert dec.events == [Subscribed("BTC/EUR")]
    dec.events.clear()
    [frame] = dec.unsubscribe(["ETH/EUR"])
    assert orjson.loads(frame)["action"] == "unsubscribe"
    assert dec.decode(SUBSCRIBED) == [] and dec.events == []  # no request pending any more


def test_an_unknown_market_is_rejected_and_the_rest_subscribed_again() -> None:
    dec = decoder()
    dec.subscribe(["BTC/EUR", "NOPE/EUR", "ETH/EUR"])
    assert dec.decode(REFUSED) == []
    [rejected, retry] = dec.events
    assert rejected == Rejected("NOPE/EUR", "205: market parameter NOPE-EUR is invalid.")
    assert isinstance(retry, Reply)
    assert orjson.loads(retry.frame)["channels"][0]["markets"] == ["BTC-EUR", "ETH-EUR"]
    dec.events.clear()
    dec.decode(
        '{"event":"subscribed","subscriptions":{"ticker":["BTC-EUR","ETH-EUR"],"ticker24h":["BTC-EUR","ETH-EUR"]}}'
    )
    assert dec.events == [Subscribed("BTC/EUR"), Subscribed("ETH/EUR")]


def test_the_documented_error_shape_without_action_is_matched_by_the_market() -> None:
    dec = decoder()
    dec.subscribe(["NOPE/EUR"])
    dec.decode('{"event":"error","errorCode":205,"error":"market parameter NOPE-EUR is invalid."}')
    assert dec.events == [Rejected("NOPE/EUR", "205: market parameter NOPE-EUR is invalid.")]


def test_a_refusal_naming_no_market_is_retried_market_by_market() -> None:
    dec = decoder()
    dec.subscribe(["BTC/EUR", "ETH/EUR"])
    dec.decode('{"action":"subscribe","errorCode":205,"error":"market parameter is invalid."}')
    retries = [orjson.loads(e.frame)["channels"][0]["markets"] for e in dec.events if isinstance(e, Reply)]
    assert retries == [["BTC-EUR"], ["ETH-EUR"]]
    dec.events.clear()
    dec.decode(SUBSCRIBED)
    dec.decode('{"action":"subscribe","errorCode":205,"error":"market parameter is invalid."}')
    assert dec.events == [Subscribed("BTC/EUR"), Rejected("ETH/EUR", "205: market parameter is invalid.")]


# -- data sanity -----------------------------------------------------------------------------


def test_insane_values_are_junk_and_the_merged_values_stay() -> None:
    dec = decoder("BTC/EUR")
    dec.decode(TICKER)
    dec.decode(TICKER24H)
    assert dec.decode(TICKER.replace('"9156.8"', '"-1"')) == []
    assert dec.junk_reason == "BTC/EUR: bid -1.0 is not a valid price"
    assert dec.decode(TICKER24H.replace('"85.70530211"', '"NaN"')) == []
    assert dec.decode('{"event":"ticker","market":"BTC-EUR","bestBid":"9157.0"}') == []  # no size
    assert dec.junk_reason == "missing field 'bestBidSize'"
    assert dec.junk == 3
    [ticker] = dec.decode('{"event":"ticker","market":"BTC-EUR","lastPrice":"9157"}')
    assert (ticker.bid, ticker.bid_size, ticker.volume_24h) == (9156.8, 0.12840531, 85.70530211)


def test_a_market_without_trades_has_no_statistics() -> None:
    dec = decoder("BTC/EUR")
    empty = DATA.replace('"9072.9"', "null").replace('"9231.8"', "null").replace('"9263.6"', '""')
    [ticker] = dec.decode(f'{{"event":"ticker24h","data":[{empty}]}}')
    assert (ticker.last, ticker.high_24h, ticker.change_24h, ticker.change_pct_24h) == (
        None,
        None,
        None,
        None,
    )


def test_a_crossed_book_is_kept_and_counted() -> None:
    dec = decoder("BTC/EUR")
    [ticker] = dec.decode(TICKER.replace('"9156.8"', '"9160"'))
    assert (ticker.bid, ticker.ask) == (9160.0, 9157.9) and dec.crossed == 1 and dec.junk == 0


# -- through the daemon ----------------------------------------------------------------------


async def test_partial_ticker_events_reach_redis_merged(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    fake, _ = await start(nursery, prefix, exchanges.get("bitvavo"), ["BTC/EUR"])
    assert isinstance(fake, FakeBitvavo)
    with real_time(clock):
        await fake.push("BTC/EUR", bid=100.0, ask=101.0, last=100.5, volume=42.0)
        await updates.wait_for(lambda r: r["bid"] == 100.0 and r["volume"] == 42.0)
        await fake.push_ticker("BTC/EUR", "bestBid", bid=100.25, bid_size=3.0)
        record = await updates.wait_for(lambda r: r["bid"] == 100.25)
    assert (record["bid_size"], record["ask"], record["last"], record["volume"]) == (3.0, 101.0, 100.5, 42.0)
    assert fake.violations == []
