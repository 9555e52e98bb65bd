"""KuCoin spot: the documentation's frames decoded and merged, the requests (the snapshot one
symbol a request, the ticker up to 100), refusals, symbol forms, and the token path against the
fake (the protocol shared with KuCoin Futures is tested in tests/test_kucoin_futures.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, until
from tests.test_exchange_contract import real_time
from tickerd import exchanges
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.kucoin import MergedState
from tickerd.exchanges.kucoin_spot import REST_URL, KucoinSpotDecoder, native, unified
from tickerd.testing.kucoin_spot import FakeKucoinSpot

BTC = "BTC/USDT"
KCS = "KCS/BTC"

#: The documentation's examples (kucoin.com/docs-new): "Ticker" (3470063w0), with the
#: example's ``Time`` as printed, and "Symbol Snapshot" (the classic page
#: kucoin.com/docs/websocket/spot-trading/public-channels/symbol-snapshot; its ``//`` comments,
#: which are no JSON, left out).
TICKER = (
    '{"type":"message","topic":"/market/ticker:BTC-USDT","subject":"trade.ticker",'
    '"data":{"sequence":"1545896668986","price":"0.08","size":"0.011","bestAsk":"0.08",'
    '"bestAskSize":"0.18","bestBid":"0.049","bestBidSize":"0.036","Time":1704873323416}}'
)
SNAPSHOT = (
    '{"type":"message","topic":"/market/snapshot:KCS-BTC","subject":"trade.snapshot",'
    '"data":{"sequence":"1545896669291","data":{"trading":true,"symbol":"KCS-BTC","buy":0.00011,'
    '"sell":0.00012,"sort":100,"volValue":3.13851792584,"baseCurrency":"KCS","market":"BTC",'
    '"quoteCurrency":"BTC","symbolCode":"KCS-BTC","datetime":1548388122031,"high":0.00013,'
    '"vol":27514.34842,"low":0.0001,"changePrice":-1.0e-5,"changeRate":-0.0769,'
    '"lastTradedPrice":0.00012,"board":0,"mark":0}}}'
)
#: A ticker of KCS-BTC as KuCoin sends it (lower-case ``time``, as the page's schema has it).
KCS_TICKER = (
    '{"type":"message","topic":"/market/ticker:KCS-BTC","subject":"trade.ticker",'
    '"data":{"sequence":"1545896669300","price":"0.000115","size":"3","bestAsk":"0.000116",'
    '"bestAskSize":"120.5","bestBid":"0.000114","bestBidSize":"80","time":1548388123000}}'
)
#: The introduction's example of the server's greeting.
WELCOME = '{"id":"hQvf8jkno","type":"welcome"}'


def decoder(*symbols: str, merged: MergedState | None = None) -> KucoinSpotDecoder:
    return exchanges.get("kucoin").decoder(symbols, "", merged)  # type: ignore[return-value]


def welcomed(*symbols: str, merged: MergedState | None = None) -> KucoinSpotDecoder:
    d = decoder(*symbols, merged=merged)
    d.subscribe(list(symbols))
    d.decode(WELCOME)
    d.events.clear()
    return d


def test_the_documented_ticker_is_the_book_and_last() -> None:
    [ticker] = welcomed(BTC).decode(TICKER)
    assert (ticker.bid, ticker.ask, ticker.bid_size, ticker.ask_size) == (0.049, 0.08, 0.036, 0.18)
    assert ticker.last == 0.08 and ticker.sequence == 1545896668986
    assert ticker.exchange_ts == pytest.approx(1704873323.416)
    assert ticker.volume_24h is None and ticker.mark_price is None
    assert (ticker.exchange, ticker.symbol) == ("kucoin", BTC)


def test_the_documented_snapshot_merges_with_the_ticker() -> None:
    d = welcomed(KCS)
    [stats] = d.decode(SNAPSHOT)
    assert (stats.volume_24h, stats.high_24h, stats.low_24h) == (27514.34842, 0.00013, 0.0001)
    assert stats.change_24h == -1.0e-5 and stats.change_pct_24h == pytest.approx(-7.69)
    assert stats.last == 0.00012 and stats.bid is None  # the snapshot's buy/sell have no sizes
    assert stats.exchange_ts == pytest.approx(1548388122.031)
    [book] = d.decode(KCS_TICKER)
    assert (book.bid, book.ask, book.bid_size, book.ask_size, book.last) == (
        0.000114,
        0.000116,
        80.0,
        120.5,
        0.000115,
    )
    assert book.volume_24h == 27514.34842 and book.sequence == 1545896669300
    [again] = d.decode(SNAPSHOT)  # the ticker's last is fresher than the snapshot's
    assert again.last == 0.000115 and again.bid == 0.000114 and again.sequence == 1545896669300
    assert d.junk == 0


def test_a_book_older_than_the_merged_one_is_dropped() -> None:
    d = welcomed(BTC)
    d.decode(TICKER)
    older = TICKER.replace('"sequence":"1545896668986"', '"sequence":"1545896668000"')
    assert d.decode(older) == [] and d.junk == 0


def test_the_record_outlives_a_reconnect() -> None:
    """Statistics come every 2 s: a new connection's first book keeps them meanwhile."""
    merged: MergedState = {}
    welcomed(KCS, merged=merged).decode(SNAPSHOT)
    [ticker] = welcomed(KCS, merged=merged).decode(KCS_TICKER)
    assert ticker.high_24h == 0.00013


