"""HTX USDT-margined contracts: ``bbo``, ``detail`` and the funding rate decoded from the
documentation's frames and merged across the two endpoints, gzip framing, pings of both protocols
answered, acks and errors attributed to their requests, contract codes both ways, a dated future
through the daemon, and the fake's heartbeat rule."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest
import redis
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, until, wait_health
from tickerd import exchanges, transport
from tickerd.exchanges.base import Decoder, Rejected, Reply, Subscribed
from tickerd.exchanges.htx import GZIP
from tickerd.exchanges.htx_swap import HtxFundingDecoder, HtxSwapDecoder, native
from tickerd.testing.htx import MISSED_PINGS
from tickerd.testing.htx_swap import FakeHtxSwap

SWAP = "BTC/USDT:USDT"
#: "[General] Subscribe market BBO data push", "Example of a Data Update".
BBO = {
    "ch": "market.BTC-USDT.bbo",
    "ts": 1603707934525,
    "tick": {
        "mrid": 131599726,
        "id": 1603707934,
        "bid": [13064, 38],
        "ask": [13072.3, 205],
        "ts": 1603707934525,
        "version": 131599726,
        "ch": "market.BTC-USDT.bbo",
    },
}
#: "[General] Subscribe Market Detail Data", "Example of a Data Update".
DETAIL = {
    "ch": "market.BTC-USDT.detail",
    "ts": 1603707870528,
    "tick": {
        "id": 1603707840,
        "mrid": 131599205,
        "open": 12916.2,
        "close": 13065.8,
        "high": 13205.3,
        "low": 12852.8,
        "amount": 30.316,
        "vol": 30316,
        "trade_turnover": 395073.4918,
        "count": 2983,
        "asks": [13081.9, 206],
        "bids": [13071.9, 38],
    },
}
#: The same pages' successful subscription, and the Market Heartbeat section's ping.
SUBSCRIBED = {"id": "id8", "status": "ok", "subbed": "market.BTC-USDT.bbo", "ts": 1489474081631}
PING = {"ping": 18212558000}
#: "[General] Subscribe funding rate (no authentication)（sub）": the data update, the successful
#: subscription, and the Order Push Heartbeat section's ping.
FUNDING = {
    "op": "notify",
    "topic": "public.BTC-USDT.funding_rate",
    "ts": 1603778748166,
    "data": [
        {
            "symbol": "BTC",
            "contract_code": "BTC-USDT",
            "fee_asset": "USDT",
            "funding_time": "1603778700000",
            "funding_rate": "-0.000220068774978695",
            "settlement_time": "1603785600000",
            "estimated_rate": "null",
        }
    ],
}
FUNDING_SUBSCRIBED = {
    "op": "sub",
    "cid": "40sG903yz80oDFWr",
    "topic": "public.btc-usdt.funding_rate",
    "ts": 1670903745088,
    "err-code": 0,
}
OP_PING = {"op": "ping", "ts": "1492420473058"}
#: HTX's refusal of an unknown topic (spot documentation's form, with the request's id).
INVALID = {
    "id": "1",
    "status": "error",
    "err-code": "bad-request",
    "err-msg": "invalid topic market.NOPE-USDT.bbo",
}


def gz(value: Any) -> bytes:
    return gzip.compress(orjson.dumps(value))


def decoder(*symbols: str) -> HtxSwapDecoder:
    return exchanges.get("htx_swap").decoder(symbols)  # type: ignore[return-value]


def pair(*symbols: str) -> tuple[Decoder, Decoder]:
    """The market and funding decoders of one set of symbols, sharing its merged state."""
    adapter = exchanges.get("htx_swap")
    merged = adapter.merged_state()
    return adapter.decoder(symbols, "market", merged), adapter.decoder(symbols, "funding", merged)


def with_tick(frame: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``frame`` with tick fields replaced, or dropped where the change is ``None``."""
    tick = {k: v for k, v in frame["tick"].items() if changes.get(k, 0) is not None}
    tick.update({k: v for k, v in changes.items() if v is not None})
    return frame | {"tick": tick}


