"""KuCoin Futures: the documentation's frames decoded and merged, the protocol (welcome, acks,
errors, pings), symbol forms, and the token path (``bullet-public``) against the fake's REST
endpoint: a fresh token on every connection, and a failing REST call retried with backoff while
other exchanges go on."""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, until, wait_health
from tests.test_exchange_contract import real_time
from tickerd import exchanges
from tickerd.config import ConfigError, structure
from tickerd.exchanges import kucoin
from tickerd.exchanges.base import Keepalive, Rejected, Reply, ResolveError, Subscribed
from tickerd.exchanges.kucoin import MergedState
from tickerd.exchanges.kucoin_futures import KucoinFuturesDecoder, native, unified
from tickerd.testing.kraken import FakeKraken
from tickerd.testing.kucoin_futures import FakeKucoinFutures

LINEAR = "BTC/USDT:USDT"
INVERSE = "BTC/USD:BTC"

#: The documentation's examples (kucoin.com/docs-new): "Get Ticker v2" (3470080w0), "Symbol
#: Snapshot" (3470089w0) and "Instrument" (3470087w0: mark and index; funding rate).
TICKER_V2 = (
    '{"topic":"/contractMarket/tickerV2:XBTUSDTM","type":"message","subject":"tickerV2",'
    '"sn":1713516609293,"data":{"symbol":"XBTUSDTM","sequence":1713516609293,"bestBidSize":5044,'
    '"bestBidPrice":"86454.5","bestAskPrice":"86454.6","bestAskSize":73,"ts":1740641976241000000}}'
)
SNAPSHOT = (
    '{"topic":"/contractMarket/snapshot:XBTUSDTM","type":"message","subject":"snapshot.24h",'
    '"id":"67c01b710329940001118cb1","data":{"highPrice":89299.9,"lastPrice":86262.6,'
    '"lowPrice":82205.2,"price24HoursBefore":88762.5,"priceChg":-2499.9,"priceChgPct":-0.0281,'
    '"symbol":"XBTUSDTM","turnover":1033552780.2532196044,"volume":12062.039,'
    '"ts":1740643185017646670}}'
)
MARK = (
    '{"topic":"/contract/instrument:XBTUSDTM","type":"message","subject":"mark.index.price",'
    '"data":{"markPrice":90445.02,"indexPrice":90445.02,"granularity":1000,"timestamp":1731899129000}}'
)
FUNDING = (
    '{"topic":"/contract/instrument:XBTUSDTM","subject":"funding.rate",'
    '"data":{"granularity":60000,"fundingRate":-0.002966,"timestamp":1551770400000}}'
)
#: The introduction's example of the server's greeting.
WELCOME = '{"id":"hQvf8jkno","type":"welcome"}'


def decoder(*symbols: str, merged: MergedState | None = None) -> KucoinFuturesDecoder:
    return exchanges.get("kucoin_futures").decoder(symbols, "", merged)  # type: ignore[return-value]


def welcomed(*symbols: str, merged: MergedState | None = None) -> KucoinFuturesDecoder:
    d = decoder(*symbols, merged=merged)
    d.subscribe(list(symbols))
    d.decode(WELCOME)
    d.events.clear()
    return d


def test_the_documented_frames_merge_into_one_record() -> None:
    d = welcomed(LINEAR)
    [book] = d.decode(TICKER_V2)
    assert (book.bid, book.ask, book.bid_size, book.ask_size) == (86454.5, 86454.6, 5044.0, 73.0)
    assert book.sequence == 1713516609293 and book.exchange_ts == pytest.approx(1740641976.241)
    assert book.last is None and book.mark_price is None
    [stats] = d.decode(SNAPSHOT)
    assert (stats.last, stats.high_24h, stats.low_24h, stats.volume_24h) == (
        86262.6,
        89299.9,
        82205.2,
        12062.039,
    )
    assert stats.change_24h == -2499.9 and stats.change_pct_24h == pytest.approx(-2.81)
    assert (stats.bid, stats.sequence) == (86454.5, 1713516609293)  # the book stays
    [mark] = d.decode(MARK)
    assert (mark.mark_price, mark.index_price, mark.exchange_ts) == (90445.02, 90445.02, 1731899129.0)
    [funded] = d.decode(FUNDING)
    assert funded.funding_rate == -0.002966 and funded.mark_price == 90445.02 and funded.last == 86262.6
    assert funded.symbol == LINEAR and funded.exchange == "kucoin_futures"
    assert (funded.open_interest, funded.next_funding_ts) == (None, None)
    assert d.junk == 0