def test_an_insane_frame_is_junk_and_leaves_the_record() -> None:
    d = welcomed(BTC)
    d.decode(TICKER)
    assert d.decode(TICKER.replace('"bestBid":"0.049"', '"bestBid":"-1"').replace("986", "987")) == []
    assert d.junk == 1 and "bid -1.0 is not a valid price" in d.junk_reason
    [ticker] = d.decode(TICKER.replace("986", "988"))
    assert ticker.bid == 0.049


def replies(d: KucoinSpotDecoder) -> list[dict[str, Any]]:
    """The requests the decoder asked to send, decoded; the events are cleared."""
    frames = [orjson.loads(event.frame) for event in d.events if isinstance(event, Reply)]
    d.events.clear()
    return frames


def test_requests_wait_for_the_welcome_the_snapshot_one_symbol_a_request() -> None:
    d = decoder(BTC)
    assert d.subscribe([BTC, KCS]) == []  # held until the welcome
    assert d.decode(WELCOME) == []
    frames = replies(d)
    assert [f["topic"] for f in frames] == [
        "/market/snapshot:BTC-USDT",
        "/market/snapshot:KCS-BTC",
        "/market/ticker:BTC-USDT,KCS-BTC",
    ]
    assert {(f["type"], f["privateChannel"], f["response"]) for f in frames} == {("subscribe", False, True)}
    assert len({f["id"] for f in frames}) == 3
    unsubscribe = [orjson.loads(frame)["topic"] for frame in d.unsubscribe([KCS])]  # sent at once now
    assert unsubscribe == ["/market/snapshot:KCS-BTC", "/market/ticker:KCS-BTC"]


def test_the_ticker_takes_at_most_100_symbols_a_request() -> None:
    symbols = [f"C{n}/USDT" for n in range(150)]
    topics = [orjson.loads(frame)["topic"] for frame in welcomed().subscribe(symbols)]
    assert [topic for topic in topics if topic.startswith("/market/snapshot:")] == [
        f"/market/snapshot:C{n}-USDT" for n in range(150)
    ]
    assert [topic.count(",") + 1 for topic in topics if topic.startswith("/market/ticker:")] == [100, 50]


def test_the_ticker_ack_subscribes_its_symbols() -> None:
    d = decoder(BTC, KCS)
    d.subscribe([BTC, KCS])
    d.decode(WELCOME)
    *snapshots, ticker = (f["id"] for f in replies(d))
    for request in snapshots:
        assert d.decode(f'{{"id":"{request}","type":"ack"}}') == []
    assert d.events == []
    d.decode(f'{{"id":"{ticker}","type":"ack"}}')
    assert d.events == [Subscribed(BTC), Subscribed(KCS)] and d.junk == 0