def test_the_documented_bbo_then_detail_merge_into_one_ticker() -> None:
    d = decoder(SWAP)
    [book] = d.decode(gz(BBO))
    assert (book.symbol, book.bid, book.ask, book.bid_size, book.ask_size) == (
        SWAP,
        13064.0,
        13072.3,
        38.0,
        205.0,
    )
    assert (book.exchange_ts, book.sequence, book.last, book.volume_24h) == (
        1603707934.525,
        131599726,
        None,
        None,
    )
    [t] = d.decode(gz(DETAIL))
    assert (t.bid, t.ask, t.sequence) == (13064.0, 13072.3, 131599726)  # detail's lagging book is not read
    assert (t.last, t.volume_24h, t.high_24h, t.low_24h) == (13065.8, 30.316, 13205.3, 12852.8)
    assert t.change_24h == pytest.approx(149.6) and t.change_pct_24h == pytest.approx(149.6 / 12916.2 * 100)
    assert t.exchange_ts == 1603707870.528
    assert (t.mark_price, t.index_price, t.funding_rate, t.next_funding_ts, t.open_interest) == (None,) * 5
    assert d.junk == 0 and d.events == []


def test_an_older_book_than_the_merged_one_is_dropped() -> None:
    d = decoder(SWAP)
    d.decode(gz(BBO))
    assert d.decode(gz(with_tick(BBO, version=131599725, bid=[1.0, 1]))) == []
    [t] = d.decode(gz(DETAIL))
    assert t.bid == 13064.0 and d.junk == 0


def test_a_side_without_orders_has_no_price() -> None:
    [t] = decoder(SWAP).decode(gz(with_tick(BBO, bid=None)))
    assert (t.bid, t.bid_size, t.ask) == (None, None, 13072.3)


def test_dated_futures_route_by_their_contract_code() -> None:
    future = "BTC/USDT:USDT-261225"
    frame = BBO | {"ch": "market.BTC-USDT-261225.bbo"}
    [t] = decoder(SWAP, future).decode(gz(frame))
    assert t.symbol == future


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (with_tick(BBO, bid=[-1, 38]), "bid -1.0 is not a valid price"),
        (with_tick(BBO, version=None), "missing field 'version'"),
        (with_tick(DETAIL, amount=None), "missing field 'amount'"),
    ],
)
def test_an_insane_or_incomplete_frame_is_junk_and_leaves_the_merge(
    frame: dict[str, Any], reason: str
) -> None:
    d = decoder(SWAP)
    d.decode(gz(BBO))
    assert d.decode(gz(frame)) == []
    assert d.junk == 1 and reason in d.junk_reason
    [t] = d.decode(gz(DETAIL))
    assert t.bid == 13064.0


@pytest.mark.parametrize(
    "frame",
    [b"\x00\xff", '{"ch":"market.BTC-USDT.bbo"}', gz({"tickerd": "junk"}), gz([1, 2]), zlib.compress(b"{}")],
    ids=["binary", "text", "unknown", "array", "zlib-not-gzip"],
)
def test_what_is_not_a_gzip_frame_of_the_protocol_is_junk(frame: str | bytes) -> None:
    d = decoder(SWAP)
    assert d.decode(frame) == [] and d.junk == 1


def test_late_frames_of_a_removed_symbol_are_dropped_without_junk() -> None:
    d = decoder(SWAP)
    d.unsubscribe([SWAP])
    assert d.decode(gz(BBO)) == [] and d.decode(gz(DETAIL)) == [] and d.junk == 0


def test_every_ping_is_answered_with_its_number() -> None:
    d = decoder(SWAP)
    assert d.decode(gz(PING)) == []
    assert d.events == [Reply('{"pong":18212558000}')]


def test_each_topic_is_one_request_with_its_own_id() -> None:
    d = decoder()
    frames = [orjson.loads(f) for f in d.subscribe([SWAP])]
    assert frames == [{"sub": "market.BTC-USDT.bbo", "id": "1"}, {"sub": "market.BTC-USDT.detail", "id": "2"}]
    frames = [orjson.loads(f) for f in d.unsubscribe([SWAP])]
    assert frames == [
        {"unsub": "market.BTC-USDT.bbo", "id": "3"},
        {"unsub": "market.BTC-USDT.detail", "id": "4"},
    ]


