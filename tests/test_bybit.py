"""Bybit v5: decoder on real frame shapes, request refusals, the category endpoints."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.bybit import BybitDecoder

PERP = "BTC/USDT:USDT"
SPOT = "BTC/USDT"

# Real frames (Bybit v5 docs and ccxt, per the protocol reference).
LINEAR_SNAPSHOT = (
    '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","tickDirection":"PlusTick",'
    '"price24hPcnt":"0.017103","lastPrice":"17216.00","prevPrice24h":"16926.50","highPrice24h":"17281.50",'
    '"lowPrice24h":"16915.00","prevPrice1h":"17238.00","markPrice":"17217.33","indexPrice":"17227.36",'
    '"openInterest":"68744.761","openInterestValue":"1183601235.91","turnover24h":"1570383121.943499",'
    '"volume24h":"91705.276","nextFundingTime":"1673280000000","fundingRate":"-0.000212",'
    '"bid1Price":"17215.50","bid1Size":"84.489","ask1Price":"17216.00","ask1Size":"83.020"},'
    '"cs":24987956059,"ts":1673272861686}'
)
LINEAR_DELTA = (
    '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","bid1Price":"17215.00",'
    '"bid1Size":"2.12"},"cs":24987956060,"ts":1673272861786}'
)
SPOT_TICKER = (
    '{"topic":"tickers.BTCUSDT","ts":1672305380595,"type":"snapshot","cs":496622841,"data":{"symbol":"BTCUSDT",'
    '"lastPrice":"16363.78","highPrice24h":"16566.64","lowPrice24h":"16009.19","prevPrice24h":"16443.66",'
    '"volume24h":"5865.470182","turnover24h":"95949815.680875","price24hPcnt":"-0.0049"}}'
)
SPOT_BOOK = (
    '{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1672305380612,"data":{"s":"BTCUSDT",'
    '"b":[["16363.70","0.006"]],"a":[["16363.80","0.029"]],"u":18521288,"seq":7961638724},"cts":1672305380610}'
)
PONG = '{"success":true,"ret_msg":"pong","conn_id":"cejreassvfrsfvb9v1a0-2m","req_id":"","op":"ping"}'
OLD_PONG = '{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e","request":{"op":"ping","args":null}}'


def decoder(*symbols: str) -> BybitDecoder:
    return exchanges.get("bybit").decoder(symbols)  # type: ignore[return-value]


def ack(req_id: str, *, ok: bool = True, ret_msg: str = "") -> str:
    return orjson.dumps(
        {"success": ok, "ret_msg": ret_msg, "conn_id": "c1", "req_id": req_id, "op": "subscribe"}
    ).decode()


# -- decoder ---------------------------------------------------------------------------------


def test_linear_snapshot_maps_every_field() -> None:
    [ticker] = decoder(PERP).decode(LINEAR_SNAPSHOT)
    assert (ticker.exchange, ticker.symbol) == ("bybit", PERP)
    assert (ticker.last, ticker.bid, ticker.ask) == (17216.0, 17215.5, 17216.0)
    assert (ticker.bid_size, ticker.ask_size) == (84.489, 83.02)
    assert (ticker.volume_24h, ticker.high_24h, ticker.low_24h) == (91705.276, 17281.5, 16915.0)
    assert (ticker.change_24h, ticker.change_pct_24h) == (289.5, 1.7103)  # percent, not fraction
    assert ticker.exchange_ts == 1673272861.686


def test_linear_delta_overlays_the_snapshot() -> None:
    dec = decoder(PERP)
    dec.decode(LINEAR_SNAPSHOT)
    [ticker] = dec.decode(LINEAR_DELTA)
    assert (ticker.bid, ticker.bid_size) == (17215.0, 2.12)
    assert (ticker.last, ticker.ask, ticker.ask_size, ticker.volume_24h) == (
        17216.0,
        17216.0,
        83.02,
        91705.276,
    )
    assert ticker.exchange_ts == 1673272861.786


def test_delta_before_any_snapshot_is_dropped_not_junk() -> None:
    dec = decoder(PERP)
    assert dec.decode(LINEAR_DELTA) == []
    assert dec.junk == 0


def test_spot_ticker_and_level1_book_merge_into_one_ticker() -> None:
    dec = decoder(SPOT)
    [stats] = dec.decode(SPOT_TICKER)
    assert (stats.symbol, stats.last, stats.bid, stats.ask) == (SPOT, 16363.78, None, None)
    [ticker] = dec.decode(SPOT_BOOK)
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (16363.7, 0.006, 16363.8, 0.029)
    assert (ticker.last, ticker.volume_24h, ticker.change_pct_24h) == (16363.78, 5865.470182, -0.49)
    assert ticker.change_24h == pytest.approx(-79.88)
    assert ticker.exchange_ts == 1672305380.612
    [again] = dec.decode(SPOT_TICKER)  # a new stats snapshot keeps the book's prices
    assert (again.bid, again.ask) == (16363.7, 16363.8)


def test_untracked_symbols_are_dropped() -> None:
    dec = decoder("ETH/USDT:USDT")
    assert dec.decode(LINEAR_SNAPSHOT) == [] and dec.decode(SPOT_BOOK) == []
    assert dec.junk == 0


def test_control_frames_give_nothing_and_junk_is_counted() -> None:
    dec = decoder(PERP)
    unsub = '{"success":true,"ret_msg":"","conn_id":"c1","req_id":"9","op":"unsubscribe"}'
    for frame in (PONG, OLD_PONG, unsub):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []
    for junk in (
        "pong",
        '{"topic":"kline.1.BTCUSDT","data":[]}',
        '{"what":1}',
        b"\x00",
        LINEAR_SNAPSHOT[:-9],
    ):
        assert dec.decode(junk) == []
    assert dec.junk == 5


def test_subscribe_requests_hold_at_most_ten_topics_and_keep_a_symbols_topics_together() -> None:
    spot = [f"C{i}/USDT" for i in range(12)]
    frames = [orjson.loads(f) for f in decoder().subscribe(spot)]
    assert [len(f["args"]) for f in frames] == [10, 10, 4]
    assert frames[0]["args"][:2] == ["tickers.C0USDT", "orderbook.1.C0USDT"]
    assert len({f["req_id"] for f in frames}) == 3 and {f["op"] for f in frames} == {"subscribe"}
    perps = [f"C{i}/USDT:USDT" for i in range(12)]
    linear = [orjson.loads(f) for f in decoder().subscribe(perps)]
    assert [f["args"][0] for f in linear] == ["tickers.C0USDT", "tickers.C10USDT"]
    [unsub] = [orjson.loads(f) for f in decoder(PERP).unsubscribe([PERP])]
    assert (unsub["op"], unsub["args"]) == ("unsubscribe", ["tickers.BTCUSDT"])


def test_ack_confirms_the_symbols_of_its_request() -> None:
    dec = decoder()
    [frame] = dec.subscribe([PERP, "ETH/USDT:USDT"])
    dec.decode(ack(orjson.loads(frame)["req_id"]))
    assert dec.events == [Subscribed(PERP), Subscribed("ETH/USDT:USDT")]


def test_refused_request_rejects_the_named_symbol_and_resends_the_others() -> None:
    dec = decoder()
    [frame] = dec.subscribe([PERP, "XXX/USDT:USDT", "ETH/USDT:USDT"])
    assert (
        dec.decode(ack(orjson.loads(frame)["req_id"], ok=False, ret_msg="Invalid symbol :[tickers.XXXUSDT]"))
        == []
    )
    rejected, retry = dec.events
    assert rejected == Rejected("XXX/USDT:USDT", "Invalid symbol :[tickers.XXXUSDT]")
    assert isinstance(retry, Reply)
    resent = orjson.loads(retry.frame)
    assert resent["args"] == ["tickers.BTCUSDT", "tickers.ETHUSDT"]
    dec.events.clear()
    dec.decode(ack(resent["req_id"]))
    assert dec.events == [Subscribed(PERP), Subscribed("ETH/USDT:USDT")]


def test_already_subscribed_counts_as_confirmed() -> None:
    dec = decoder()
    [frame] = dec.subscribe([SPOT])
    msg = "error:already subscribed,topic:tickers.BTCUSDT"
    dec.decode(ack(orjson.loads(frame)["req_id"], ok=False, ret_msg=msg))
    assert dec.events == [Subscribed(SPOT)]


def test_refusal_naming_no_symbol_is_retried_one_by_one() -> None:
    dec = decoder()
    [frame] = dec.subscribe([PERP, "ETH/USDT:USDT"])
    dec.decode(ack(orjson.loads(frame)["req_id"], ok=False, ret_msg="Params Error"))
    retries = [orjson.loads(e.frame)["args"] for e in dec.events if isinstance(e, Reply)]
    assert retries == [["tickers.BTCUSDT"], ["tickers.ETHUSDT"]]
    dec.events.clear()
    [single] = dec.subscribe(["SOL/USDT:USDT"])
    dec.decode(ack(orjson.loads(single)["req_id"], ok=False, ret_msg="Params Error"))
    assert dec.events == [Rejected("SOL/USDT:USDT", "Params Error")]


def test_symbols_go_to_their_category_url() -> None:
    bybit = exchanges.get("bybit")
    assert bybit.endpoint(bybit.url, SPOT) == "wss://stream.bybit.com/v5/public/spot"
    assert bybit.endpoint(bybit.url, PERP) == "wss://stream.bybit.com/v5/public/linear"
    assert bybit.endpoint("ws://127.0.0.1:9/v5/public/", PERP) == "ws://127.0.0.1:9/v5/public/linear"
    assert bybit.endpoint("wss://stream.bybit.com/v5/public/spot", PERP).endswith("/v5/public/linear")
    bybit.check_symbol(SPOT)
    bybit.check_symbol(PERP)
    for bad in ("BTC/USD:BTC", "BTC/USDC:USDC", "BTCUSDT"):
        with pytest.raises(ValueError, match="BASE/"):
            bybit.check_symbol(bad)


# -- data sanity -----------------------------------------------------------------------------


def test_a_delta_keeps_every_field_it_lacks() -> None:
    """Deltas are partial by design: a field missing from one keeps its snapshot value."""
    dec = decoder(PERP)
    dec.decode(LINEAR_SNAPSHOT)
    [ticker] = dec.decode(
        LINEAR_DELTA.replace('"bid1Price":"17215.00","bid1Size":"2.12"', '"lastPrice":"17300"')
    )
    assert (ticker.last, ticker.bid, ticker.bid_size, ticker.ask) == (17300.0, 17215.5, 84.489, 17216.0)
    assert ticker.volume_24h == 91705.276 and dec.junk == 0


def test_an_insane_delta_is_junk_and_the_merged_view_stays() -> None:
    dec = decoder(PERP)
    dec.decode(LINEAR_SNAPSHOT)
    assert dec.decode(LINEAR_DELTA.replace('"17215.00"', '"-1"')) == []
    assert dec.decode(LINEAR_DELTA.replace('"2.12"', '"-2.12"')) == []
    assert dec.decode(LINEAR_DELTA.replace('"17215.00"', '"NaN"')) == []
    assert dec.junk == 3 and dec.junk_reason == "BTC/USDT:USDT: bid nan is not a valid price"
    [ticker] = dec.decode(LINEAR_DELTA.replace('"bid1Price":"17215.00","bid1Size":"2.12"', '"ask1Size":"9"'))
    assert (ticker.bid, ticker.bid_size, ticker.ask_size) == (17215.5, 84.489, 9.0)  # the snapshot's


def test_a_snapshot_without_a_field_is_junk() -> None:
    """Snapshots are complete: one without ``lastPrice`` (linear: or ``bid1Price``) is junk and
    is not kept as the base deltas build on."""
    dec = decoder(PERP)
    assert dec.decode(LINEAR_SNAPSHOT.replace('"lastPrice":"17216.00",', "")) == []
    assert dec.decode(LINEAR_SNAPSHOT.replace('"bid1Price":"17215.50",', "")) == []
    assert dec.junk == 2 and dec.junk_reason == "missing field 'bid1Price'"
    assert dec.decode(LINEAR_DELTA) == [] and dec.junk == 2  # no snapshot to overlay yet
    spot = decoder(SPOT)
    assert spot.decode(SPOT_TICKER.replace('"volume24h":"5865.470182",', "")) == [] and spot.junk == 1


def test_an_insane_spot_book_is_junk_and_the_book_stays() -> None:
    dec = decoder(SPOT)
    dec.decode(SPOT_TICKER)
    dec.decode(SPOT_BOOK)
    assert dec.decode(SPOT_BOOK.replace('"16363.80"', '"0"')) == []
    assert dec.decode(SPOT_BOOK.replace(',"a":[["16363.80","0.029"]]', "")) == []
    assert dec.junk == 2
    [ticker] = dec.decode(SPOT_TICKER)
    assert (ticker.bid, ticker.ask, ticker.last) == (16363.7, 16363.8, 16363.78)
