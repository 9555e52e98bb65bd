"""Coinbase Advanced Trade: decoder on real frame shapes, acks, USDC products."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.coinbase import CoinbaseDecoder, native, unified, usd_twin

# The ticker frame from Coinbase's docs (via ccxt), and frames captured from the live feed.
SNAPSHOT = (
    '{"channel":"ticker","client_id":"","timestamp":"2023-02-09T20:30:37.167359596Z","sequence_num":0,'
    '"events":[{"type":"snapshot","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"21932.98",'
    '"volume_24_h":"16038.28770938","low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460",'
    '"high_52_w":"48240","price_percent_chg_24_h":"-4.15775596190603","best_bid":"21835.29",'
    '"best_bid_quantity":"0.02000000","best_ask":"23011.18","best_ask_quantity":"0.01500000"}]}]}'
)
HEARTBEAT = (
    '{"channel":"heartbeats","timestamp":"2026-09-05T22:10:30.260465255Z","sequence_num":4,"events":[{'
    '"current_time":"2026-09-05 22:10:30.25788961 +0000 UTC m=+139651.272674714",'
    '"heartbeat_counter":139651}]}'
)


def ack(*product_ids: str, heartbeats: bool = False) -> str:
    subscriptions: dict[str, list[str]] = {"ticker": list(product_ids)} if product_ids else {}
    if heartbeats:
        subscriptions["heartbeats"] = ["heartbeats"]
    return orjson.dumps(
        {
            "channel": "subscriptions",
            "client_id": "",
            "timestamp": "2026-09-05T22:10:29.562097895Z",
            "sequence_num": 2,
            "events": [{"subscriptions": subscriptions}],
        }
    ).decode()


#: Every field of a ticker object (each is required); tests override some.
FULL = {
    "type": "ticker",
    "price": "100",
    "volume_24_h": "5",
    "low_24_h": "90",
    "high_24_h": "110",
    "price_percent_chg_24_h": "1.5",
    "best_bid": "99",
    "best_bid_quantity": "2",
    "best_ask": "101",
    "best_ask_quantity": "3",
}


def update(*items: dict[str, str]) -> str:
    tickers = [FULL | i for i in items]
    return orjson.dumps(
        {
            "channel": "ticker",
            "client_id": "",
            "timestamp": "2026-09-05T21:52:10.940239371Z",
            "sequence_num": 91,
            "events": [{"type": "update", "tickers": tickers}],
        }
    ).decode()


def decoder(*symbols: str) -> CoinbaseDecoder:
    dec = exchanges.get("coinbase").decoder(symbols)
    assert isinstance(dec, CoinbaseDecoder)
    return dec


# -- decoder -------------------------------------------------------------------------------


def test_ticker_frame_maps_every_field() -> None:
    [ticker] = decoder("BTC/USD").decode(SNAPSHOT)
    assert (ticker.exchange, ticker.symbol) == ("coinbase", "BTC/USD")
    assert (ticker.last, ticker.bid, ticker.ask) == (21932.98, 21835.29, 23011.18)
    assert (ticker.bid_size, ticker.ask_size) == (0.02, 0.015)
    assert (ticker.volume_24h, ticker.high_24h, ticker.low_24h) == (16038.28770938, 23011.18, 21835.29)
    assert ticker.change_pct_24h == -4.15775596190603
    assert ticker.change_24h is None  # Coinbase sends only the relative change
    assert ticker.exchange_ts == pytest.approx(1675974637.167359596, abs=1e-6)  # nanoseconds parsed
    assert ticker.received_ts > 0


def test_every_ticker_of_a_frame_is_routed_by_its_own_product() -> None:
    frame = update({"product_id": "BTC-USD", "price": "1"}, {"product_id": "ETH-USD", "price": "2"})
    tickers = decoder("BTC/USD", "ETH/USD").decode(frame)
    assert [(t.symbol, t.last) for t in tickers] == [("BTC/USD", 1.0), ("ETH/USD", 2.0)]
    assert [t.symbol for t in decoder("ETH/USD").decode(frame)] == ["ETH/USD"]  # untracked dropped


def test_empty_ticker_is_skipped_without_counting_junk() -> None:
    dec = decoder("BTC/USD")
    empty = {k: "" for k in ("product_id", "price", "best_bid", "best_ask", "volume_24_h")}
    assert dec.decode(update(empty)) == []
    assert dec.junk == 0


def test_usdc_symbols_receive_the_data_labelled_usd() -> None:
    [ticker] = decoder("BTC/USDC").decode(update({"product_id": "BTC-USD"}))
    assert ticker.symbol == "BTC/USDC"
    both = decoder("BTC/USD", "BTC/USDC").decode(update({"product_id": "BTC-USD"}))
    assert sorted(t.symbol for t in both) == ["BTC/USD", "BTC/USDC"]
    # should Coinbase ever label it with the id that was asked for, it still arrives
    assert [t.symbol for t in decoder("BTC/USDC").decode(update({"product_id": "BTC-USDC"}))] == ["BTC/USDC"]
    # USDT-USDC is a market of its own: USDT-USD data is not its data
    assert decoder("USDT/USDC").decode(update({"product_id": "USDT-USD"})) == []


def test_symbol_mapping_both_ways() -> None:
    assert native("BTC/USD") == "BTC-USD" and unified("BTC-USD") == "BTC/USD"
    assert unified(native("SHIB/USDC")) == "SHIB/USDC"
    assert usd_twin("BTC-USDC") == "BTC-USD"
    assert usd_twin("BTC-USD") is None and usd_twin("EURC-USDC") is None


def test_control_frames_give_nothing_and_are_not_junk() -> None:
    dec = decoder("BTC/USD")
    for frame in (HEARTBEAT, ack("BTC-USD"), ack("BTC-USD", heartbeats=True)):
        assert dec.decode(frame) == []
    assert dec.junk == 0


def test_junk_is_counted() -> None:
    dec = decoder("BTC/USD")
    for frame in ("not json", b"\x00\xff", '{"channel":"ticker","events":[{"tickers":[{}]}]}', '{"what":1}'):
        assert dec.decode(frame) == []
    assert dec.junk == 4


def test_subscribe_frames_one_channel_each_ticker_first_heartbeats_once() -> None:
    dec = decoder()
    first = [orjson.loads(f) for f in dec.subscribe(["BTC/USD", "ETH/USDC"])]
    assert first == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USDC"], "channel": "ticker"},
        {"type": "subscribe", "product_ids": [], "channel": "heartbeats"},
    ]
    later = [orjson.loads(f) for f in dec.subscribe(["SOL/USD"])]
    assert later == [{"type": "subscribe", "product_ids": ["SOL-USD"], "channel": "ticker"}]
    many = dec.subscribe([f"C{i}/USD" for i in range(250)])
    assert [len(orjson.loads(f)["product_ids"]) for f in many] == [100, 100, 50]
    [unsub] = [orjson.loads(f) for f in dec.unsubscribe(["SOL/USD"])]
    assert unsub == {"type": "unsubscribe", "product_ids": ["SOL-USD"], "channel": "ticker"}


def test_a_product_left_out_of_its_ack_is_rejected_the_others_confirmed() -> None:
    dec = decoder()
    dec.subscribe(["BTC/USD", "FOO/USD", "ETH/USDC"])
    assert dec.decode(ack("BTC-USD", "ETH-USD")) == []  # the ack of the ticker request
    assert dec.events == [
        Subscribed("BTC/USD"),
        Rejected("FOO/USD", "FOO-USD is not a Coinbase product"),
        Subscribed("ETH/USDC"),
    ]
    dec.events.clear()
    dec.decode(ack("BTC-USD", "ETH-USD", heartbeats=True))
    assert dec.events == []  # already judged


def test_an_earlier_ack_does_not_judge_a_later_request() -> None:
    dec = decoder()
    dec.subscribe(["BTC/USD"])  # requests 1 (ticker) and 2 (heartbeats)
    dec.subscribe(["ETH/USD"])  # request 3
    dec.decode(ack("BTC-USD"))
    dec.decode(ack("BTC-USD", heartbeats=True))
    assert dec.events == [Subscribed("BTC/USD")]  # ETH/USD is not judged by acks 1 and 2
    dec.decode(ack("BTC-USD", "ETH-USD", heartbeats=True))
    assert dec.events[-1] == Subscribed("ETH/USD")


def test_an_error_naming_a_product_rejects_only_that_symbol() -> None:
    dec = decoder()
    dec.subscribe(["BTC/USD", "FOO/USD"])
    error = '{"type":"error","message":"Failed to subscribe","reason":"FOO-USD is not a valid product"}'
    assert dec.decode(error) == []
    assert dec.events == [Rejected("FOO/USD", "Failed to subscribe FOO-USD is not a valid product")]
    assert dec.junk == 0


def test_perpetuals_are_refused_with_the_expected_form() -> None:
    adapter = exchanges.get("coinbase")
    adapter.check_symbol("BTC/USD")
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        adapter.check_symbol("BTC/USDC:USDC")


# -- data sanity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("best_bid", "-1"), ("best_ask", "0"), ("price", "NaN"), ("best_ask_quantity", "-2")]
)
def test_an_insane_number_makes_the_frame_junk(field: str, value: str) -> None:
    dec = decoder("BTC/USD")
    assert dec.decode(update({"product_id": "BTC-USD", field: value})) == [] and dec.junk == 1


@pytest.mark.parametrize("field", sorted(set(FULL) - {"type"}))
def test_a_ticker_without_a_field_is_junk(field: str) -> None:
    """Each ticker object is complete: one without ``best_bid`` must not null the stored bid."""
    dec = decoder("BTC/USD")
    item = {"product_id": "BTC-USD"} | {k: v for k, v in FULL.items() if k != field}
    frame = orjson.loads(update())
    frame["events"][0]["tickers"] = [item]
    assert dec.decode(orjson.dumps(frame)) == [] and dec.junk == 1
    assert dec.junk_reason == f"missing field '{field}'"
