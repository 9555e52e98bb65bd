"""Kraken Futures: the ``ticker`` feed decoded from the documentation's frames, acks and errors
attributed to their requests, product ids both ways."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import start_fake, until
from tickerd import exchanges, transport
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.kraken_futures import HEARTBEAT, KrakenFuturesDecoder, native
from tickerd.testing.kraken_futures import IDLE_LIMIT, FakeKrakenFutures, unified

INVERSE = "BTC/USD:BTC"
LINEAR = "BTC/USD:USD"
#: https://docs.kraken.com/api/docs/futures-api/websocket/ticker, "Subscription Data", with the
#: page's two JSON slips mended (a comma added after ``volumeQuote``, the one after ``low`` dropped).
TICKER = """{
  "time":1676393235406,
  "product_id": "PI_XBTUSD",
  "funding_rate": -6.2604214e-11,
  "funding_rate_prediction": -3.65989977e-10,
  "relative_funding_rate": -1.380384722222e-6,
  "relative_funding_rate_prediction": -8.047629166667e-6,
  "next_funding_rate_time": 1676394000000,
  "feed": "ticker",
  "bid": 21978.5,
  "ask": 21987.0,
  "bid_size": 2536.0,
  "ask_size": 13948.0,
  "volume": 31403908.0,
  "dtm": 0,
  "leverage": "50x",
  "index": 21984.54,
  "premium": -0.0,
  "last": 21983.5,
  "change": 1.9974017538161748,
  "suspended": false,
  "tag": "perpetual",
  "pair": "XBT:USD",
  "openInterest": 30072580.0,
  "markPrice": 21979.68641534714,
  "maturityTime": 0,
  "post_only": false,
  "volumeQuote": 31403908.0,
  "open": 21968.5,
  "high": 22123.0,
  "low": 21456.0
}"""
#: The same page's request, acknowledgement and error examples, and the heartbeat page's.
SUBSCRIBE = {"event": "subscribe", "feed": "ticker", "product_ids": ["PI_XBTUSD"]}
SUBSCRIBED = '{"event": "subscribed", "feed": "ticker", "product_ids": ["PI_XBTUSD"]}'
INVALID = '{"event": "error", "message": "Invalid product id"}'
JSON_ERROR = '{"event": "error", "message": "Json Error"}'
HEARTBEAT_ACK = '{"event": "subscribed", "feed": "heartbeat"}'
HEARTBEAT_FRAME = '{"feed": "heartbeat", "time": 1534262350627}'
#: The greeting every connection opens with.
INFO = '{"event":"info","version":1}'


def decoder(*symbols: str) -> KrakenFuturesDecoder:
    return exchanges.get("kraken_futures").decoder(symbols)  # type: ignore[return-value]


def edited(frame: str, **changes: object) -> str:
    """``frame`` with fields replaced, or dropped where the change is ``None``."""
    msg = orjson.loads(frame)
    for key, value in changes.items():
        if value is None:
            msg.pop(key)
        else:
            msg[key] = value
    return orjson.dumps(msg).decode()


def test_the_documented_ticker_maps_every_field() -> None:
    [t] = decoder(INVERSE).decode(TICKER)
    assert (t.exchange, t.symbol, t.last) == ("kraken_futures", INVERSE, 21983.5)
    assert (t.bid, t.ask, t.bid_size, t.ask_size) == (21978.5, 21987.0, 2536.0, 13948.0)
    assert (t.volume_24h, t.high_24h, t.low_24h) == (31403908.0, 22123.0, 21456.0)
    assert t.change_24h == 15.0  # last − open; Kraken's ``change`` is the percentage
    assert t.change_pct_24h == 1.9974017538161748
    assert t.exchange_ts == 1676393235.406
    assert (t.mark_price, t.index_price) == (21979.68641534714, 21984.54)
    assert t.funding_rate == -1.380384722222e-6  # the relative rate, not the absolute -6.26e-11
    assert t.next_funding_ts == 1676394000.0  # epoch ms of the next hour, not "time until"
    assert t.open_interest == 30072580.0
    assert t.sequence is None


def test_a_perpetual_without_funding_fields_funds_at_zero() -> None:
    """ "If zero, field is not populated": absent funding on a perpetual is a zero rate."""
    frame = edited(TICKER, funding_rate=None, relative_funding_rate=None)
    [t] = decoder(INVERSE).decode(frame)
    assert t.funding_rate == 0.0 and t.next_funding_ts == 1676394000.0


def test_a_fixed_maturity_has_mark_index_and_open_interest_but_no_funding() -> None:
    """The documented ticker as a fixed maturity sends it: no funding fields, a maturity time."""
    frame = edited(
        TICKER,
        product_id="FI_XBTUSD_261225",
        tag="quarter",
        dtm=25,
        maturityTime=1798185600000,
        funding_rate=None,
        funding_rate_prediction=None,
        relative_funding_rate=None,
        relative_funding_rate_prediction=None,
        next_funding_rate_time=None,
    )
    [t] = decoder("BTC/USD:BTC-261225").decode(frame)
    assert t.symbol == "BTC/USD:BTC-261225"
    assert (t.mark_price, t.index_price, t.open_interest) == (21979.68641534714, 21984.54, 30072580.0)
    assert (t.funding_rate, t.next_funding_ts) == (None, None)


def test_tickers_of_products_not_tracked_are_dropped() -> None:
    dec = decoder(LINEAR)
    assert dec.decode(TICKER) == [] and dec.junk == 0


def test_a_ticker_without_its_book_is_junk() -> None:
    dec = decoder(INVERSE)
    assert dec.decode(edited(TICKER, bid=None)) == []
    assert dec.junk == 1 and "bid" in dec.junk_reason


def test_control_frames_decode_to_nothing() -> None:
    dec = decoder(INVERSE)
    alert = '{"event":"alert","message":"Bad websocket message"}'
    for frame in (INFO, HEARTBEAT_ACK, HEARTBEAT_FRAME, alert):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []


def test_the_first_subscription_brings_the_heartbeat_then_one_request_a_product() -> None:
    dec = decoder()
    first = dec.subscribe([INVERSE, LINEAR])
    assert first[0] == HEARTBEAT
    assert [orjson.loads(frame) for frame in first[1:]] == [
        SUBSCRIBE,
        {"event": "subscribe", "feed": "ticker", "product_ids": ["PF_XBTUSD"]},
    ]
    [later] = dec.subscribe(["ETH/USD:USD"])  # the heartbeat goes out once a connection
    assert orjson.loads(later)["product_ids"] == ["PF_ETHUSD"]
    assert orjson.loads(dec.unsubscribe([LINEAR])[0])["event"] == "unsubscribe"


def test_an_ack_confirms_the_product_it_names() -> None:
    dec = decoder()
    dec.subscribe([INVERSE])
    assert dec.decode(SUBSCRIBED) == []
    assert dec.events == [Subscribed(INVERSE)]


def test_an_invalid_product_error_refuses_the_oldest_unanswered_request() -> None:
    """The error names no product: requests are answered in order, one product each."""
    dec = decoder()
    dec.subscribe([INVERSE, "NOPE/USD:USD", LINEAR])
    for frame in (SUBSCRIBED, INVALID, SUBSCRIBED.replace("PI_XBTUSD", "PF_XBTUSD")):
        dec.decode(frame)
    assert dec.events == [
        Subscribed(INVERSE),
        Rejected("NOPE/USD:USD", "PF_NOPEUSD: Invalid product id"),
        Subscribed(LINEAR),
    ]


def test_other_errors_answer_a_request_without_blaming_its_symbol() -> None:
    dec = decoder()
    dec.subscribe([INVERSE, LINEAR])
    dec.decode(JSON_ERROR)
    dec.decode(INVALID)
    assert dec.events == [Rejected(LINEAR, "PF_XBTUSD: Invalid product id")]


def test_an_unsubscribe_answered_by_an_error_refuses_nothing() -> None:
    dec = decoder(INVERSE)
    dec.unsubscribe([INVERSE])
    dec.decode(INVALID)
    assert dec.events == [] and dec.decode(INVALID) == []


def test_a_failed_subscription_is_a_rejection() -> None:
    dec = decoder()
    dec.subscribe([INVERSE])
    dec.decode('{"event":"subscribed_failed","feed":"ticker","product_ids":["PI_XBTUSD"]}')
    assert dec.events == [Rejected(INVERSE, "PI_XBTUSD: subscribed_failed")]


@pytest.mark.parametrize(
    ("symbol", "product"),
    [
        ("BTC/USD:USD", "PF_XBTUSD"),
        ("BTC/USD:BTC", "PI_XBTUSD"),
        ("ETH/USD:USD", "PF_ETHUSD"),
        ("BTC/USD:BTC-261225", "FI_XBTUSD_261225"),
        ("BTC/USD:USD-270326", "FF_XBTUSD_270326"),
    ],
)
def test_product_ids_both_ways(symbol: str, product: str) -> None:
    assert native(symbol) == product
    assert unified(product) == symbol


@pytest.mark.parametrize(
    ("symbol", "error"),
    [
        ("XBT/USD:USD", "write BTC"),
        ("BTC/USD", "no spot"),
        ("ETH/USD:BTC", "settled in their quote"),
    ],
)
def test_symbols_kraken_futures_cannot_serve_are_refused(symbol: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        exchanges.get("kraken_futures").check_symbol(symbol)


async def test_the_fake_closes_a_connection_that_stops_sending(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Kraken's 60 s rule, which the adapter's keepalive exists for: a client that subscribes and
    then sends nothing is closed, and the fake records it."""
    fake = await start_fake(nursery, FakeKrakenFutures())
    async with transport.connect(fake.url) as conn:
        assert await conn.receive() == INFO
        await conn.send(orjson.dumps(SUBSCRIBE).decode())
        assert orjson.loads(await conn.receive()) == orjson.loads(SUBSCRIBED)
        opened = trio.current_time()
        with pytest.raises(transport.TransportError):
            while True:
                await conn.receive()  # the snapshot, then nothing: no heartbeat subscription
    assert trio.current_time() - opened >= IDLE_LIMIT
    await until(fake, lambda: not fake.connections)
    assert fake.violations == [f"no message for {IDLE_LIMIT:g} s: connection closed"]
