"""Binance.US: Binance's spot decoder at its own host, on the frames of the Binance.US docs."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Subscribed
from tickerd.exchanges.binance import BinanceDecoder
from tickerd.testing.binanceus import FakeBinanceUs

# Binance.US "Web Socket Streams": Individual Symbol Book Ticker and Ticker Streams payloads.
BOOK = '{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
STATS = (
    '{"e":"24hrTicker","E":123456789,"s":"BNBUSDT","p":"0.0015","P":"250.00","w":"0.0018",'
    '"x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010",'
    '"h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}'
)


def test_the_decoder_is_binances_under_its_own_name() -> None:
    adapter = exchanges.get("binanceus")
    dec = adapter.decoder(["BNB/USDT"])
    assert isinstance(dec, BinanceDecoder) and type(dec) is not BinanceDecoder
    [stats] = dec.decode(STATS)
    [book] = dec.decode(BOOK)
    assert (stats.exchange, book.exchange) == ("binanceus", "binanceus")
    assert (book.bid, book.bid_size, book.ask, book.ask_size) == (25.3519, 31.21, 25.3652, 40.66)
    assert (book.last, book.volume_24h, book.change_pct_24h) == (0.0025, 10000.0, 250.0)
    assert book.sequence == 400900217 and stats.exchange_ts == 123456.789


def test_binance_itself_still_names_its_tickers_binance() -> None:
    [ticker] = exchanges.get("binance").decoder(["BNB/USDT"]).decode(BOOK)
    assert ticker.exchange == "binance"


def test_subscription_and_keepalive_use_the_binance_requests() -> None:
    adapter = exchanges.get("binanceus")
    dec = adapter.decoder([])
    [frame] = dec.subscribe(["BNB/USDT"])
    request = orjson.loads(frame)
    assert request["params"] == ["bnbusdt@bookTicker", "bnbusdt@ticker"]
    dec.decode(f'{{"result":null,"id":{request["id"]}}}')
    assert dec.events == [Subscribed("BNB/USDT")]
    assert adapter.keepalive is not None
    dec.events.clear()
    assert dec.decode('{"result":false,"id":0}') == [] and dec.events == [] and dec.junk == 0


def test_the_manifest_says_where_binance_us_differs() -> None:
    adapter = exchanges.get("binanceus")
    assert adapter.url == "wss://stream.binance.us:9443/ws"
    assert adapter.spot_only and not adapter.rejects_unknown and not adapter.reconnect_request
    assert adapter.max_lifetime is not None and adapter.max_lifetime < 24 * 3600


def test_the_fake_pings_every_three_minutes_and_has_no_reconnect_request() -> None:
    fake = FakeBinanceUs()
    assert fake.ping_interval == 180.0
    with pytest.raises(NotImplementedError):
        fake.reconnect_frame(None)  # type: ignore[arg-type]
