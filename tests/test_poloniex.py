"""Poloniex v3: decoder on the documented frames, the merge of ``ticker`` and ``book``, answers
matched to requests in order, and the fake's idle rule through the daemon."""

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
from tickerd.exchanges.poloniex import PoloniexDecoder
from tickerd.testing.poloniex import FakePoloniex

SPOT = "BTC/USDT"

# The ticker and book pushes of api-docs.poloniex.com/spot/websocket/market-data, carrying
# exactly the fields the page (and Poloniex's SDK, polo-sdk-java's TickerEvent and BookEvent)
# lists.  The ticker is a push as recorded in ccxt's Poloniex handler; the book's times and ids
# are those of ccxt's recorded ``book_lv2`` push, its levels made consistent with the ticker.
TICKER = (
    '{"channel":"ticker","data":[{"symbol":"BTC_USDT","startTime":1677280800000,"open":"23154.32",'
    '"high":"23212.21","low":"22761.01","close":"23148.86","quantity":"105.179566",'
    '"amount":"2423161.17436702","tradeCount":17582,"dailyChange":"-0.0002","markPrice":"23151.09",'
    '"closeTime":1677367197924,"ts":1677367251090}]}'
)
BOOK = (
    '{"channel":"book","data":[{"symbol":"BTC_USDT","createTime":1677368876253,'
    '"asks":[["23149.5","0.02"],["23150.1","0.6"]],"bids":[["23148.9","0.6"],["23148.2","1.5"]],'
    '"id":164148725,"ts":1677368876316}]}'
)
# The acks and the error of api-docs.poloniex.com/spot/websocket, "Subscriptions": an ack
# repeats the channel (a string) and the symbols, as the "Receipt Confirmation" of Poloniex's
# SDK wiki shows; an error names neither.
TICKER_ACK = '{"event":"subscribe","channel":"ticker","symbols":["BTC_USDT"]}'
BOOK_ACK = '{"event":"subscribe","channel":"book","symbols":["BTC_USDT"]}'
ERROR = '{"event":"error","message":"Error Message"}'


def decoder(*symbols: str) -> PoloniexDecoder:
    return exchanges.get("poloniex").decoder(symbols)  # type: ignore[return-value]


def test_ticker_then_book_merge_into_one_record() -> None:
    dec = decoder(SPOT)
    [first] = dec.decode(TICKER)
    assert (first.symbol, first.last, first.bid, first.ask) == (SPOT, 23148.86, None, None)
    assert (first.volume_24h, first.high_24h, first.low_24h) == (105.179566, 23212.21, 22761.01)
    assert (first.change_24h, first.change_pct_24h) == (-5.46, -0.02)  # exact, dailyChange a fraction
    assert (first.exchange_ts, first.sequence) == (1677367251.09, None)
    [merged] = dec.decode(BOOK)
    assert (merged.bid, merged.ask, merged.bid_size, merged.ask_size) == (23148.9, 23149.5, 0.6, 0.02)
    assert (merged.last, merged.volume_24h, merged.change_pct_24h) == (23148.86, 105.179566, -0.02)
    assert (merged.exchange_ts, merged.sequence) == (1677368876.316, 164148725)
    [again] = dec.decode(TICKER)
    assert (again.bid, again.sequence, again.mark_price) == (23148.9, 164148725, None)


def test_an_empty_side_of_the_book_is_none() -> None:
    push = orjson.loads(BOOK)
    push["data"][0]["asks"] = []
    [ticker] = decoder(SPOT).decode(orjson.dumps(push))
    assert (ticker.bid, ticker.ask, ticker.ask_size) == (23148.9, None, None)


def test_requests_one_channel_and_symbol_each() -> None:
    frames = decoder().subscribe([SPOT])
    assert [orjson.loads(f) for f in frames] == [
        {"event": "subscribe", "channel": ["ticker"], "symbols": ["BTC_USDT"]},
        {"event": "subscribe", "channel": ["book"], "symbols": ["BTC_USDT"], "depth": 5},
    ]