def test_a_book_older_than_the_merged_one_is_dropped() -> None:
    d = welcomed(LINEAR)
    d.decode(TICKER_V2)
    older = TICKER_V2.replace('"sequence":1713516609293', '"sequence":1713516609000')
    assert d.decode(older) == [] and d.junk == 0


def test_the_record_outlives_a_reconnect() -> None:
    """``funding.rate`` comes once a minute: a new connection's first book keeps it."""
    merged: MergedState = {}
    welcomed(LINEAR, merged=merged).decode(FUNDING)
    [ticker] = welcomed(LINEAR, merged=merged).decode(TICKER_V2)
    assert ticker.funding_rate == -0.002966


def test_an_insane_frame_is_junk_and_leaves_the_record() -> None:
    d = welcomed(LINEAR)
    d.decode(TICKER_V2)
    assert d.decode(MARK.replace('"markPrice":90445.02', '"markPrice":-1')) == []
    assert d.junk == 1 and "mark_price -1.0 is not a valid price" in d.junk_reason
    [ticker] = d.decode(FUNDING)
    assert ticker.mark_price is None and ticker.bid == 86454.5


def replies(d: KucoinFuturesDecoder) -> list[dict[str, Any]]:
    """The requests the decoder asked to send, decoded; the events are cleared."""
    frames = [orjson.loads(event.frame) for event in d.events if isinstance(event, Reply)]
    d.events.clear()
    return frames


def test_requests_wait_for_the_welcome_one_a_topic_the_bbo_last() -> None:
    d = decoder(LINEAR)
    assert d.subscribe([LINEAR, INVERSE]) == []  # held until the welcome
    assert d.decode(WELCOME) == []
    frames = replies(d)
    assert [f["topic"] for f in frames] == [
        "/contract/instrument:XBTUSDTM,XBTUSDM",
        "/contractMarket/snapshot:XBTUSDTM,XBTUSDM",
        "/contractMarket/tickerV2:XBTUSDTM,XBTUSDM",
    ]
    assert {(f["type"], f["privateChannel"], f["response"]) for f in frames} == {("subscribe", False, True)}
    assert len({f["id"] for f in frames}) == 3
    [unsubscribe, *_] = [orjson.loads(frame) for frame in d.unsubscribe([INVERSE])]  # sent at once now
    assert unsubscribe["type"] == "unsubscribe" and unsubscribe["topic"] == "/contract/instrument:XBTUSDM"


def test_at_most_100_symbols_a_request() -> None:
    symbols = [f"C{n}/USDT:USDT" for n in range(150)]
    d = welcomed()
    topics = [orjson.loads(frame)["topic"] for frame in d.subscribe(symbols)]
    assert [topic.count(",") + 1 for topic in topics] == [100, 100, 100, 50, 50, 50]


def test_the_bbo_ack_subscribes_its_symbols() -> None:
    d = decoder(LINEAR, INVERSE)
    d.subscribe([LINEAR, INVERSE])
    d.decode(WELCOME)
    instrument, snapshot, bbo = (f["id"] for f in replies(d))
    for request in (instrument, snapshot):
        assert d.decode(f'{{"id":"{request}","type":"ack"}}') == []
    assert d.events == []
    d.decode(f'{{"id":"{bbo}","type":"ack"}}')
    assert d.events == [Subscribed(LINEAR), Subscribed(INVERSE)] and d.junk == 0


