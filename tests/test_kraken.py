"""Kraken v2 decoder on real frame shapes."""

from __future__ import annotations

import orjson

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.kraken import KrakenDecoder

TICKER = (
    '{"channel":"ticker","type":"snapshot","data":[{"symbol":"BTC/USD","bid":108359.8,'
    '"bid_qty":0.01362603,"ask":108359.9,"ask_qty":17.17988863,"last":108359.8,'
    '"volume":2158.32346723,"vwap":108894.5,"low":106824,"high":111300,"change":-2679.9,'
    '"change_pct":-2.41,"timestamp":"2022-12-25T09:30:59.123456Z"}]}'
)
STATUS = (
    '{"channel":"status","data":[{"api_version":"v2","connection_id":13834774380200032777,'
    '"system":"online","version":"2.0.0"}],"type":"update"}'
)


def decoder(*symbols: str) -> KrakenDecoder:
    return exchanges.get("kraken").decoder(symbols)  # type: ignore[return-value]


def test_ticker_frame_maps_every_field() -> None:
    [ticker] = decoder("BTC/USD").decode(TICKER)
    assert (ticker.exchange, ticker.symbol) == ("kraken", "BTC/USD")
    assert (ticker.last, ticker.bid, ticker.ask) == (108359.8, 108359.8, 108359.9)
    assert (ticker.bid_size, ticker.ask_size) == (0.01362603, 17.17988863)
    assert (ticker.volume_24h, ticker.high_24h, ticker.low_24h) == (2158.32346723, 111300.0, 106824.0)
    assert (ticker.change_24h, ticker.change_pct_24h) == (-2679.9, -2.41)
    assert ticker.exchange_ts == 1671960659.123456
    assert ticker.received_ts > 0


def test_ticker_without_timestamp_has_no_exchange_time() -> None:
    frame = TICKER.replace(',"timestamp":"2022-12-25T09:30:59.123456Z"', "")
    [ticker] = decoder("BTC/USD").decode(frame)
    assert ticker.exchange_ts is None


def test_untracked_symbol_is_dropped() -> None:
    assert decoder("ETH/USD").decode(TICKER) == []


def test_control_frames_give_nothing_and_are_not_junk() -> None:
    dec = decoder("BTC/USD")
    pong = '{"method":"pong","req_id":3,"time_in":"2022-12-25T09:30:59Z","time_out":"2022-12-25T09:30:59Z"}'
    for frame in (STATUS, '{"channel":"heartbeat"}', pong):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []


def test_junk_is_counted() -> None:
    dec = decoder("BTC/USD")
    for frame in ("not json", '{"channel":"ticker","data":[{"nosymbol":1}]}', '{"what":1}', b"\x00\xff"):
        assert dec.decode(frame) == []
    assert dec.junk == 4


def test_subscribe_frames_and_acks() -> None:
    dec = decoder()
    [frame] = dec.subscribe(["BTC/USD", "ETH/USD"])
    request = orjson.loads(frame)
    assert request["method"] == "subscribe"
    assert request["params"] == {
        "channel": "ticker",
        "symbol": ["BTC/USD", "ETH/USD"],
        "event_trigger": "bbo",
        "snapshot": True,
    }
    assert isinstance(request["req_id"], int)
    ack = {
        "method": "subscribe",
        "req_id": request["req_id"],
        "result": {"channel": "ticker", "snapshot": True, "symbol": "ETH/USD"},
        "success": True,
        "time_in": "x",
        "time_out": "y",
    }
    assert dec.decode(orjson.dumps(ack)) == []
    assert dec.events == [Subscribed("ETH/USD")]


def test_error_ack_rejects_only_the_named_symbol() -> None:
    dec = decoder()
    request = orjson.loads(dec.subscribe(["BTC/USD", "FOO/BAR"])[0])
    error = {
        "error": "Currency pair not supported FOO/BAR",
        "method": "subscribe",
        "req_id": request["req_id"],
        "success": False,
        "time_in": "x",
        "time_out": "y",
    }
    dec.decode(orjson.dumps(error))
    assert dec.events == [Rejected("FOO/BAR", "Currency pair not supported FOO/BAR")]
    dec.events.clear()
    dec.decode(orjson.dumps(error | {"symbol": "BTC/USD", "error": "Rate limit"}))
    assert dec.events == [Rejected("BTC/USD", "Rate limit")]


def test_unsubscribe_untracks() -> None:
    dec = decoder("BTC/USD")
    [frame] = dec.unsubscribe(["BTC/USD"])
    assert orjson.loads(frame)["method"] == "unsubscribe"
    assert dec.decode(TICKER) == []


# -- data sanity -----------------------------------------------------------------------------


def test_a_price_that_is_negative_or_zero_makes_the_frame_junk() -> None:
    dec = decoder("BTC/USD")
    for frame in (
        TICKER.replace('"bid":108359.8', '"bid":-1'),
        TICKER.replace('"last":108359.8', '"last":0'),
    ):
        assert dec.decode(frame) == []
    assert dec.junk == 2 and dec.junk_reason == "BTC/USD: last 0.0 is not a valid price"


def test_a_size_that_is_negative_makes_the_frame_junk() -> None:
    dec = decoder("BTC/USD")
    assert dec.decode(TICKER.replace('"ask_qty":17.17988863', '"ask_qty":-17')) == []
    assert dec.junk == 1


def test_a_ticker_without_a_field_of_the_full_schema_is_junk() -> None:
    """Snapshots and updates are full objects: one without ``bid`` (or with it null) must not
    overwrite the stored bid with null."""
    dec = decoder("BTC/USD")
    missing = TICKER.replace('"bid":108359.8,', "")
    assert dec.decode(missing) == [] and dec.junk_reason == "missing field 'bid'"
    assert dec.decode(TICKER.replace('"ask":108359.9', '"ask":null')) == []
    assert dec.junk == 2
    assert len(dec.decode(TICKER)) == 1  # a full one after them goes through
