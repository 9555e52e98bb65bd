"""BitMEX: ``quote`` + ``instrument`` decoding on real frame shapes, derivative fields, symbol,
settle and expiry forms."""

from __future__ import annotations

import orjson
import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.bitmex import BitMEXDecoder, native, settle_currency

XBT = "BTC/USD:BTC"
#: Captured on connect (cryptofeed sample_data BITMEX.ws.1.0).
WELCOME = (
    '{"info":"Welcome to the BitMEX Realtime API.","version":"2021-07-14T01:26:29.000Z",'
    '"timestamp":"2021-07-22T22:36:07.865Z","docs":"https://www.bitmex.com/app/wsAPI","limit":{"remaining":39}}'
)
#: Captured (same sample): the first quote frame of a subscription.
QUOTE_PARTIAL = (
    '{"table":"quote","action":"partial","keys":[],"types":{"timestamp":"timestamp","symbol":"symbol",'
    '"bidSize":"long","bidPrice":"float","askPrice":"float","askSize":"long"},"foreignKeys":{"symbol":'
    '"instrument"},"attributes":{"timestamp":"sorted","symbol":"grouped"},"filter":{"symbol":"XBTUSD"},'
    '"data":[{"timestamp":"2021-07-22T22:36:09.757Z","symbol":"XBTUSD","bidSize":1046200,"bidPrice":32180,'
    '"askPrice":32180.5,"askSize":161000}]}'
)
QUOTE_INSERT = (
    '{"table":"quote","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.001Z","symbol":"XBTUSD",'
    '"bidSize":900,"bidPrice":32181,"askPrice":32181.5,"askSize":2000}]}'
)
#: The instrument partial of ccxt's handle_ticker example, trimmed to the fields tickers use.
INSTRUMENT_PARTIAL = (
    '{"table":"instrument","action":"partial","keys":["symbol"],"filter":{"symbol":"XBTUSD"},"data":[{'
    '"symbol":"XBTUSD","rootSymbol":"XBT","state":"Open","typ":"FFWCSX","expiry":null,"underlying":"XBT",'
    '"quoteCurrency":"USD","referenceSymbol":".BXBT","multiplier":-100000000,"settlCurrency":"XBt",'
    '"isQuanto":false,"isInverse":true,"fundingTimestamp":"2020-01-29T12:00:00.000Z",'
    '"fundingInterval":"2000-01-01T08:00:00.000Z","fundingRate":0.000597,"indicativeFundingRate":0.000652,'
    '"volume24h":4491824765,"homeNotional24h":488633.9006484273,"foreignNotional24h":4491824765,'
    '"prevPrice24h":9091,"vwap":9192.8663,"highPrice":9440,"lowPrice":8886,"lastPrice":9287,'
    '"lastTickDirection":"PlusTick","lastChangePcnt":0.0216,"bidPrice":9286,"midPrice":9286.25,'
    '"askPrice":9286.5,"openInterest":967826984,"openValue":10432207060536,"fairMethod":"FundingRate",'
    '"fairPrice":9277.2,"markMethod":"FairPrice","markPrice":9277.2,"indicativeSettlePrice":9276.87,'
    '"timestamp":"2020-01-29T11:31:37.114Z"}]}'
)
#: The same partial as a dated future lists it (ccxt's ``ETHH19`` example: ``typ`` FFCCSX, an
#: ``expiry`` at noon UTC on the last Friday of the month, no funding).
FUTURE_PARTIAL = (
    INSTRUMENT_PARTIAL.replace("XBTUSD", "XBTZ26")
    .replace('"FFWCSX","expiry":null', '"FFCCSX","expiry":"2026-12-25T12:00:00.000Z"')
    .replace('"2020-01-29T12:00:00.000Z"', "null")
    .replace('"2000-01-01T08:00:00.000Z"', "null")
    .replace("0.000597", "null")
    .replace("0.000652", "null")
)
#: A spot pair's row, made from the partial above with its mark price and all: a spot ticker
#: takes no derivative field, whatever the row carries.
SPOT_PARTIAL = (
    INSTRUMENT_PARTIAL.replace("XBTUSD", "XBT_USDT")
    .replace('"FFWCSX"', '"IFXXXP"')
    .replace('"settlCurrency":"XBt"', '"settlCurrency":"USDt"')
)
#: Real update shapes: only the changed fields.
LAST_UPDATE = (
    '{"table":"instrument","action":"update","data":[{"symbol":"XBTUSD","lastPrice":9290,'
    '"lastTickDirection":"PlusTick","lastChangePcnt":0.0219,"timestamp":"2020-01-29T11:31:38.500Z"}]}'
)
MARK_UPDATE = (
    '{"table":"instrument","action":"update","data":[{"symbol":"XBTUSD","fairPrice":10933.67,'
    '"markPrice":10933.67,"timestamp":"2020-01-29T11:31:39.250Z"}]}'
)
FUNDING_UPDATE = (
    '{"table":"instrument","action":"update","data":[{"symbol":"XBTUSD","fundingRate":-0.000125,'
    '"indicativeFundingRate":-0.0001,"fundingTimestamp":"2020-01-29T20:00:00.000Z","openInterest":0,'
    '"indicativeSettlePrice":10930.1,"timestamp":"2020-01-29T12:00:00.000Z"}]}'
)
#: Fields no ticker carries (the fair and impact prices): such an update changes nothing.
IMPACT_UPDATE = (
    '{"table":"instrument","action":"update","data":[{"symbol":"XBTUSD","impactBidPrice":9285.9133,'
    '"impactMidPrice":9286.75,"fairPrice":9277.5,"timestamp":"2020-01-29T11:31:39.750Z"}]}'
)
ACK = (
    '{"success":true,"subscribe":"quote:XBTUSD","request":{"op":"subscribe",'
    '"args":["quote:XBTUSD","instrument:XBTUSD"]}}'
)