def test_a_refused_request_is_asked_again_symbol_by_symbol_and_the_bad_one_rejected() -> None:
    unknown = "NOPE/USDT:USDT"
    d = decoder(LINEAR, unknown)
    d.subscribe([LINEAR, unknown])
    d.decode(WELCOME)
    instrument, _, bbo = (f["id"] for f in replies(d))
    error = '{{"id":"{}","type":"error","code":404,"data":"topic {} is not found"}}'
    d.decode(error.format(instrument, "/contract/instrument:XBTUSDTM,NOPEUSDTM"))
    assert [f["topic"] for f in replies(d)] == [
        "/contract/instrument:XBTUSDTM",
        "/contract/instrument:NOPEUSDTM",
    ]
    d.decode(error.format(bbo, "/contractMarket/tickerV2:XBTUSDTM,NOPEUSDTM"))
    good, bad = (f["id"] for f in replies(d))
    d.decode(f'{{"id":"{good}","type":"ack"}}')
    d.decode(error.format(bad, "/contractMarket/tickerV2:NOPEUSDTM"))
    assert d.events == [
        Subscribed(LINEAR),
        Rejected(unknown, f"{unknown}: code 404: topic /contractMarket/tickerV2:NOPEUSDTM is not found"),
    ]
    assert d.junk == 0


@pytest.mark.parametrize(
    "frame",
    [
        '{"id":"tickerd","type":"pong"}',
        TICKER_V2.replace("XBTUSDTM", "ETHUSDTM"),  # a late frame of a symbol no longer tracked
        FUNDING.replace("XBTUSDTM", "ETHUSDTM"),
    ],
)
def test_pongs_and_late_frames_are_not_junk(frame: str) -> None:
    d = welcomed(LINEAR)
    assert d.decode(frame) == [] and d.junk == 0


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"error","code":401,"data":"token is invalid"}',
        '{"id":"1","type":"notice"}',
        TICKER_V2.replace('"subject":"tickerV2"', '"subject":"level2"'),
        TICKER_V2.replace('"bestBidPrice":"86454.5",', ""),
        "garbage",
    ],
)
def test_frames_of_no_known_kind_are_junk(frame: str) -> None:
    d = welcomed(LINEAR)
    assert d.decode(frame) == [] and d.junk == 1


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        (LINEAR, "XBTUSDTM"),
        ("ETH/USDT:USDT", "ETHUSDTM"),
        ("BTC/USDC:USDC", "XBTUSDCM"),
        (INVERSE, "XBTUSDM"),
        ("ETH/USD:ETH", "ETHUSDM"),
    ],
)
def test_symbols_map_to_contracts_and_back(symbol: str, name: str) -> None:
    exchanges.get("kucoin_futures").check_symbol(symbol)
    assert native(symbol) == name and unified(name) == symbol


@pytest.mark.parametrize(
    ("symbol", "error"),
    [
        ("BTC/USDT", "serves perpetuals only"),
        ("BTC/USD:USD", "serves perpetuals only"),
        ("BTC/USDT:BTC", "serves perpetuals only"),
        ("BTC/USDT:USDT-261225", "serves no dated futures"),
    ],
)
def test_other_markets_are_refused_naming_the_forms(symbol: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        exchanges.get("kucoin_futures").check_symbol(symbol)


@pytest.mark.parametrize("name", ["XBTUSDT", "USDTM", "XBTMZ25"])
def test_names_of_no_perpetual_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        unified(name)


# -- the token path ------------------------------------------------------------------------


async def test_the_token_answer_gives_endpoint_token_and_ping_times(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery, FakeKucoinFutures())
    resolved = await exchanges.get("kucoin_futures").resolve("wss://unused", "", fake.rest_url)
    url = urlsplit(resolved.url)
    query = parse_qs(url.query)
    assert resolved.url.startswith(fake.url + "?") and query["token"] == fake.tokens
    assert len(query["connectId"][0]) == 16
    assert resolved.keepalive == Keepalive(9.0, kucoin.PING)  # half of pingInterval 18000 ms
    assert resolved.silence_timeout == 28.0  # pingInterval + pingTimeout


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("error", "HTTP 500 Internal Server Error"),
        ("junk", "not a token answer (JSONDecodeError"),
        ("hangup", "RemoteProtocolError: Server disconnected without sending a response"),
    ],
)
async def test_a_failing_token_call_is_a_resolve_error_naming_it(
    nursery: trio.Nursery, fault: str, reason: str
) -> None:
    fake = await start_fake(nursery, FakeKucoinFutures())
    fake.bullet_fault = fault
    with pytest.raises(ResolveError, match=re.escape(f"bullet-public {fake.rest_url}: {reason}")):
        await kucoin.bullet(fake.rest_url)
    assert len(fake.bullet_times) == 1 and fake.tokens == []