def test_the_bbo_answer_speaks_for_the_symbol() -> None:
    d = decoder()
    d.subscribe([SWAP, "NOPE/USDT:USDT"])  # ids 1, 2 for BTC; 3, 4 for NOPE
    for request_id in ("1", "2"):
        assert d.decode(gz(SUBSCRIBED | {"id": request_id})) == []
    for request_id in ("3", "4"):
        assert d.decode(gz(INVALID | {"id": request_id})) == []
    assert d.events == [
        Subscribed(SWAP),
        Rejected("NOPE/USDT:USDT", "bad-request: invalid topic market.NOPE-USDT.bbo"),
    ]
    assert d.junk == 0


def test_answers_to_no_request_of_ours_change_nothing() -> None:
    d = decoder(SWAP)
    d.decode(gz(SUBSCRIBED))  # the documentation's id8: never sent
    d.decode(gz({"id": "9", "status": "ok", "unsubbed": "market.BTC-USDT.bbo", "ts": 1489474081631}))
    # HTX's answer to a malformed pong (the spot heartbeat documentation's): it names no request.
    d.decode(
        gz({"ts": 1492420473027, "status": "error", "err-code": "bad-request", "err-msg": "invalid ping"})
    )
    assert d.events == [] and d.junk == 0


@pytest.mark.parametrize(
    ("symbol", "code"),
    [
        ("BTC/USDT:USDT", "BTC-USDT"),
        ("ETH/USDT:USDT", "ETH-USDT"),
        ("BTC/USDT:USDT-261225", "BTC-USDT-261225"),
    ],
)
def test_symbols_map_to_contract_codes_and_back(symbol: str, code: str) -> None:
    assert native(symbol) == code
    assert FakeHtxSwap().topic_symbol(f"market.{code}.bbo") == symbol


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USD:BTC", "BTC/USDC:USDC", "BTC/USDT:BTC"])
def test_other_markets_are_refused_naming_the_forms(symbol: str) -> None:
    with pytest.raises(
        ValueError, match=r"USDT-margined contracts only \(BASE/USDT:USDT, BASE/USDT:USDT-YYMMDD\)"
    ):
        exchanges.get("htx_swap").check_symbol(symbol)


def test_the_documented_funding_rate_merges_with_the_book_of_the_other_connection() -> None:
    books, funding = pair(SWAP)
    assert isinstance(books, HtxSwapDecoder) and isinstance(funding, HtxFundingDecoder)
    [t] = funding.decode(gz(FUNDING))
    assert (t.funding_rate, t.next_funding_ts, t.bid, t.exchange_ts) == (
        -0.000220068774978695,
        1603785600.0,
        None,
        1603778748.166,
    )
    [t] = books.decode(gz(BBO))
    assert (t.bid, t.funding_rate, t.next_funding_ts) == (13064.0, -0.000220068774978695, 1603785600.0)
    [t] = funding.decode(gz(FUNDING))
    assert (t.bid, t.sequence) == (13064.0, 131599726)  # the book stays in the merged record
    assert books.junk == funding.junk == 0


def test_a_removed_symbol_starts_afresh_when_added_again() -> None:
    books, funding = pair(SWAP)
    books.decode(gz(BBO))
    books.unsubscribe([SWAP])
    funding.unsubscribe([SWAP])
    books.subscribe([SWAP])
    funding.subscribe([SWAP])
    [t] = funding.decode(gz(FUNDING))
    assert t.bid is None


def test_the_funding_connection_speaks_the_notification_protocol() -> None:
    _, funding = pair()
    frames = [orjson.loads(f) for f in funding.subscribe([SWAP, "BTC/USDT:USDT-261225"])]
    assert frames == [{"op": "sub", "topic": "public.BTC-USDT.funding_rate", "cid": "1"}]
    assert funding.events == [Subscribed("BTC/USDT:USDT-261225")]  # no funding: nothing to subscribe
    funding.events.clear()
    assert funding.decode(gz(FUNDING_SUBSCRIBED | {"cid": "1"})) == []
    assert funding.decode(gz(OP_PING)) == []
    assert funding.events == [Subscribed(SWAP), Reply('{"op":"pong","ts":"1492420473058"}')]
    frames = [orjson.loads(f) for f in funding.unsubscribe([SWAP, "BTC/USDT:USDT-261225"])]
    assert frames == [{"op": "unsub", "topic": "public.BTC-USDT.funding_rate", "cid": "2"}]
    assert funding.junk == 0