def test_answers_are_matched_to_requests_in_order() -> None:
    dec = decoder()
    dec.subscribe(["NOPE/USDT", SPOT])
    nope_ack = TICKER_ACK.replace("BTC_USDT", "NOPE_USDT")
    for frame in (ERROR, ERROR, TICKER_ACK, BOOK_ACK, nope_ack):  # the last answers nothing of ours
        assert dec.decode(frame) == []
    assert dec.events == [Rejected("NOPE/USDT", "Error Message"), Subscribed(SPOT)]
    dec.events.clear()
    dec.unsubscribe([SPOT])
    unsubscribed = TICKER_ACK.replace('"subscribe"', '"unsubscribe"')
    for frame in (unsubscribed, unsubscribed, '{"event":"pong"}'):
        assert dec.decode(frame) == []
    assert dec.events == [] and dec.junk == 0
    assert dec.decode(TICKER) == []  # unsubscribed: late pushes are dropped


def test_junk_is_counted() -> None:
    dec = decoder(SPOT)
    trades = TICKER.replace('"ticker"', '"trades"')
    for frame in ("ping?", "{}", '{"event":"mystery"}', trades, b"\xff", "[]"):
        assert dec.decode(frame) == []
    assert dec.junk == 6


@pytest.mark.parametrize(
    ("frame", "path", "value"),
    [(BOOK, ("bids", 0, 0), "-1"), (BOOK, ("asks", 0, 1), "-2"), (TICKER, ("close",), "NaN")],
)
def test_an_insane_number_makes_the_push_junk_and_leaves_the_state(
    frame: str, path: tuple[str | int, ...], value: str
) -> None:
    dec = decoder(SPOT)
    [good] = dec.decode(BOOK)
    push = orjson.loads(frame)
    target = push["data"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert dec.decode(orjson.dumps(push)) == [] and dec.junk == 1
    [after] = dec.decode(TICKER)
    assert (after.bid, after.ask_size) == (good.bid, good.ask_size)


@pytest.mark.parametrize(("frame", "field"), [(TICKER, "close"), (TICKER, "dailyChange"), (BOOK, "id")])
def test_a_push_without_a_field_is_junk(frame: str, field: str) -> None:
    dec = decoder(SPOT)
    push = orjson.loads(frame)
    del push["data"][0][field]
    assert dec.decode(orjson.dumps(push)) == [] and dec.junk_reason == f"missing field '{field}'"


def test_spot_only() -> None:
    with pytest.raises(ValueError, match="serves spot only"):
        exchanges.get("poloniex").check_symbol("BTC/USDT:USDT")


# -- the fake's rules ------------------------------------------------------------------------


async def test_the_fake_ends_an_idle_session(clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery, FakePoloniex())
    began = trio.current_time()
    async with trio_websocket.open_websocket_url(fake.url) as ws:
        await ws.send_message('{"event":"ping"}')
        assert orjson.loads(await ws.get_message()) == {"event": "pong"}
        await ws.send_message('{"event":"subscribe","channel":["book"],"symbols":["BTC_USDT"],"depth":1}')
        assert orjson.loads(await ws.get_message()) == orjson.loads(BOOK_ACK)
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await ws.get_message()
    assert trio.current_time() - began >= fake.idle_timeout
    assert fake.violations == ["book depth 1 (valid: 5, 10, 20)"]


async def test_pings_keep_a_quiet_connection_open(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    feed = {"silence_timeout": FeedSettings().silence_timeout}
    fake, daemon = await start(nursery, prefix, exchanges.get("poloniex"), [SPOT, "ETH/BTC"], feed=feed)
    [conn] = fake.connections
    await trio.sleep(10 * fake.idle_timeout)  # type: ignore[attr-defined]
    assert fake.connections == [conn] and fake.keepalives >= 10 * 30 / 20 - 1
    assert daemon.health().exchanges["poloniex"].reconnects == 0 and fake.violations == []