def test_an_unknown_symbol_is_rejected_by_the_tickers_refusal() -> None:
    unknown = "NOPE/USDT"
    d = decoder(BTC, unknown)
    d.subscribe([BTC, unknown])
    d.decode(WELCOME)
    _, snapshot, ticker = (f["id"] for f in replies(d))
    error = '{{"id":"{}","type":"error","code":404,"data":"topic {} is not found"}}'
    d.decode(error.format(snapshot, "/market/snapshot:NOPE-USDT"))
    assert d.events == []  # one symbol's snapshot: nothing to ask again, the ticker decides
    d.decode(error.format(ticker, "/market/ticker:BTC-USDT,NOPE-USDT"))
    good, bad = (f["id"] for f in replies(d))
    d.decode(f'{{"id":"{good}","type":"ack"}}')
    d.decode(error.format(bad, "/market/ticker:NOPE-USDT"))
    assert d.events == [
        Subscribed(BTC),
        Rejected(unknown, f"{unknown}: code 404: topic /market/ticker:NOPE-USDT is not found"),
    ]
    assert d.junk == 0


@pytest.mark.parametrize(
    "frame",
    [
        '{"id":"tickerd","type":"pong"}',
        TICKER.replace("BTC-USDT", "ETH-USDT"),  # a late frame of a symbol no longer tracked
        SNAPSHOT.replace("KCS-BTC", "ETH-BTC"),
    ],
)
def test_pongs_and_late_frames_are_not_junk(frame: str) -> None:
    d = welcomed(BTC, KCS)
    assert d.decode(frame) == [] and d.junk == 0


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"error","code":401,"data":"token is invalid"}',
        '{"id":"1","type":"notice"}',
        TICKER.replace('"subject":"trade.ticker"', '"subject":"trade.l2update"'),
        TICKER.replace('"bestBid":"0.049",', ""),
        TICKER.replace('"Time":1704873323416', '"Time":null'),
        SNAPSHOT.replace('"vol":27514.34842,', ""),
        "garbage",
    ],
)
def test_frames_of_no_known_kind_are_junk(frame: str) -> None:
    d = welcomed(BTC, KCS)
    assert d.decode(frame) == [] and d.junk == 1


@pytest.mark.parametrize(
    ("symbol", "name"), [(BTC, "BTC-USDT"), (KCS, "KCS-BTC"), ("1INCH/USDT", "1INCH-USDT")]
)
def test_symbols_map_to_names_and_back(symbol: str, name: str) -> None:
    exchanges.get("kucoin").check_symbol(symbol)
    assert native(symbol) == name and unified(name) == symbol


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "BTC/USD:BTC", "BTC/USDT:USDT-261225"])
def test_derivatives_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match="serves spot only"):
        exchanges.get("kucoin").check_symbol(symbol)


@pytest.mark.parametrize("name", ["BTCUSDT", "BTC-", "-USDT", "BTC-USDT-SWAP"])
def test_names_of_no_spot_pair_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        unified(name)


def test_tokens_come_from_the_spot_endpoint() -> None:
    """Spot and futures tokens cannot be mixed: each adapter asks its own host."""
    assert exchanges.get("kucoin").rest_url == REST_URL == "https://api.kucoin.com/api/v1/bullet-public"
    assert exchanges.get("kucoin_futures").rest_url != REST_URL


async def test_the_fake_serves_both_topics_through_a_fresh_token(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    fake = await start_fake(nursery, FakeKucoinSpot())
    config = make_config(prefix, {"kucoin": fake}, {"kucoin": [BTC, KCS]})
    await start_daemon(nursery, config)
    await until(fake, lambda: fake.is_subscribed(BTC) and fake.is_subscribed(KCS))
    [conn] = fake.connections
    assert fake.subscribed_topics(conn, KCS) == ["/market/snapshot", "/market/ticker"]
    with real_time(clock):
        await fake.push(KCS, bid=0.0001, ask=0.0002, volume=99.0)
        await updates.wait_for(
            lambda r: r["symbol"] == KCS and r["bid"] == 0.0001 and r["volume_24h"] == 99.0
        )
    assert fake.tokens_used == fake.tokens and fake.violations == []