def test_a_refused_funding_topic_rejects_its_symbol() -> None:
    _, funding = pair()
    funding.subscribe(["NOPE/USDT:USDT"])
    refusal = {"op": "sub", "cid": "1", "topic": "public.NOPE-USDT.funding_rate", "ts": 1670903745088}
    funding.decode(gz(refusal | {"err-code": 2011, "err-msg": "Contract doesn't exist."}))
    assert funding.events == [Rejected("NOPE/USDT:USDT", "2011: Contract doesn't exist.")]


@pytest.mark.parametrize(
    "frame",
    [b"\x00\xff", '{"op":"ping","ts":"1"}', gz({"op": "close", "ts": 1}), gz({"tickerd": "junk"})],
    ids=["binary", "text", "close", "unknown"],
)
def test_what_the_funding_decoder_does_not_know_is_junk(frame: str | bytes) -> None:
    _, funding = pair(SWAP)
    assert funding.decode(frame) == [] and funding.junk == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://api.hbdm.com/linear-swap-ws", "wss://api.hbdm.com/linear-swap-notification"),
        ("wss://api.hbdm.vn/linear-swap-ws", "wss://api.hbdm.vn/linear-swap-notification"),
        ("ws://127.0.0.1:8000/linear-swap-ws", "ws://127.0.0.1:8000/linear-swap-notification"),
    ],
)
def test_the_funding_endpoint_is_the_market_endpoints_sibling(url: str, expected: str) -> None:
    adapter = exchanges.get("htx_swap")
    assert adapter.endpoint(url, SWAP, "market") == url
    assert adapter.endpoint(url, SWAP, "funding") == expected


async def test_a_dated_future_is_served_by_the_market_connection_alone(
    clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    redis_client: redis.Redis,
    prefix: str,
    updates: Updates,
) -> None:
    future = "BTC/USDT:USDT-261225"
    fake = await start_fake(nursery, FakeHtxSwap())
    config = make_config(prefix, {"htx_swap": fake}, {"htx_swap": [future, SWAP]})
    daemon = await start_daemon(nursery, config)
    await until(fake, lambda: len(fake.subscribers(future)) == 1 and len(fake.subscribers(SWAP)) == 2)
    await wait_health(daemon, lambda h: h.exchanges["htx_swap"].symbols == (SWAP, future))
    clock.autojump_threshold, clock.rate = float("inf"), 1.0  # the writer's thread works in real time
    await fake.push(future, bid=100.0, ask=101.0)
    record = await updates.wait_for(lambda r: r["symbol"] == future and r["bid"] == 100.0)
    assert (record["funding_rate"], record["next_funding_ts"]) == (None, None)
    assert not daemon.health().exchanges["htx_swap"].rejected


async def _answer(conn: transport.Connection) -> dict[str, Any]:
    """The next frame from the fake that is not a ping, decompressed."""
    while "ping" in (msg := orjson.loads(zlib.decompress(await conn.receive(), GZIP))):  # type: ignore[arg-type]
        pass
    return msg  # type: ignore[no-any-return]


async def test_the_fake_closes_a_connection_that_leaves_its_pings_unanswered(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeHtxSwap())
    async with transport.connect(fake.url) as conn:
        await conn.send('{"sub":"market.BTC-USDT.bbo","id":"1"}')
        assert (await _answer(conn))["subbed"] == "market.BTC-USDT.bbo"
        pings = 0
        with pytest.raises(transport.TransportError):
            while True:
                pings += "ping" in orjson.loads(zlib.decompress(await conn.receive(), GZIP))  # type: ignore[arg-type]
    assert pings == MISSED_PINGS
    assert fake.violations == [f"{MISSED_PINGS} pings unanswered: connection closed"]
    assert fake.keepalives == 0


async def test_the_fake_counts_answered_pings_and_refuses_unknown_topics(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeHtxSwap())
    async with transport.connect(fake.url) as conn:
        ping = orjson.loads(zlib.decompress(await conn.receive(), GZIP))  # type: ignore[arg-type]
        await conn.send(orjson.dumps({"pong": ping["ping"]}).decode())
        await conn.send('{"sub":"market.BTC-USD.bbo","id":"7"}')
        error = await _answer(conn)
        assert (error["id"], error["status"], error["err-code"]) == ("7", "error", "bad-request")
        await conn.send('{"unsub":"market.BTC-USDT.bbo","id":"8"}')  # never subscribed
        assert (await _answer(conn))["status"] == "error"
    assert fake.keepalives == 1 and not fake.changes