def decoder(*symbols: str) -> BitMEXDecoder:
    return exchanges.get("bitmex").decoder(symbols)  # type: ignore[return-value]


def refusal(error: str, *args: str) -> bytes:
    """The 400 error BitMEX answers a subscribe with (it echoes the request)."""
    request = {"op": "subscribe", "args": list(args)}
    return orjson.dumps({"status": 400, "error": error, "meta": {}, "request": request})


def test_quote_maps_the_book_and_its_time() -> None:
    [ticker] = decoder(XBT).decode(QUOTE_PARTIAL)
    assert (ticker.exchange, ticker.symbol) == ("bitmex", XBT)
    assert (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size) == (
        32180.0,
        1046200.0,
        32180.5,
        161000.0,
    )
    assert ticker.exchange_ts == 1626993369.757
    assert ticker.last is None  # no instrument row yet


def test_instrument_partial_then_partial_updates_merge() -> None:
    dec = decoder(XBT)
    [first] = dec.decode(INSTRUMENT_PARTIAL)
    assert (first.last, first.high_24h, first.low_24h) == (9287.0, 9440.0, 8886.0)
    assert first.volume_24h == 488633.9006484273  # base (XBT) volume, not contracts
    assert first.change_24h == 196.0 and first.change_pct_24h == pytest.approx(2.16)
    assert (first.bid, first.ask, first.bid_size) == (9286.0, 9286.5, None)  # no quote yet
    assert first.exchange_ts == 1580297497.114

    [book] = dec.decode(QUOTE_PARTIAL)
    assert (book.bid, book.bid_size, book.last) == (32180.0, 1046200.0, 9287.0)

    [moved] = dec.decode(LAST_UPDATE)
    assert moved.last == 9290.0 and moved.change_pct_24h == pytest.approx(2.19)
    assert (moved.high_24h, moved.low_24h, moved.volume_24h) == (9440.0, 8886.0, 488633.9006484273)
    assert moved.change_24h == 199.0  # against the prevPrice24h of the partial
    assert moved.bid == 32180.0  # the quote table's book, not the instrument's
    assert moved.exchange_ts == 1626993369.757  # the newest time merged (the quote's)

    assert dec.decode(IMPACT_UPDATE) == []  # fair and impact prices are not ticker fields
    [marked] = dec.decode(MARK_UPDATE)
    assert (marked.mark_price, marked.last, marked.index_price) == (10933.67, 9290.0, 9276.87)
    assert dec.junk == 0


