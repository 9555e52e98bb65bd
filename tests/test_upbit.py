"""Upbit: decoder on the documented frames, the merge, the whole-set requests."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Subscribed
from tickerd.exchanges.upbit import UpbitDecoder, native, unified

# The DEFAULT-format ticker example of Upbit's "현재가 (Ticker)" page, as the binary frame
# carries it.
TICKER = (
    b'{"type":"ticker","code":"KRW-BTC","opening_price":31883000,"high_price":32310000,'
    b'"low_price":31855000,"trade_price":32287000,"prev_closing_price":31883000.00000000,'
    b'"acc_trade_price":78039261076.51241000,"change":"RISE","change_price":404000.00000000,'
    b'"signed_change_price":404000.00000000,"change_rate":0.0126713295,'
    b'"signed_change_rate":0.0126713295,"ask_bid":"ASK","trade_volume":0.03103806,'
    b'"acc_trade_volume":2429.58834336,"trade_date":"20230221","trade_time":"074102",'
    b'"trade_timestamp":1676965262139,"acc_ask_volume":1146.25573608,"acc_bid_volume":1283.33260728,'
    b'"highest_52_week_price":57678000.00000000,"highest_52_week_date":"2022-03-28",'
    b'"lowest_52_week_price":20700000.00000000,"lowest_52_week_date":"2022-12-30",'
    b'"market_state":"ACTIVE","is_trading_suspended":false,"delisting_date":null,'
    b'"market_warning":"NONE","timestamp":1676965262177,"acc_trade_price_24h":228827082483.70729000,'
    b'"acc_trade_volume_24h":7158.80283560,"stream_type":"REALTIME"}'
)
# The orderbook example of the "호가 (Orderbook)" page (first units).
ORDERBOOK = (
    b'{"type":"orderbook","code":"KRW-BTC","timestamp":1704867306396,"total_ask_size":7.3262086,'
    b'"total_bid_size":29.27948667,"orderbook_units":[{"ask_price":61820000,"bid_price":61800000,'
    b'"ask_size":1.3457,"bid_size":0.09101537},{"ask_price":61830000,"bid_price":61760000,'
    b'"ask_size":0.02322,"bid_size":0.00999}],"stream_type":"REALTIME","level":0}'
)


def test_symbols_map_both_ways() -> None:
    assert native("BTC/KRW") == "KRW-BTC" and unified("KRW-BTC") == "BTC/KRW"
    assert native("ETH/BTC") == "BTC-ETH" and native("BTC/USDT") == "USDT-BTC"


def test_the_documented_ticker_and_orderbook_merge_into_one_record() -> None:
    decoder = UpbitDecoder(["BTC/KRW"])
    (stats,) = decoder.decode(TICKER)
    assert (stats.last, stats.volume_24h, stats.high_24h, stats.low_24h) == (
        32287000.0,
        7158.8028356,
        32310000.0,
        31855000.0,
    )
    assert stats.change_24h == 404000.0 and stats.change_pct_24h == pytest.approx(1.26713295)
    assert stats.exchange_ts == 1676965262.177 and stats.bid is None
    assert decoder.events == [Subscribed("BTC/KRW")]  # the first frame confirms the code
    decoder.events.clear()
    (merged,) = decoder.decode(ORDERBOOK)
    assert (merged.bid, merged.ask, merged.bid_size, merged.ask_size) == (
        61800000.0,
        61820000.0,
        0.09101537,
        1.3457,
    )
    assert merged.last == 32287000.0 and merged.volume_24h == 7158.8028356  # kept from the ticker
    assert merged.sequence is None and merged.mark_price is None
    assert decoder.events == [] and decoder.junk == 0


def test_an_insane_book_is_junk_and_leaves_the_merged_state() -> None:
    decoder = UpbitDecoder(["BTC/KRW"])
    decoder.decode(ORDERBOOK)
    assert decoder.decode(ORDERBOOK.replace(b'"bid_price":61800000', b'"bid_price":-1')) == []
    assert decoder.junk == 1 and "bid -1.0 is not a valid price" in decoder.junk_reason
    (ticker,) = decoder.decode(TICKER)
    assert ticker.bid == 61800000.0


def test_frames_of_untracked_codes_pings_and_errors() -> None:
    decoder = UpbitDecoder(["ETH/KRW"])
    assert decoder.decode(TICKER) == [] and decoder.junk == 0  # another connection's code
    assert decoder.decode('{"status":"UP"}') == [] and decoder.junk == 0
    assert decoder.decode('{"error":{"name":"NO_CODES","message":"no codes"}}') == []
    assert decoder.junk == 1 and "NO_CODES" in decoder.junk_reason
    tracked = UpbitDecoder(["BTC/KRW"])
    assert tracked.decode(TICKER.replace(b'"trade_price":32287000,', b"")) == []  # a required field
    assert tracked.junk == 1 and "trade_price" in tracked.junk_reason


def test_every_request_names_the_whole_set() -> None:
    decoder = UpbitDecoder(["BTC/KRW"])
    (first,) = decoder.subscribe(["BTC/KRW"])
    assert orjson.loads(first) == [
        {"ticket": "tickerd"},
        {"type": "ticker", "codes": ["KRW-BTC"]},
        {"type": "orderbook", "codes": ["KRW-BTC.1"]},
        {"format": "DEFAULT"},
    ]
    (added,) = decoder.subscribe(["ETH/BTC"])
    assert orjson.loads(added)[1]["codes"] == ["BTC-ETH", "KRW-BTC"]
    (removed,) = decoder.unsubscribe(["BTC/KRW"])
    assert orjson.loads(removed)[1:3] == [
        {"type": "ticker", "codes": ["BTC-ETH"]},
        {"type": "orderbook", "codes": ["BTC-ETH.1"]},
    ]
    assert decoder.decode(TICKER) == []  # no longer accepted
    assert decoder.unsubscribe(["ETH/BTC"]) == []  # Upbit refuses a request without codes


def test_manifest() -> None:
    adapter = exchanges.get("upbit")
    assert adapter.spot_only and not adapter.rejects_unknown
    assert adapter.keepalive is not None and adapter.keepalive.frame == "PING"
    assert adapter.keepalive.interval < 120.0  # Upbit's idle timeout
    with pytest.raises(ValueError, match="spot only"):
        adapter.check_symbol("BTC/KRW:KRW")
