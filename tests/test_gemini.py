"""Gemini: the l2 book kept whole, trades, rebuilds by resubscribing, control and junk frames."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, until
from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.gemini import GeminiDecoder, native
from tickerd.testing.gemini import FakeGemini

# The documentation's frames (Market Data v2, "Level 2 Data"): the initial response with its
# elisions ("...") left out, an update and a trade event.
SNAPSHOT = (
    '{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","9122.04","0.00121425"],'
    '["sell","9122.07","0.98942292"]],"trades":[{"type":"trade","symbol":"BTCUSD","eventid":169841458,'
    '"timestamp":1560976400428,"price":"9122.04","quantity":"0.0073173","side":"sell","tid":2840140800042677}]}'
)
UPDATE = '{"type":"l2_updates","symbol":"BTCUSD","changes":[["sell","9160.20","0.1921229751"]]}'
TRADE = (
    '{"type":"trade","symbol":"BTCUSD","event_id":3575573053,"timestamp":151231241,'
    '"price":"9004.21000000","quantity":"0.09110000","side":"buy","tid":2840140800042677}'
)
RESUBSCRIBE = [
    Reply('{"type":"unsubscribe","subscriptions":[{"name":"l2","symbols":["BTCUSD"]}]}'),
    Reply('{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["BTCUSD"]}]}'),
]


def decoder(*symbols: str) -> GeminiDecoder:
    dec = exchanges.get("gemini").decoder(symbols)
    assert isinstance(dec, GeminiDecoder)
    return dec


def changes(*levels: tuple[str, str, str]) -> str:
    return orjson.dumps({"type": "l2_updates", "symbol": "BTCUSD", "changes": levels}).decode()


def snapshotted() -> GeminiDecoder:
    """A BTC/USD decoder holding the documented snapshot; its events are drained."""
    dec = decoder("BTC/USD")
    dec.decode(SNAPSHOT)
    dec.events.clear()
    return dec


# -- decoder -------------------------------------------------------------------------------


def test_the_snapshot_gives_the_top_of_the_book_and_the_last_trade() -> None:
    dec = decoder("BTC/USD")
    [ticker] = dec.decode(SNAPSHOT)
    assert (ticker.exchange, ticker.symbol) == ("gemini", "BTC/USD")
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (
        9122.04,
        0.00121425,
        9122.07,
        0.98942292,
    )
    assert ticker.last == 9122.04 and ticker.exchange_ts is None
    assert ticker.volume_24h is None and ticker.sequence is None
    assert dec.events == [Subscribed("BTC/USD")]


def test_changes_and_trades_keep_the_rest_of_the_book() -> None:
    dec = snapshotted()
    [worse_ask] = dec.decode(UPDATE)
    assert (worse_ask.bid, worse_ask.ask, worse_ask.last) == (9122.04, 9122.07, 9122.04)  # not the best
    [trade] = dec.decode(TRADE)
    assert (trade.last, trade.bid, trade.ask) == (9004.21, 9122.04, 9122.07)
    assert trade.exchange_ts == pytest.approx(151231.241)  # ms
    [better] = dec.decode(changes(("buy", "9122.05", "2")))
    assert (better.bid, better.bid_size, better.last) == (9122.05, 2.0, 9004.21)
    assert dec.events == [] and dec.junk == 0 and dec.rebuilds == 0


def test_a_deleted_best_level_exposes_the_next_one() -> None:
    dec = snapshotted()
    dec.decode(changes(("buy", "9121.00", "3"), ("buy", "9120.00", "4"), ("sell", "9123.00", "5")))
    [ticker] = dec.decode(changes(("buy", "9122.04", "0")))
    assert (ticker.bid, ticker.bid_size) == (9121.0, 3.0)
    [ticker] = dec.decode(changes(("sell", "9122.07", "0.00000000"), ("buy", "9121.00", "0")))
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (9120.0, 4.0, 9123.0, 5.0)
    [ticker] = dec.decode(changes(("sell", "9123.00", "0")))
    assert (ticker.ask, ticker.ask_size) == (None, None)  # an empty side has no price
    [ticker] = dec.decode(changes(("buy", "9121.00", "0")))  # deleting a level it no longer has
    assert ticker.bid == 9120.0 and dec.junk == 0


def test_a_momentary_cross_is_written_and_counted() -> None:
    dec = snapshotted()
    [crossed] = dec.decode(changes(("buy", "9122.10", "1")))  # a buy through the ask, not yet matched
    assert (crossed.bid, crossed.ask) == (9122.1, 9122.07) and dec.crossed == 1
    [uncrossed] = dec.decode(changes(("sell", "9122.07", "0"), ("buy", "9122.10", "0")))
    assert (uncrossed.bid, uncrossed.ask) == (9122.04, None)
    assert dec.events == [] and dec.rebuilds == 0


def test_a_book_still_crossed_after_the_next_change_is_rebuilt_by_resubscribing() -> None:
    dec = snapshotted()
    assert len(dec.decode(changes(("buy", "9122.10", "1")))) == 1
    assert dec.decode(changes(("buy", "9122.20", "1"))) == []  # still crossed: no longer believed
    assert dec.events == RESUBSCRIBE and dec.rebuilds == 1
    assert dec.decode(UPDATE) == [] and dec.decode(TRADE) == []  # until the new snapshot
    assert dec.rebuilds == 1
    [ticker] = dec.decode(SNAPSHOT)
    assert (ticker.bid, ticker.ask, ticker.last) == (9122.04, 9122.07, 9122.04)
    assert dec.events == RESUBSCRIBE  # confirmed once, at the first snapshot
    assert dec.junk == 0


def test_changes_before_any_snapshot_ask_for_one() -> None:
    dec = decoder("BTC/USD")
    assert dec.decode(UPDATE) == [] and dec.decode(UPDATE) == []
    assert dec.events == RESUBSCRIBE  # asked once
    assert len(dec.decode(SNAPSHOT)) == 1


def test_an_insane_level_is_junk_and_the_book_is_rebuilt() -> None:
    dec = snapshotted()
    assert dec.decode(changes(("sell", "9160.20", "1"), ("buy", "-1", "2"))) == []
    assert dec.junk == 1 and dec.junk_reason == "BTC/USD: bid -1.0 is not a valid price"
    assert dec.events == RESUBSCRIBE
    dec.decode(SNAPSHOT)
    assert dec.decode(changes(("sell", "9130", "NaN"))) == []
    assert dec.junk_reason == "BTC/USD: ask_size nan is not a valid amount"
    dec.decode(SNAPSHOT)
    malformed = '{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","9122.00"]]}'
    assert dec.decode(malformed) == []  # a change without its quantity
    assert dec.junk == 3 and dec.rebuilds == 3


def test_an_insane_trade_is_junk_and_the_last_price_stays() -> None:
    dec = snapshotted()
    assert dec.decode(TRADE.replace('"9004.21000000"', '"0"')) == []
    assert dec.junk == 1
    [ticker] = dec.decode(UPDATE)
    assert ticker.last == 9122.04


def test_untracked_symbols_heartbeats_and_junk() -> None:
    dec = decoder("ETH/USD")
    assert dec.decode(SNAPSHOT) == [] and dec.decode(TRADE) == [] and dec.decode(UPDATE) == []
    assert dec.decode('{"type":"heartbeat","timestamp":1593468532123}') == []
    assert dec.junk == 0 and dec.events == []
    for frame in ("not json", b"\xff", '{"type":"l2_updates"}', '{"x":1}'):
        assert dec.decode(frame) == []
    assert dec.junk == 4


def test_subscribe_and_unsubscribe_frames_are_the_documented_ones() -> None:
    dec = decoder()
    assert [orjson.loads(f) for f in dec.subscribe(["BTC/USD", "ETH/BTC"])] == [
        {"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": ["BTCUSD", "ETHBTC"]}]}
    ]
    assert [orjson.loads(f) for f in dec.unsubscribe(["ETH/BTC"])] == [
        {"type": "unsubscribe", "subscriptions": [{"name": "l2", "symbols": ["ETHBTC"]}]}
    ]
    assert len(dec.subscribe([f"A{i}/USD" for i in range(45)])) == 3


def test_an_error_naming_a_symbol_rejects_it() -> None:
    dec = decoder("BTC/USD", "FOO/USD")
    dec.decode(SNAPSHOT)
    assert dec.decode('{"result":"error","reason":"InvalidSymbol","message":"Invalid symbol FOOUSD"}') == []
    assert dec.decode('{"result":"error","reason":"Other","message":"BTCUSD"}') == []  # served already
    assert dec.events == [Subscribed("BTC/USD"), Rejected("FOO/USD", "InvalidSymbol: Invalid symbol FOOUSD")]
    assert dec.junk == 0


def test_levels_coming_and_going_deep_in_the_book_do_not_grow_it() -> None:
    dec = snapshotted()
    for i in range(2000):
        price = f"{9000 - i % 7}"
        dec.decode(changes(("buy", price, "1"), ("buy", price, "0")))
    book = dec._books["BTCUSD"]
    assert len(book.bids.heap) <= 2 * len(book.bids.levels) + 65
    [ticker] = dec.decode(UPDATE)
    assert ticker.bid == 9122.04


def test_symbol_forms() -> None:
    assert native("BTC/USD") == "BTCUSD" and native("ETH/BTC") == "ETHBTC"
    adapter = exchanges.get("gemini")
    adapter.check_symbol("ETH/USD")
    with pytest.raises(ValueError, match="spot only"):
        adapter.check_symbol("BTC/USD:USD")


# -- through the daemon --------------------------------------------------------------------


async def test_a_crossed_book_is_rebuilt_through_the_feed(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    fake = await start_fake(nursery, FakeGemini())
    config = make_config(prefix, {"gemini": fake}, {"gemini": ["BTC/USD"]})
    await start_daemon(nursery, config)
    await until(fake, lambda: fake.is_subscribed("BTC/USD"))
    subscribes = sum(1 for m in fake.received if m.get("type") == "subscribe")
    ask = fake.state("BTC/USD")["ask"]
    await fake.send_changes("BTC/USD", [("buy", f"{ask + 1}", "1")])
    await fake.send_changes("BTC/USD", [("buy", f"{ask + 2}", "1")])
    await until(fake, lambda: sum(1 for m in fake.received if m.get("type") == "subscribe") > subscribes)
    assert [m["type"] for m in fake.received[-2:]] == ["unsubscribe", "subscribe"]
    assert fake.is_subscribed("BTC/USD") and fake.connection_count == 1
    clock.autojump_threshold, clock.rate = float("inf"), 1.0
    bid = round(ask * 0.9, 2)
    await fake.push("BTC/USD", bid=bid, ask=bid + 1)
    # Without the rebuild the crossed bids above the ask would still top the book.
    record = await updates.wait_for(lambda r: r["symbol"] == "BTC/USD" and r["ask"] == bid + 1)
    assert record["bid"] == bid
    assert fake.violations == []