def test_a_perpetual_carries_mark_index_funding_and_open_interest() -> None:
    """``indicativeSettlePrice`` is the index (``.BXBT``), not ``fairPrice``; ``fundingRate`` a
    fraction of one 8 h period; ``fundingTimestamp`` the next funding; open interest contracts."""
    dec = decoder(XBT)
    [ticker] = dec.decode(INSTRUMENT_PARTIAL)
    assert (ticker.mark_price, ticker.index_price) == (9277.2, 9276.87)
    assert ticker.funding_rate == 0.000597
    assert ticker.next_funding_ts == 1580299200.0  # 2020-01-29T12:00:00Z
    assert ticker.open_interest == 967826984.0
    assert ticker.sequence is None

    [book] = dec.decode(QUOTE_INSERT)  # quotes keep the instrument's derivative fields
    assert (book.bid, book.mark_price, book.funding_rate) == (32181.0, 9277.2, 0.000597)

    [funded] = dec.decode(FUNDING_UPDATE)  # negative funding and zero open interest are valid
    assert (funded.funding_rate, funded.next_funding_ts) == (-0.000125, 1580328000.0)
    assert (funded.open_interest, funded.index_price, funded.mark_price) == (0.0, 10930.1, 9277.2)
    assert dec.junk == 0


def test_a_dated_future_has_no_funding_and_is_checked_against_its_expiry() -> None:
    future = "BTC/USD:BTC-261225"
    [ticker] = decoder(future).decode(FUTURE_PARTIAL)
    assert (ticker.symbol, ticker.last, ticker.mark_price, ticker.index_price) == (
        future,
        9287.0,
        9277.2,
        9276.87,
    )
    assert (ticker.funding_rate, ticker.next_funding_ts, ticker.open_interest) == (None, None, 967826984.0)

    dec = decoder("BTC/USD:BTC-261218")  # the same month, the wrong day: the same native name
    assert dec.decode(FUTURE_PARTIAL) == []
    reason = "XBTZ26 expires on 2026-12-25: use BTC/USD:BTC-261225"
    assert dec.events == [Rejected("BTC/USD:BTC-261218", reason)]


def test_spot_has_no_derivative_fields_even_where_its_row_has_a_mark() -> None:
    dec = decoder("BTC/USDT")
    [ticker] = dec.decode(SPOT_PARTIAL)
    assert ticker.last == 9287.0
    assert (ticker.mark_price, ticker.index_price, ticker.funding_rate, ticker.open_interest) == (None,) * 4
    assert dec.decode(MARK_UPDATE.replace("XBTUSD", "XBT_USDT")) == []  # a spot mark changes nothing


def test_updates_before_the_partial_are_dropped() -> None:
    dec = decoder(XBT)
    assert dec.decode(LAST_UPDATE) == []
    assert dec.junk == 0
    dec.decode(INSTRUMENT_PARTIAL)
    assert dec.decode(LAST_UPDATE)[0].last == 9290.0


def test_several_rows_give_one_ticker_per_symbol() -> None:
    dec = decoder(XBT)
    dec.decode(INSTRUMENT_PARTIAL)
    rows = [
        {"symbol": "XBTUSD", "lastPrice": 9300, "timestamp": "2020-01-29T11:31:40.000Z"},
        {"symbol": ".EVOL7D", "lastPrice": 1.5, "timestamp": "2020-01-29T11:31:40.000Z"},
        {"symbol": "XBTUSD", "highPrice": 9500, "timestamp": "2020-01-29T11:31:41.000Z"},
    ]
    [ticker] = dec.decode(orjson.dumps({"table": "instrument", "action": "update", "data": rows}))
    assert (ticker.last, ticker.high_24h) == (9300.0, 9500.0)


