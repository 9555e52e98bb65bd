"""Hyperliquid: ``bbo`` + ``activeAssetCtx`` decoding on real frame shapes, derivative fields,
coin forms."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.hyperliquid import HyperliquidDecoder, coin_of, unified

BTC = "BTC/USDC:USDC"
#: Shape of the official SDK's ``BboData``; ``bbo`` is ``[best bid, best ask]``, ``time`` in ms.
BBO = (
    '{"channel":"bbo","data":{"coin":"BTC","time":1754450974231,'
    '"bbo":[{"px":"113373.0","sz":"7.6699","n":17},{"px":"113374.0","sz":"0.12","n":3}]}}'
)
#: A frame captured from wss://api.hyperliquid.xyz/ws (2026-07-31), coin renamed to BTC.
CTX = (
    '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"funding":"0.0000074304",'
    '"openInterest":"221413.164","prevDayPx":"337.34","dayNtlVlm":"172946726.7845301032",'
    '"premium":"0.0002355392","oraclePx":"312.05","markPx":"312.12","midPx":"312.13",'
    '"impactPxs":["312.094","312.153"],"dayBaseVlm":"534571.812"}}}'
)


def decoder(*symbols: str) -> HyperliquidDecoder:
    return exchanges.get("hyperliquid").decoder(symbols)  # type: ignore[return-value]


def error(text: str) -> bytes:
    return orjson.dumps({"channel": "error", "data": text})


def test_bbo_maps_book_and_time() -> None:
    [ticker] = decoder(BTC).decode(BBO)
    assert (ticker.exchange, ticker.symbol) == ("hyperliquid", BTC)
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (113373.0, 7.6699, 113374.0, 0.12)
    assert ticker.exchange_ts == 1754450974.231
    assert ticker.last is None and ticker.volume_24h is None  # no context yet


def test_context_and_book_merge_into_complete_tickers() -> None:
    dec = decoder(BTC)
    [first] = dec.decode(CTX)
    assert first.last == 312.13  # the mid price: Hyperliquid publishes no last trade here
    assert first.volume_24h == 534571.812  # base volume, not the notional dayNtlVlm
    assert first.change_24h == pytest.approx(312.13 - 337.34)
    assert first.change_pct_24h == pytest.approx((312.13 - 337.34) / 337.34 * 100)
    assert first.bid is None and first.exchange_ts is None
    assert first.high_24h is None and first.low_24h is None  # Hyperliquid sends none

    [second] = dec.decode(BBO)
    assert second.bid == 113373.0 and second.ask_size == 0.12
    assert (second.last, second.volume_24h) == (312.13, 534571.812)  # kept from the context

    [third] = dec.decode(CTX.replace('"midPx":"312.13"', '"midPx":"312.5"'))
    assert third.last == 312.5 and third.bid == 113373.0  # the book is kept too
    assert third.exchange_ts == 1754450974.231  # the time of the book it carries


def test_the_context_gives_mark_oracle_hourly_funding_and_open_interest() -> None:
    """``oraclePx`` is the index; ``funding`` the rate of one hour as a fraction; open interest
    in coins.  The context names no funding time, and neither feed a sequence."""
    dec = decoder(BTC)
    [ticker] = dec.decode(CTX)
    assert (ticker.mark_price, ticker.index_price) == (312.12, 312.05)
    assert ticker.funding_rate == 0.0000074304
    assert ticker.open_interest == 221413.164
    assert (ticker.next_funding_ts, ticker.sequence) == (None, None)

    [book] = dec.decode(BBO)  # the book keeps the context's derivative fields
    assert (book.bid, book.mark_price, book.funding_rate) == (113373.0, 312.12, 0.0000074304)

    # ccxt's example context (handle_active_asset_ctx), its funding turned negative and its open
    # interest to zero, with the dayBaseVlm the official SDK's type adds.
    docs = (
        '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"dayNtlVlm":"1169046.29406",'
        '"prevDayPx":"15.322","markPx":"14.3161","midPx":"14.314","oraclePx":"14.32",'
        '"funding":"-0.0000125","openInterest":"0.0","premium":"0.00031774",'
        '"impactPxs":["14.3047","14.3444"],"dayBaseVlm":"81599.1"}}}'
    )
    [negative] = dec.decode(docs)  # negative funding and zero open interest are valid
    assert (negative.funding_rate, negative.open_interest, negative.index_price) == (-0.0000125, 0.0, 14.32)
    assert dec.junk == 0


def test_one_sided_book_and_null_mid() -> None:
    dec = decoder(BTC)
    one_sided = BBO.replace('{"px":"113374.0","sz":"0.12","n":3}', "null")
    [ticker] = dec.decode(one_sided)
    assert (ticker.bid, ticker.ask, ticker.ask_size) == (113373.0, None, None)
    [ticker] = dec.decode(CTX.replace('"midPx":"312.13"', '"midPx":null'))
    assert ticker.last == 312.12  # the mark price while there is no mid


def test_greeting_pong_and_acks_are_not_junk() -> None:
    dec = decoder(BTC)
    ack = (
        '{"channel":"subscriptionResponse","data":{"method":"unsubscribe",'
        '"subscription":{"type":"bbo","coin":"BTC"}}}'
    )
    for frame in ("Websocket connection established.", '{"channel":"pong"}', ack):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []


def test_junk_is_counted_and_other_coins_dropped() -> None:
    dec = decoder(BTC)
    assert dec.decode(BBO.replace('"BTC"', '"ETH"')) == []
    assert dec.junk == 0
    for frame in ("pong", '{"channel":"allMids","data":{"mids":{}}}', '{"data":1}', b"\x00\xff", "[]"):
        assert dec.decode(frame) == []
    assert dec.junk == 5


def test_subscribe_frames_one_per_feed_and_acks() -> None:
    dec = decoder()
    frames = [orjson.loads(f) for f in dec.subscribe([BTC, "ETH/USDC:USDC"])]
    assert frames == [
        {"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}},
        {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}},
        {"method": "subscribe", "subscription": {"type": "bbo", "coin": "ETH"}},
        {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "ETH"}},
    ]
    ack = {"channel": "subscriptionResponse", "data": frames[2]}
    assert dec.decode(orjson.dumps(ack)) == []
    assert dec.events == [Subscribed("ETH/USDC:USDC")]


def test_unknown_coin_is_rejected_once_and_the_others_go_on() -> None:
    dec = decoder(BTC, "FOO/USDC:USDC")
    for feed in ("bbo", "activeAssetCtx"):
        dec.decode(error(f'Invalid subscription {{"type":"{feed}","coin":"FOO"}}'))
    assert dec.events == [Rejected("FOO/USDC:USDC", 'Invalid subscription {"type":"bbo","coin":"FOO"}')]
    assert dec.decode(BBO)[0].symbol == BTC
    dec.events.clear()
    dec.decode(error("Error parsing JSON into valid websocket request: x"))  # names no coin
    assert dec.events == [] and dec.junk == 0


def test_already_subscribed_means_subscribed() -> None:
    dec = decoder(BTC)
    dec.decode(error('Already subscribed: {"type":"activeAssetCtx","coin":"BTC"}'))
    assert dec.events == [Subscribed(BTC)]


def test_thousand_unit_coin_falls_back_to_lowercase_k_then_rejects() -> None:
    pepe = "KPEPE/USDC:USDC"
    dec = decoder(pepe)
    dec.decode(error('Invalid subscription {"type":"bbo","coin":"KPEPE"}'))
    retries = [orjson.loads(e.frame) for e in dec.events if isinstance(e, Reply)]
    assert [r["subscription"] for r in retries] == [
        {"type": "bbo", "coin": "kPEPE"},
        {"type": "activeAssetCtx", "coin": "kPEPE"},
    ]
    dec.events.clear()
    dec.decode(error('Invalid subscription {"type":"activeAssetCtx","coin":"KPEPE"}'))  # the other feed
    assert dec.events == []
    [ticker] = dec.decode(BBO.replace('"BTC"', '"kPEPE"'))
    assert ticker.symbol == pepe
    [frame, _] = dec.unsubscribe([pepe])
    assert orjson.loads(frame)["subscription"]["coin"] == "kPEPE"

    dec = decoder(pepe)
    dec.decode(error('Invalid subscription {"type":"bbo","coin":"KPEPE"}'))
    dec.events.clear()
    dec.decode(error('Invalid subscription {"type":"bbo","coin":"kPEPE"}'))
    assert dec.events == [Rejected(pepe, 'Invalid subscription {"type":"bbo","coin":"kPEPE"}')]


def test_unsubscribe_untracks() -> None:
    dec = decoder(BTC)
    frames = [orjson.loads(f) for f in dec.unsubscribe([BTC])]
    assert {f["method"] for f in frames} == {"unsubscribe"}
    assert dec.decode(BBO) == [] and dec.decode(CTX) == []


def test_symbol_forms() -> None:
    adapter = exchanges.get("hyperliquid")
    adapter.check_symbol(BTC)
    adapter.check_symbol("KPEPE/USDC:USDC")
    for bad in ("BTC/USDC", "BTC/USDT:USDT", "BTC/USD:BTC"):
        with pytest.raises(ValueError, match="expected BASE/USDC:USDC"):
            adapter.check_symbol(bad)
    with pytest.raises(ValueError, match="not a unified symbol"):
        adapter.check_symbol("kPEPE/USDC:USDC")  # the unified form is upper-case
    assert (coin_of(BTC), unified("BTC"), unified("kPEPE")) == ("BTC", BTC, "KPEPE/USDC:USDC")


# -- data sanity -----------------------------------------------------------------------------


def test_an_insane_book_is_junk_and_the_book_stays() -> None:
    dec = decoder(BTC)
    dec.decode(BBO)
    assert dec.decode(BBO.replace('"113374.0"', '"-5"')) == []
    assert dec.decode(BBO.replace('"7.6699"', '"-1"')) == []
    assert dec.junk == 2 and dec.junk_reason == "BTC/USDC:USDC: bid_size -1.0 is not a valid amount"
    [ticker] = dec.decode(CTX)
    assert (ticker.bid, ticker.ask, ticker.bid_size, ticker.exchange_ts) == (
        113373.0,
        113374.0,
        7.6699,
        1754450974.231,
    )


def test_a_one_sided_book_is_no_junk() -> None:
    """Hyperliquid documents a null side for an empty one."""
    [ticker] = decoder(BTC).decode(BBO.replace('{"px":"113373.0","sz":"7.6699","n":17}', "null"))
    assert (ticker.bid, ticker.bid_size, ticker.ask) == (None, None, 113374.0)


def test_a_context_without_its_fields_or_with_insane_ones_is_junk_and_the_context_stays() -> None:
    """A context replaces the previous one whole: without ``dayBaseVlm`` or ``funding`` it must
    not null the stored volume or funding.  ``midPx`` may be null (the mark price stands in)."""
    dec = decoder(BTC)
    dec.decode(CTX)
    assert dec.decode(CTX.replace(',"dayBaseVlm":"534571.812"', "")) == []
    assert dec.junk_reason == "missing field 'dayBaseVlm'"
    assert dec.decode(CTX.replace('"funding":"0.0000074304",', "")) == []
    assert dec.junk_reason == "missing field 'funding'"
    assert dec.decode(CTX.replace('"midPx":"312.13"', '"midPx":"0"')) == []
    assert dec.decode(CTX.replace('"oraclePx":"312.05"', '"oraclePx":"-312.05"')) == []
    assert dec.junk_reason == "BTC/USDC:USDC: index_price -312.05 is not a valid price"
    assert dec.decode(CTX.replace('"openInterest":"221413.164"', '"openInterest":"-1"')) == []
    assert dec.junk == 5
    [ticker] = dec.decode(BBO)
    assert (ticker.last, ticker.volume_24h) == (312.13, 534571.812)
    assert (ticker.index_price, ticker.funding_rate, ticker.open_interest) == (
        312.05,
        0.0000074304,
        221413.164,
    )
    [ticker] = dec.decode(CTX.replace('"midPx":"312.13"', '"midPx":null'))
    assert ticker.last == 312.12
