"""Bybit v5: decoder on real frame shapes, request refusals, the category endpoints and symbol forms."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.bybit import BybitDecoder, native

PERP = "BTC/USDT:USDT"
SPOT = "BTC/USDT"
INVERSE = "BTC/USD:BTC"
INVERSE_FUTURE = "BTC/USD:BTC-261225"

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
# The docs' inverse ticker (v5/market/tickers, REST) in the websocket topic's shape: the REST
# answer has the same fields, no ``cs``, and its ``time`` is the frame's ``ts`` here.
INVERSE_SNAPSHOT = (
    '{"topic":"tickers.BTCUSD","type":"snapshot","data":{"symbol":"BTCUSD","lastPrice":"16597.00",'
    '"indexPrice":"16598.54","markPrice":"16596.00","prevPrice24h":"16464.50","price24hPcnt":"0.008047",'
    '"highPrice24h":"30912.50","lowPrice24h":"15700.00","prevPrice1h":"16595.50","openInterest":"373504107",'
    '"openInterestValue":"22505.67","turnover24h":"2352.94950046","volume24h":"49337318",'
    '"fundingRate":"-0.001034","nextFundingTime":"1672387200000","predictedDeliveryPrice":"","basisRate":"",'
    '"deliveryFeeRate":"","deliveryTime":"0","ask1Size":"1","bid1Price":"16596.00","ask1Price":"16597.50",'
    '"bid1Size":"1"},"ts":1672376496682}'
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
    assert (ticker.mark_price, ticker.index_price) == (17217.33, 17227.36)
    assert (ticker.funding_rate, ticker.next_funding_ts) == (-0.000212, 1673280000.0)  # a fraction; s
    assert ticker.open_interest == 68744.761  # in BTC: openInterestValue / markPrice
    assert ticker.sequence == 24987956059  # cs, the cross sequence


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
    # The delta carries no derivative field: each keeps the snapshot's value.
    assert (ticker.mark_price, ticker.index_price, ticker.funding_rate) == (17217.33, 17227.36, -0.000212)
    assert (ticker.next_funding_ts, ticker.open_interest) == (1673280000.0, 68744.761)
    assert ticker.sequence == 24987956060


def test_a_delta_of_derivative_fields_moves_only_them() -> None:
    dec = decoder(PERP)
    dec.decode(LINEAR_SNAPSHOT)
    [ticker] = dec.decode(
        LINEAR_DELTA.replace(
            '"bid1Price":"17215.00","bid1Size":"2.12"',
            '"markPrice":"17218.10","fundingRate":"0.0001","openInterest":"0"',
        )
    )
    assert (ticker.mark_price, ticker.funding_rate, ticker.open_interest) == (17218.1, 0.0001, 0.0)
    assert (ticker.index_price, ticker.bid, ticker.last) == (17227.36, 17215.5, 17216.0)


def test_inverse_ticker_counts_contracts_and_takes_the_base_volume() -> None:
    [ticker] = decoder(INVERSE).decode(INVERSE_SNAPSHOT)
    assert (ticker.symbol, ticker.last, ticker.bid, ticker.ask) == (INVERSE, 16597.0, 16596.0, 16597.5)
    assert (ticker.bid_size, ticker.ask_size) == (1.0, 1.0)  # contracts of 1 USD
    assert ticker.volume_24h == 2352.94950046  # turnover24h, in BTC; volume24h counts USD contracts
    assert (ticker.mark_price, ticker.index_price) == (16596.0, 16598.54)
    assert (ticker.funding_rate, ticker.next_funding_ts) == (-0.001034, 1672387200.0)
    assert ticker.open_interest == 373504107.0  # contracts of 1 USD: 22505.67 BTC of value
    assert ticker.sequence is None  # this frame carries no cs


def test_a_dated_future_has_no_funding() -> None:
    """Futures pay no funding: Bybit leaves the fields empty, and they stay null."""
    frame = INVERSE_SNAPSHOT.replace("BTCUSD", "BTCUSDZ26").replace(
        '"fundingRate":"-0.001034","nextFundingTime":"1672387200000"',
        '"fundingRate":"","nextFundingTime":"0"',
    )
    [ticker] = decoder(INVERSE_FUTURE).decode(frame)
    assert (ticker.symbol, ticker.mark_price, ticker.open_interest) == (INVERSE_FUTURE, 16596.0, 373504107.0)
    assert (ticker.funding_rate, ticker.next_funding_ts) == (None, None)


def test_delta_before_any_snapshot_is_dropped_not_junk() -> None:
    dec = decoder(PERP)
    assert dec.decode(LINEAR_DELTA) == []
    assert dec.junk == 0


def test_spot_ticker_and_level1_book_merge_into_one_ticker() -> None:
    dec = decoder(SPOT)
    [stats] = dec.decode(SPOT_TICKER)
    assert (stats.symbol, stats.last, stats.bid, stats.ask) == (SPOT, 16363.78, None, None)
    assert stats.sequence is None  # spot's sequence is the book's
    [ticker] = dec.decode(SPOT_BOOK)
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (16363.7, 0.006, 16363.8, 0.029)
    assert (ticker.last, ticker.volume_24h, ticker.change_pct_24h) == (16363.78, 5865.470182, -0.49)
    assert ticker.change_24h == pytest.approx(-79.88)
    assert ticker.exchange_ts == 1672305380.612
    assert ticker.sequence == 7961638724  # seq, the book's cross sequence
    assert (ticker.mark_price, ticker.funding_rate, ticker.open_interest) == (None, None, None)
    [again] = dec.decode(SPOT_TICKER)  # a new stats snapshot keeps the book's prices
    assert (again.bid, again.ask, again.sequence) == (16363.7, 16363.8, 7961638724)


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
    assert bybit.endpoint(bybit.url, INVERSE) == "wss://stream.bybit.com/v5/public/inverse"
    assert bybit.endpoint(bybit.url, INVERSE_FUTURE).endswith("/v5/public/inverse")
    assert bybit.endpoint(bybit.url, "BTC/USDC:USDC-261225").endswith("/v5/public/linear")
    assert bybit.endpoint("ws://127.0.0.1:9/v5/public/", PERP) == "ws://127.0.0.1:9/v5/public/linear"
    assert bybit.endpoint("wss://stream.bybit.com/v5/public/spot", PERP).endswith("/v5/public/linear")
    assert bybit.endpoint("wss://stream.bybit.com/v5/public/inverse", SPOT).endswith("/v5/public/spot")


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        (SPOT, "BTCUSDT"),
        (PERP, "BTCUSDT"),
        ("BTC/USDT:USDT-261225", "BTCUSDT-25DEC26"),
        ("ETH/USDT:USDT-270305", "ETHUSDT-05MAR27"),
        ("BTC/USDC:USDC", "BTCPERP"),
        ("BTC/USDC:USDC-261225", "BTC-25DEC26"),
        (INVERSE, "BTCUSD"),
        (INVERSE_FUTURE, "BTCUSDZ26"),
        ("ETH/USD:ETH-270326", "ETHUSDH27"),
    ],
)
def test_native_names_follow_bybits_symbol_list(symbol: str, name: str) -> None:
    exchanges.get("bybit").check_symbol(symbol)
    assert native(symbol) == name
    [frame] = decoder().subscribe([symbol])
    assert orjson.loads(frame)["args"][0] == f"tickers.{name}"


@pytest.mark.parametrize(
    "bad",
    ["BTC/USDT:BTC", "BTC/EUR:EUR", "BTC/USD:USD", "ETH/BTC:BTC", "BTC/USD:BTC-261127", "BTCUSDT"],
)
def test_unserved_forms_are_refused_naming_the_served_ones(bad: str) -> None:
    with pytest.raises(ValueError, match="BASE/"):
        exchanges.get("bybit").check_symbol(bad)


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


def test_an_insane_derivative_field_is_junk_and_a_negative_funding_rate_is_not() -> None:
    dec = decoder(PERP)
    dec.decode(LINEAR_SNAPSHOT)
    for field in ('"markPrice":"-1"', '"indexPrice":"0"', '"openInterest":"-5"', '"fundingRate":"NaN"'):
        assert dec.decode(LINEAR_DELTA.replace('"bid1Price":"17215.00"', field)) == []
    assert dec.junk == 4 and dec.junk_reason == "BTC/USDT:USDT: funding_rate nan is not a valid rate"
    [ticker] = dec.decode(LINEAR_DELTA.replace('"bid1Price":"17215.00"', '"fundingRate":"-0.0375"'))
    assert (ticker.funding_rate, ticker.mark_price, ticker.open_interest) == (-0.0375, 17217.33, 68744.761)