def test_control_frames_are_not_junk_and_junk_is_counted() -> None:
    dec = decoder(XBT)
    unsubscribed = (
        '{"success":true,"unsubscribe":"quote:XBTUSD","request":{"op":"unsubscribe","args":["quote:XBTUSD"]}}'
    )
    for frame in (WELCOME, "pong", unsubscribed):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []
    junk: tuple[str | bytes, ...] = (
        "not json",
        '{"table":"trade","action":"insert","data":[]}',
        '{"foo":1}',
        '{"table":"quote"}',
        b"\xff",
    )
    for bad in junk:
        assert dec.decode(bad) == []
    assert dec.junk == 5


def test_subscribe_one_request_per_symbol_and_acks() -> None:
    dec = decoder()
    frames = [orjson.loads(f) for f in dec.subscribe([XBT, "ETH/USDT:USDT"])]
    assert frames == [
        {"op": "subscribe", "args": ["quote:XBTUSD", "instrument:XBTUSD"]},
        {"op": "subscribe", "args": ["quote:ETHUSDT", "instrument:ETHUSDT"]},
    ]
    assert dec.decode(ACK) == []
    assert dec.events == [Subscribed(XBT)]


def test_errors_reject_the_symbol_the_echoed_request_names() -> None:
    dec = decoder(XBT, "FOO/USD:BTC")
    expired = (
        "Unknown or expired symbol: FOOUSD. Please see the documentation at https://www.bitmex.com/app/wsAPI."
    )
    dec.decode(refusal(expired, "quote:FOOUSD", "instrument:FOOUSD"))
    dec.decode(refusal(expired, "quote:FOOUSD", "instrument:FOOUSD"))  # one error per refused argument
    assert dec.events == [Rejected("FOO/USD:BTC", expired)]
    assert dec.decode(QUOTE_PARTIAL)[0].symbol == XBT  # the others go on

    dec = decoder(XBT)
    dec.decode(refusal('Unknown table: "quote', '"quote:XBTUSD"', "instrument:XBTUSD"))
    assert dec.events == [Rejected(XBT, 'Unknown table: "quote')]
    assert dec.decode(QUOTE_PARTIAL) == []  # a refused symbol publishes nothing

    dec = decoder(XBT)
    dec.decode('{"status":429,"error":"Rate limit exceeded, retry in 1 seconds.","meta":{"retryAfter":1}}')
    assert dec.events == [] and dec.junk == 0  # names no request, so no symbol


def test_a_settle_currency_mismatch_names_the_right_symbol() -> None:
    dec = decoder("ETH/USD:ETH")
    partial = INSTRUMENT_PARTIAL.replace("XBTUSD", "ETHUSD").replace('"isQuanto":false', '"isQuanto":true')
    assert dec.decode(partial) == []
    assert dec.events == [Rejected("ETH/USD:ETH", "ETHUSD settles in XBt: use ETH/USD:BTC")]
    assert dec.decode(QUOTE_PARTIAL.replace("XBTUSD", "ETHUSD")) == []
    assert decoder("ETH/USD:BTC").decode(partial)[0].last == 9287.0


def test_unsubscribe_untracks() -> None:
    dec = decoder(XBT)
    [frame] = dec.unsubscribe([XBT])
    assert orjson.loads(frame) == {"op": "unsubscribe", "args": ["quote:XBTUSD", "instrument:XBTUSD"]}
    assert dec.decode(QUOTE_PARTIAL) == []


