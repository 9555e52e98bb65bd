"""Binance USDⓈ-M and COIN-M futures: decoders on the documentation's frames, the two USDⓈ-M
endpoint groups sharing one merged record, and that record across a dropped endpoint."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import Updates, until
from tests.test_exchange_contract import QUIET, real_time, start
from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.binance_futures import BinanceFutures, FuturesDecoder, MergedState, native
from tickerd.testing.binance_futures import FakeBinanceUsdm

# developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/…
USDM_BOOK = (
    '{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT",'
    '"b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
)
USDM_STATS = (
    '{"e":"24hrTicker","E":123456789,"s":"BNBUSDT","p":"0.0015","P":"250.00","w":"0.0018",'
    '"c":"0.0025","Q":"10","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,'
    '"C":86400000,"F":0,"L":18150,"n":18151}'
)  # the page's frame is BTCUSDT's; the symbol is the book's so that the three merge
USDM_MARK = (
    '{"e":"markPriceUpdate","E":1562305380000,"s":"BNBUSDT","p":"11794.15000000",'
    '"ap":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167",'
    '"T":1562306400000}'
)
# developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams/…
COINM_BOOK = (
    '{"e":"bookTicker","u":17242169,"s":"BTCUSD_200626","b":"9548.1","B":"52","a":"9548.5",'
    '"A":"11","T":1591268628155,"E":1591268628166,"ps":"BTCUSD"}'
)
COINM_STATS = (
    '{"e":"24hrTicker","E":1591268262453,"s":"BTCUSD_200626","p":"-43.4","P":"-0.452",'
    '"w":"0.00147974","c":"9548.5","Q":"2","o":"9591.9","h":"10000.0","l":"7000.0","v":"487850",'
    '"q":"32968676323.46222700","O":1591181820000,"C":1591268262442,"F":512014,"L":615289,'
    '"n":103272,"ps":"BTCUSD"}'
)
COINM_MARK_DATED = (
    '{"e":"markPriceUpdate","E":1596095725000,"s":"BTCUSD_200626","p":"10934.62615417",'
    '"P":"10962.17178236","i":"10933.62615417","r":"","T":0}'
)
COINM_MARK_PERPETUAL = (
    '{"e":"markPriceUpdate","E":1596095725000,"s":"BTCUSD_PERP","p":"11012.31359011",'
    '"P":"10962.17178236","i":"10933.62615417","r":"0.00000000","T":1596096000000}'
)

USDM = "BNB/USDT:USDT"
COINM_DATED = "BTC/USD:BTC-200626"


def adapter(name: str) -> BinanceFutures:
    exchange = exchanges.get(name)
    assert isinstance(exchange, BinanceFutures)
    return exchange


def decoder(name: str, *symbols: str, group: str = "", merged: MergedState | None = None) -> FuturesDecoder:
    return adapter(name).decoder(symbols, group, merged)


# -- USDⓈ-M --------------------------------------------------------------------------------


def test_book_statistics_and_mark_price_merge_into_one_ticker() -> None:
    dec = decoder("binance_usdm", USDM)
    [book] = dec.decode(USDM_BOOK)
    assert (book.exchange, book.symbol) == ("binance_usdm", USDM)
    assert (book.bid, book.bid_size, book.ask, book.ask_size) == (25.3519, 31.21, 25.3652, 40.66)
    assert (book.sequence, book.exchange_ts) == (400900217, 1568014460.893)
    assert book.last is None and book.mark_price is None

    [stats] = dec.decode(USDM_STATS)
    assert (stats.last, stats.volume_24h, stats.high_24h, stats.low_24h) == (0.0025, 10000.0, 0.0025, 0.001)
    assert (stats.change_24h, stats.change_pct_24h, stats.exchange_ts) == (0.0015, 250.0, 123456.789)
    assert (stats.bid, stats.sequence) == (25.3519, 400900217)  # the book stays, with its update id

    [mark] = dec.decode(USDM_MARK)
    assert (mark.mark_price, mark.index_price) == (11794.15, 11784.62659091)
    assert (mark.funding_rate, mark.next_funding_ts) == (0.00038167, 1562306400.0)  # a fraction; s
    assert (mark.bid, mark.last, mark.volume_24h) == (25.3519, 0.0025, 10000.0)
    assert mark.open_interest is None  # no futures stream carries it

    [again] = dec.decode(USDM_BOOK.replace('"25.35190000"', '"25.36"').replace("400900217", "400900218"))
    assert (again.bid, again.mark_price, again.funding_rate, again.last) == (
        25.36,
        11794.15,
        0.00038167,
        0.0025,
    )


def test_the_two_endpoint_groups_subscribe_their_own_streams() -> None:
    usdm = adapter("binance_usdm")
    assert usdm.groups == ("public", "market")
    merged = usdm.merged_state()
    public = usdm.decoder([], "public", merged)
    market = usdm.decoder([], "market", merged)
    [frame] = public.subscribe(["BTC/USDT:USDT", "BTC/USDT:USDT-261225"])
    assert orjson.loads(frame)["params"] == ["btcusdt@bookTicker", "btcusdt_261225@bookTicker"]
    [frame] = market.subscribe(["BTC/USDT:USDT"])
    assert orjson.loads(frame)["params"] == ["btcusdt@ticker", "btcusdt@markPrice@1s"]
    [frame] = market.unsubscribe(["BTC/USDT:USDT"])
    assert orjson.loads(frame) == {
        "method": "UNSUBSCRIBE",
        "params": ["btcusdt@ticker", "btcusdt@markPrice@1s"],
        "id": 2,
    }


@pytest.mark.parametrize(
    ("name", "group", "url"),
    [
        ("binance_usdm", "public", "wss://fstream.binance.com/public/ws"),
        ("binance_usdm", "market", "wss://fstream.binance.com/market/ws"),
        ("binance_coinm", "", "wss://dstream.binance.com/ws"),
    ],
)
def test_each_group_has_its_url(name: str, group: str, url: str) -> None:
    exchange = adapter(name)
    assert group in exchange.groups
    assert exchange.endpoint(exchange.url, exchange.sample_symbols[0], group) == url
    assert exchange.endpoint(exchange.url + "/", exchange.sample_symbols[0], group) == url
    assert exchange.endpoint("ws://127.0.0.1:8765", "BTC/USD:BTC", group) == url.replace(
        exchange.url, "ws://127.0.0.1:8765"
    )


def test_the_groups_decoders_merge_into_one_record_that_outlives_a_reconnect() -> None:
    usdm = adapter("binance_usdm")
    merged = usdm.merged_state()
    public = usdm.decoder([USDM], "public", merged)
    market = usdm.decoder([USDM], "market", merged)
    public.decode(USDM_BOOK)
    market.decode(USDM_STATS)
    [ticker] = market.decode(USDM_MARK)
    assert (ticker.bid, ticker.last, ticker.mark_price) == (25.3519, 0.0025, 11794.15)

    reconnected = usdm.decoder([USDM], "public", merged)  # the public connection, anew
    [ticker] = reconnected.decode(
        USDM_BOOK.replace("400900217", "400900300").replace('"25.35190000"', '"25.3"')
    )
    assert (ticker.bid, ticker.last, ticker.mark_price, ticker.sequence) == (
        25.3,
        0.0025,
        11794.15,
        400900300,
    )
    assert reconnected.decode(USDM_BOOK) == []  # the old connection's late, older book


def test_a_removed_symbol_starts_afresh_when_added_again() -> None:
    merged: MergedState = {}
    dec = decoder("binance_usdm", USDM, merged=merged)
    dec.decode(USDM_STATS)
    dec.unsubscribe([USDM])
    assert native(USDM) not in merged and dec.decode(USDM_BOOK) == []
    dec.subscribe([USDM])
    [ticker] = dec.decode(USDM_BOOK)
    assert ticker.last is None


def test_acks_the_keepalive_answer_and_a_refused_batch() -> None:
    dec = decoder("binance_usdm", group="market")
    request = orjson.loads(dec.subscribe(["BTC/USDT:USDT", "BAD/USDT:USDT"])[0])
    assert dec.decode(f'{{"result":null,"id":{request["id"]}}}') == []
    assert dec.events == [Subscribed("BTC/USDT:USDT"), Subscribed("BAD/USDT:USDT")]
    dec.events.clear()
    assert dec.decode('{"result":false,"id":0}') == [] and dec.events == []  # GET_PROPERTY
    assert dec.junk == 0

    request = orjson.loads(dec.subscribe(["ETH/USDT:USDT", "NOPE/USDT:USDT"])[0])
    dec.decode(f'{{"code":2,"msg":"Invalid request: invalid stream","id":{request["id"]}}}')
    retries = [orjson.loads(e.frame) for e in dec.events if isinstance(e, Reply)]
    assert [r["params"] for r in retries] == [
        ["ethusdt@ticker", "ethusdt@markPrice@1s"],
        ["nopeusdt@ticker", "nopeusdt@markPrice@1s"],
    ]
    dec.events.clear()
    dec.decode(f'{{"code":2,"msg":"Invalid request: invalid stream","id":{retries[1]["id"]}}}')
    assert dec.events == [Rejected("NOPE/USDT:USDT", "2: Invalid request: invalid stream")]


def test_the_keepalive_is_a_documented_request_with_an_id_no_subscription_has() -> None:
    keepalive = adapter("binance_usdm").keepalive
    assert keepalive is not None
    assert orjson.loads(keepalive.frame) == {"method": "GET_PROPERTY", "params": ["combined"], "id": 0}


# -- COIN-M --------------------------------------------------------------------------------


def test_coinm_reads_volume_in_the_base_asset_and_a_quarterly_has_no_funding() -> None:
    dec = decoder("binance_coinm", COINM_DATED)
    [book] = dec.decode(COINM_BOOK)
    assert (book.exchange, book.symbol, book.bid, book.bid_size, book.ask, book.ask_size) == (
        "binance_coinm",
        COINM_DATED,
        9548.1,
        52.0,  # contracts
        9548.5,
        11.0,
    )
    [stats] = dec.decode(COINM_STATS)
    assert (stats.last, stats.volume_24h, stats.change_pct_24h) == (9548.5, 32968676323.462227, -0.452)
    [mark] = dec.decode(COINM_MARK_DATED)
    assert (mark.mark_price, mark.index_price) == (10934.62615417, 10933.62615417)
    assert (mark.funding_rate, mark.next_funding_ts, mark.sequence) == (None, None, 17242169)


def test_coinm_perpetual_funding() -> None:
    dec = decoder("binance_coinm", "BTC/USD:BTC")
    [mark] = dec.decode(COINM_MARK_PERPETUAL)
    assert (mark.symbol, mark.mark_price, mark.funding_rate, mark.next_funding_ts) == (
        "BTC/USD:BTC",
        11012.31359011,
        0.0,
        1596096000.0,
    )
    assert mark.bid is None and mark.sequence is None  # no book yet


def test_coinm_subscribes_every_stream_on_its_one_connection() -> None:
    coinm = adapter("binance_coinm")
    assert coinm.groups == ("",)
    [frame] = coinm.decoder([]).subscribe(["BTC/USD:BTC", "ETH/USD:ETH-270326"])
    assert orjson.loads(frame)["params"] == [
        "btcusd_perp@bookTicker",
        "btcusd_perp@ticker",
        "btcusd_perp@markPrice@1s",
        "ethusd_270326@bookTicker",
        "ethusd_270326@ticker",
        "ethusd_270326@markPrice@1s",
    ]


# -- symbols -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        ("BTC/USDT:USDT", "BTCUSDT"),
        ("BTC/USDC:USDC", "BTCUSDC"),
        ("BTC/USDT:USDT-261225", "BTCUSDT_261225"),
        ("BTC/USD:BTC", "BTCUSD_PERP"),
        ("ETH/USD:ETH-270326", "ETHUSD_270326"),
    ],
)
def test_native_symbols(symbol: str, name: str) -> None:
    assert native(symbol) == name


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("binance_usdm", "BTC/USDT"),
        ("binance_usdm", "BTC/USD:BTC"),
        ("binance_usdm", "BTC/USDT:BTC"),
        ("binance_coinm", "BTC/USDT:USDT"),
        ("binance_coinm", "ETH/USD:BTC"),
        ("binance_coinm", "BTC/USD"),
    ],
)
def test_markets_of_the_other_venue_are_refused_naming_the_forms(name: str, symbol: str) -> None:
    exchange = adapter(name)
    with pytest.raises(ValueError, match=r"serves|spot"):
        exchange.check_symbol(symbol)
    for served in exchange.sample_symbols:
        exchange.check_symbol(served)


# -- data sanity ---------------------------------------------------------------------------


def test_an_insane_frame_of_any_kind_is_junk_and_the_merged_record_stays() -> None:
    dec = decoder("binance_usdm", USDM)
    for frame in (USDM_BOOK, USDM_STATS, USDM_MARK):
        dec.decode(frame)
    insane_book = USDM_BOOK.replace("400900217", "400900218").replace('"25.35190000"', '"-1"')
    assert dec.decode(insane_book) == [] and dec.junk_reason == f"{USDM}: bid -1.0 is not a valid price"
    assert dec.decode(USDM_MARK.replace('"11794.15000000"', '"-5"', 1)) == []
    assert dec.decode(USDM_MARK.replace('"0.00038167"', '"NaN"')) == []
    assert dec.decode(USDM_STATS.replace('"v":"10000"', '"v":"-1"')) == []
    assert dec.decode(USDM_BOOK.replace(',"a":"25.36520000"', "")) == []  # a field it always has
    assert dec.decode(USDM_MARK.replace(',"i":"11784.62659091"', "")) == []
    assert dec.junk == 6
    [ticker] = dec.decode(USDM_BOOK)  # its update id was not moved by the junk either
    assert (ticker.bid, ticker.mark_price, ticker.funding_rate, ticker.volume_24h) == (
        25.3519,
        11794.15,
        0.00038167,
        10000.0,
    )


def test_negative_funding_is_a_rate_and_kept() -> None:
    [ticker] = decoder("binance_usdm", USDM).decode(USDM_MARK.replace('"0.00038167"', '"-0.00012500"'))
    assert ticker.funding_rate == -0.000125


def test_other_symbols_and_junk() -> None:
    dec = decoder("binance_usdm", "ETH/USDT:USDT")
    assert dec.decode(USDM_BOOK) == [] and dec.decode(USDM_MARK) == [] and dec.junk == 0
    for frame in ("{", "[]", '{"e":"aggTrade"}', '{"u":1,"s":"ETHUSDT"}', b"\x00\xff"):
        assert dec.decode(frame) == []
    assert dec.junk == 5


def test_a_crossed_book_is_kept_and_counted() -> None:
    dec = decoder("binance_usdm", USDM)
    [ticker] = dec.decode(USDM_BOOK.replace('"25.35190000"', '"26"'))
    assert (ticker.bid, ticker.ask, dec.crossed, dec.junk) == (26.0, 25.3652, 1, 0)


# -- the merged record across a dropped endpoint ----------------------------------------------


@pytest.mark.parametrize(("dropped", "kept"), [("market", "public"), ("public", "market")])
async def test_one_endpoint_down_leaves_the_others_fields_and_both_update_after_it_reconnects(
    dropped: str,
    kept: str,
    clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    prefix: str,
    updates: Updates,
) -> None:
    """USDⓈ-M's book comes on ``/public``, its last price, mark and funding on ``/market``: one
    connection down, the other still updates the record, which keeps the fields the lost one
    brought; reconnected, both update it again."""
    symbol = "BTC/USDT:USDT"
    exchange = adapter("binance_usdm")
    fake = FakeBinanceUsdm()
    _, daemon = await start(nursery, prefix, exchange, [symbol], fake=fake)

    def served(group: str) -> bool:
        return any(c.ws.path == f"/{group}/ws" and symbol in c.subscribed for c in fake.connections)

    with real_time(clock):
        await fake.push(symbol, bid=100.0, ask=101.0, last=100.5, mark=100.25, funding_rate=0.0001)
        await updates.wait_for(lambda r: (r["bid"], r["last"], r["mark_price"]) == (100.0, 100.5, 100.25))

    fake.refuse = True  # the dropped endpoint stays down until the test lets it back
    await fake.drop(dropped)
    await until(fake, lambda: not served(dropped) and len(fake.attempt_times) > 2, within=QUIET)
    assert served(kept)
    with real_time(clock):
        await fake.push(symbol, bid=200.0, ask=201.0, last=200.5, mark=200.25, funding_rate=0.0002)
        if kept == "public":  # the new book, and the last price and mark of before the drop
            expected = (200.0, 201.0, 100.5, 100.25, 0.0001)
        else:  # the new last price and mark, on the book of before the drop
            expected = (100.0, 101.0, 200.5, 200.25, 0.0002)
        record = await updates.wait_for(
            lambda r: (r["bid"], r["ask"], r["last"], r["mark_price"], r["funding_rate"]) == expected
        )
    assert record["index_price"] is not None and record["next_funding_ts"] is not None

    fake.refuse = False
    await until(fake, lambda: served(dropped), within=QUIET)
    with real_time(clock):
        await fake.push(symbol, bid=300.0, ask=301.0, last=300.5, mark=300.25, funding_rate=-0.0003)
        await updates.wait_for(
            lambda r: (
                (r["bid"], r["last"], r["mark_price"], r["funding_rate"]) == (300.0, 300.5, 300.25, -0.0003)
            )
        )
    assert daemon.health().exchanges["binance_usdm"].reconnects >= 1
    assert fake.violations == []