async def test_a_refused_token_call_and_an_error_code_are_resolve_errors(nursery: trio.Nursery) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    closed = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/api/v1/bullet-public"
    await listener.aclose()  # nothing listens there now
    with pytest.raises(ResolveError, match="ConnectError"):
        await kucoin.bullet(closed)
    fake = await start_fake(nursery, FakeKucoinFutures())
    with pytest.raises(ResolveError, match="HTTP 404"):
        await kucoin.bullet(fake.rest_url.replace("bullet-public", "bullet-private"))


async def test_every_connection_brings_a_fresh_token(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    fake = await start_fake(nursery, FakeKucoinFutures())
    config = make_config(prefix, {"kucoin_futures": fake}, {"kucoin_futures": [LINEAR]})
    daemon = await start_daemon(nursery, config)
    await until(fake, lambda: fake.is_subscribed(LINEAR))
    await fake.drop()
    await until(fake, lambda: fake.connection_count == 2 and fake.is_subscribed(LINEAR), within=60)
    assert fake.tokens_used == fake.tokens and len(set(fake.tokens)) == 2
    assert fake.violations == []
    assert daemon.health().exchanges["kucoin_futures"].reconnects == 1


async def test_a_failing_token_call_backs_off_and_leaves_other_exchanges_alone(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    kucoin_fake = FakeKucoinFutures()
    kucoin_fake.bullet_fault = "error"
    kucoin_fake = await start_fake(nursery, kucoin_fake)
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(
        prefix,
        {"kucoin_futures": kucoin_fake, "kraken": kraken},
        {"kucoin_futures": [LINEAR], "kraken": ["BTC/USD"]},
        feed={"reconnect_delay": 1.0, "max_reconnect_delay": 60.0},
    )
    daemon = await start_daemon(nursery, config)
    await until(kucoin_fake, lambda: len(kucoin_fake.bullet_times) >= 5, within=600)
    gaps = [b - a for a, b in itertools.pairwise(kucoin_fake.bullet_times)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))  # doubling
    assert kucoin_fake.connection_count == 0  # no token, no websocket
    health = daemon.health().exchanges["kucoin_futures"]
    assert health.state == "down" and health.reconnects >= 4  # no connection at all
    assert health.last_error == f"bullet-public {kucoin_fake.rest_url}: HTTP 500 Internal Server Error"

    await until(kraken, lambda: kraken.is_subscribed("BTC/USD"))  # the other exchange goes on
    with real_time(clock):
        await kraken.push("BTC/USD", bid=70.0, ask=71.0)
        await updates.wait_for(lambda r: r["exchange"] == "kraken" and r["bid"] == 70.0)
    assert daemon.health().exchanges["kraken"].reconnects == 0

    kucoin_fake.bullet_fault = None  # the REST endpoint is back: the next retry connects
    await until(kucoin_fake, lambda: kucoin_fake.is_subscribed(LINEAR), within=600)
    await wait_health(daemon, lambda h: h.exchanges["kucoin_futures"].state == "connected", within=60)
    assert kucoin_fake.tokens_used == kucoin_fake.tokens


async def test_silence_past_ping_interval_and_timeout_ends_the_connection(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    """KuCoin's bound (18 + 10 s without a pong), not ``feed.silence_timeout`` (an hour here)."""
    fake = await start_fake(nursery, FakeKucoinFutures())
    config = make_config(
        prefix, {"kucoin_futures": fake}, {"kucoin_futures": [LINEAR]}, feed={"silence_timeout": 3600.0}
    )
    await start_daemon(nursery, config)
    await until(fake, lambda: fake.is_subscribed(LINEAR))
    fake.silent = True
    went_silent = trio.current_time()
    await until(fake, lambda: fake.connection_count == 2, within=120)
    assert 28.0 <= fake.attempt_times[-1] - went_silent < 28.0 + 28.0 / 4 + 2.0  # watchdog + backoff


def test_rest_url_is_validated() -> None:
    structure({"exchanges": {"kucoin_futures": {"rest_url": "http://127.0.0.1:8080/api/v1/bullet-public"}}})
    with pytest.raises(ConfigError, match=r"rest_url: expected http://HOST\[:PORT\]/PATH"):
        structure({"exchanges": {"kucoin_futures": {"rest_url": "ws://127.0.0.1/x"}}})