def test_symbol_forms() -> None:
    forms = {
        XBT: "XBTUSD",
        "BTC/USD:BTC-261225": "XBTZ26",
        "BTC/USD:BTC-270326": "XBTH27",
        "ETH/USDT:USDT-270625": "ETHUSDTM27",
        "ETH/USD:BTC-261225": "ETHUSDZ26",
        "BTC/EUR:BTC-261225": "XBTEURZ26",
        "BTC/USDT:USDT": "XBTUSDT",
        "ETH/USDT:USDT": "ETHUSDT",
        "ETH/USD:BTC": "ETHUSD",
        "BTC/EUR:BTC": "XBTEUR",
        "BTC/USDT": "XBT_USDT",
    }
    adapter = exchanges.get("bitmex")
    for symbol, name in forms.items():
        adapter.check_symbol(symbol)
        assert native(symbol) == name
    with pytest.raises(ValueError, match="write BTC"):
        adapter.check_symbol("XBT/USD:XBT")
    with pytest.raises(ValueError, match="settles in its base"):
        adapter.check_symbol("BTC/USD:ETH")
    assert (settle_currency("XBt"), settle_currency("USDt"), settle_currency("EUR")) == ("BTC", "USDT", "EUR")


# -- data sanity -----------------------------------------------------------------------------


def test_an_insane_quote_is_junk_and_the_quote_stays() -> None:
    dec = decoder(XBT)
    dec.decode(QUOTE_PARTIAL)
    assert dec.decode(QUOTE_INSERT.replace('"bidPrice":32181', '"bidPrice":-1')) == []
    assert dec.decode(QUOTE_INSERT.replace('"askSize":2000', '"askSize":-2000')) == []
    assert dec.junk == 2 and dec.junk_reason == "BTC/USD:BTC: ask_size -2000.0 is not a valid amount"
    [ticker] = dec.decode(INSTRUMENT_PARTIAL)
    assert (ticker.bid, ticker.bid_size, ticker.ask_size) == (32180.0, 1046200.0, 161000.0)


def test_a_quote_row_without_a_side_is_junk() -> None:
    """Quote rows are complete: one without ``askPrice`` (or with it null) is junk."""
    dec = decoder(XBT)
    dec.decode(QUOTE_PARTIAL)
    assert dec.decode(QUOTE_INSERT.replace('"askPrice":32181.5,', "")) == []
    assert dec.decode(QUOTE_INSERT.replace('"askPrice":32181.5', '"askPrice":null')) == []
    assert dec.junk == 2 and dec.junk_reason.startswith("TypeError")


def test_an_insane_mark_or_open_interest_is_junk_and_the_row_stays() -> None:
    dec = decoder(XBT)
    dec.decode(INSTRUMENT_PARTIAL)
    assert dec.decode(MARK_UPDATE.replace('"markPrice":10933.67', '"markPrice":-1')) == []
    assert dec.junk_reason == "BTC/USD:BTC: mark_price -1.0 is not a valid price"
    assert dec.decode(FUNDING_UPDATE.replace('"openInterest":0', '"openInterest":-5')) == []
    assert dec.junk == 2 and dec.junk_reason == "BTC/USD:BTC: open_interest -5.0 is not a valid amount"
    [ticker] = dec.decode(QUOTE_INSERT)
    assert (ticker.mark_price, ticker.open_interest, ticker.funding_rate) == (9277.2, 967826984.0, 0.000597)


def test_instrument_updates_keep_what_they_lack_and_insane_ones_are_junk() -> None:
    """Instrument updates are partial rows: merged, a field they lack keeps its value; one
    with a zero last price is junk and the merged row stays."""
    dec = decoder(XBT)
    dec.decode(INSTRUMENT_PARTIAL)
    assert dec.decode(LAST_UPDATE.replace('"lastPrice":9290', '"lastPrice":0')) == [] and dec.junk == 1
    [ticker] = dec.decode(LAST_UPDATE.replace('"lastPrice":9290,', ""))  # the change only
    assert (ticker.last, ticker.high_24h, ticker.volume_24h) == (9287.0, 9440.0, 488633.9006484273)
    assert ticker.change_pct_24h == pytest.approx(2.19)


def test_an_instrument_partial_without_a_ticker_field_is_junk() -> None:
    dec = decoder(XBT)
    assert dec.decode(INSTRUMENT_PARTIAL.replace('"lastPrice":9287,', "")) == []
    assert dec.junk == 1 and dec.junk_reason == "instrument partial without lastPrice"
    assert dec.decode(LAST_UPDATE) == []  # nothing to merge onto: the partial was not kept
