"""bitFlyer Lightning: decoder on the documented ticker, JSON-RPC answers, symbol forms."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.bitflyer import BitflyerDecoder, native, unified

# The ticker example of bitFlyer's Realtime API "Ticker" page, in its channelMessage envelope.
MESSAGE = (
    '{"product_code":"BTC_JPY","timestamp":"2019-04-11T05:14:12.3739915Z","state":"RUNNING",'
    '"tick_id":25965446,"best_bid":580006,"best_ask":580771,"best_bid_size":2.00000013,'
    '"best_ask_size":0.4,"total_bid_depth":1581.64414981,"total_ask_depth":1415.32079982,'
    '"market_bid_size":0,"market_ask_size":0,"ltp":580790,"volume":6703.96837634,'
    '"volume_by_product":6703.96837634}'
)


def notification(channel: str = "lightning_ticker_BTC_JPY", message: str = MESSAGE) -> str:
    envelope = '{"jsonrpc":"2.0","method":"channelMessage","params":{"channel":"%s","message":%s}}'
    return envelope % (channel, message)


def test_symbols_map_both_ways() -> None:
    assert native("BTC/JPY") == "BTC_JPY" and unified("BTC_JPY") == "BTC/JPY"
    assert native("BTC/JPY:JPY") == "FX_BTC_JPY" and unified("FX_BTC_JPY") == "BTC/JPY:JPY"
    assert native("ETH/BTC") == "ETH_BTC"


def test_the_documented_ticker() -> None:
    decoder = BitflyerDecoder(["BTC/JPY"])
    (t,) = decoder.decode(notification())
    assert (t.last, t.bid, t.ask, t.bid_size, t.ask_size) == (580790.0, 580006.0, 580771.0, 2.00000013, 0.4)
    assert t.volume_24h == 6703.96837634 and t.sequence == 25965446
    assert t.exchange_ts == pytest.approx(1554959652.3739915)
    assert (t.high_24h, t.low_24h, t.change_24h, t.change_pct_24h) == (None, None, None, None)
    assert decoder.junk == 0


def test_the_crypto_cfd_is_the_perpetual_without_derivative_fields() -> None:
    decoder = BitflyerDecoder(["BTC/JPY:JPY"])
    fx = MESSAGE.replace('"BTC_JPY"', '"FX_BTC_JPY"')
    (t,) = decoder.decode(notification("lightning_ticker_FX_BTC_JPY", fx))
    assert t.symbol == "BTC/JPY:JPY" and t.bid == 580006.0
    assert (t.mark_price, t.index_price, t.funding_rate, t.next_funding_ts, t.open_interest) == (None,) * 5
    assert decoder.decode(notification()) == []  # the spot channel is not tracked here


def test_batched_requests_and_their_answers() -> None:
    decoder = BitflyerDecoder([])
    (frame,) = decoder.subscribe(["BTC/JPY", "NOPE/JPY"])
    assert orjson.loads(frame) == [
        {"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": "lightning_ticker_BTC_JPY"}, "id": 1},
        {
            "jsonrpc": "2.0",
            "method": "subscribe",
            "params": {"channel": "lightning_ticker_NOPE_JPY"},
            "id": 2,
        },
    ]
    decoder.decode(
        '[{"jsonrpc":"2.0","id":1,"result":true},'
        '{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Invalid params"}}]'
    )
    assert decoder.events == [Subscribed("BTC/JPY"), Rejected("NOPE/JPY", "-32602: Invalid params")]
    decoder.events.clear()
    (frame,) = decoder.unsubscribe(["BTC/JPY"])
    assert orjson.loads(frame)[0]["method"] == "unsubscribe"
    decoder.decode('{"jsonrpc":"2.0","id":3,"result":true}')
    assert decoder.events == [] and decoder.decode(notification()) == []
    assert decoder.junk == 0


def test_junk() -> None:
    decoder = BitflyerDecoder(["BTC/JPY"])
    assert decoder.decode('{"jsonrpc":"2.0"}') == [] and decoder.junk == 1
    assert decoder.decode("[1,2]") == [] and decoder.junk == 2
    assert decoder.decode(notification(message=MESSAGE.replace('"ltp":580790,', ""))) == []
    assert decoder.junk == 3 and "ltp" in decoder.junk_reason
    assert decoder.decode(notification(message=MESSAGE.replace('"best_bid":580006', '"best_bid":-1'))) == []
    assert decoder.junk == 4 and "bid -1.0 is not a valid price" in decoder.junk_reason


def test_symbol_forms_the_adapter_accepts() -> None:
    adapter = exchanges.get("bitflyer")
    adapter.check_symbol("BTC/JPY:JPY")
    for refused in ("BTC/JPY:BTC", "BTC/JPY:JPY-261225"):
        with pytest.raises(ValueError):
            adapter.check_symbol(refused)
    assert not adapter.rejects_unknown and adapter.sequence_source
