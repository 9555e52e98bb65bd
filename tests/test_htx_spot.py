"""HTX spot: the documented ``bbo`` and ``ticker`` frames merged into one record, gzip framing,
pings answered, acks and errors attributed to their requests, pair names both ways, and the
fake's refusals."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import start_fake
from tickerd import exchanges, transport
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.htx import GZIP
from tickerd.exchanges.htx_spot import HtxSpotDecoder, native
from tickerd.testing.htx_spot import FakeHtxSpot

BTC = "BTC/USDT"
#: HTX spot API, "market.$symbol.bbo (Best Bid/Offer)", "Example of a Data Update".
BBO: dict[str, Any] = {
    "ch": "market.btcusdt.bbo",
    "ts": 1630994555540,
    "tick": {
        "seqId": 137005210233,
        "ask": 52665.02,
        "askSize": 1.502181,
        "bid": 52665.01,
        "bidSize": 0.178567,
        "quoteTime": 1630994555539,
        "symbol": "btcusdt",
    },
}
#: "market.$symbol.ticker (Market Ticker)", "Example of a Data Update".
TICKER: dict[str, Any] = {
    "ch": "market.btcusdt.ticker",
    "ts": 1630982370526,
    "tick": {
        "open": 51732,
        "high": 52785.64,
        "low": 51000,
        "close": 52735.63,
        "amount": 13259.24137056181,
        "vol": 687640987.4125315,
        "count": 448737,
        "bid": 52732.88,
        "bidSize": 0.036,
        "ask": 52732.89,
        "askSize": 0.583653,
        "lastPrice": 52735.63,
        "lastSize": 0.03,
    },
}
#: The same pages' "Example of a Successful Subscription", and the heartbeat section's ping.
SUBSCRIBED = {"id": "id1", "status": "ok", "subbed": "market.btcusdt.bbo", "ts": 1489474081631}
PING = {"ping": 18212558000}
#: HTX's refusal of an unknown topic, with the request's id.
INVALID = {
    "id": "3",
    "status": "error",
    "err-code": "bad-request",
    "err-msg": "invalid topic market.nopeusdt.bbo",
    "ts": 1489474081631,
}


def gz(value: Any) -> bytes:
    return gzip.compress(orjson.dumps(value))


def decoder(*symbols: str) -> HtxSpotDecoder:
    return exchanges.get("htx").decoder(symbols)  # type: ignore[return-value]


def with_tick(frame: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``frame`` with tick fields replaced, or dropped where the change is ``None``."""
    tick = {k: v for k, v in frame["tick"].items() if changes.get(k, 0) is not None}
    tick.update({k: v for k, v in changes.items() if v is not None})
    return frame | {"tick": tick}


def test_the_documented_bbo_then_ticker_merge_into_one_ticker() -> None:
    d = decoder(BTC)
    [book] = d.decode(gz(BBO))
    assert (book.exchange, book.symbol, book.bid, book.ask, book.bid_size, book.ask_size) == (
        "htx",
        BTC,
        52665.01,
        52665.02,
        0.178567,
        1.502181,
    )
    assert (book.exchange_ts, book.sequence, book.last, book.volume_24h) == (
        1630994555.539,
        137005210233,
        None,
        None,
    )
    [t] = d.decode(gz(TICKER))
    assert (t.bid, t.ask, t.bid_size, t.sequence) == (52665.01, 52665.02, 0.178567, 137005210233)
    assert (t.last, t.volume_24h, t.high_24h, t.low_24h) == (52735.63, 13259.24137056181, 52785.64, 51000.0)
    assert t.change_24h == pytest.approx(1003.63) and t.change_pct_24h == pytest.approx(1003.63 / 51732 * 100)
    assert t.exchange_ts == 1630982370.526
    assert (t.mark_price, t.index_price, t.funding_rate, t.next_funding_ts, t.open_interest) == (None,) * 5
    assert d.junk == 0 and d.events == []


def test_the_tickers_own_lagging_book_is_not_read() -> None:
    [t] = decoder(BTC).decode(gz(TICKER))
    assert (t.bid, t.ask, t.bid_size, t.ask_size, t.sequence) == (None,) * 5


def test_an_older_book_than_the_merged_one_is_dropped() -> None:
    d = decoder(BTC)
    d.decode(gz(BBO))
    assert d.decode(gz(with_tick(BBO, seqId=137005210232, bid=1.0))) == []
    [t] = d.decode(gz(TICKER))
    assert t.bid == 52665.01 and d.junk == 0


def test_a_missing_side_has_no_price() -> None:
    [t] = decoder(BTC).decode(gz(with_tick(BBO, bid=None, bidSize=None)))
    assert (t.bid, t.bid_size, t.ask) == (None, None, 52665.02)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (with_tick(BBO, bid=-1), "bid -1.0 is not a valid price"),
        (with_tick(BBO, seqId=None), "missing field 'seqId'"),
        (with_tick(TICKER, amount=None), "missing field 'amount'"),
        (with_tick(TICKER, lastPrice=0), "last 0.0 is not a valid price"),
    ],
)
def test_an_insane_or_incomplete_frame_is_junk_and_leaves_the_merge(
    frame: dict[str, Any], reason: str
) -> None:
    d = decoder(BTC)
    d.decode(gz(BBO))
    d.decode(gz(TICKER))
    assert d.decode(gz(frame)) == []
    assert d.junk == 1 and reason in d.junk_reason
    [t] = d.decode(gz(with_tick(BBO, seqId=137005210234)))
    assert (t.bid, t.last) == (52665.01, 52735.63)


@pytest.mark.parametrize(
    "frame",
    [b"\x00\xff", '{"ch":"market.btcusdt.bbo"}', gz({"tickerd": "junk"}), gz([1, 2]), zlib.compress(b"{}")],
    ids=["binary", "text", "unknown", "array", "zlib-not-gzip"],
)
def test_what_is_not_a_gzip_frame_of_the_protocol_is_junk(frame: str | bytes) -> None:
    d = decoder(BTC)
    assert d.decode(frame) == [] and d.junk == 1


def test_late_frames_of_a_removed_pair_are_dropped_and_it_starts_afresh() -> None:
    d = decoder(BTC)
    d.decode(gz(BBO))
    d.unsubscribe([BTC])
    assert d.decode(gz(BBO)) == [] and d.decode(gz(TICKER)) == [] and d.junk == 0
    d.subscribe([BTC])
    [t] = d.decode(gz(TICKER))
    assert t.bid is None


def test_every_ping_is_answered_with_its_number() -> None:
    d = decoder(BTC)
    assert d.decode(gz(PING)) == []
    assert d.events == [Reply('{"pong":18212558000}')]


def test_each_topic_is_one_request_with_its_own_id() -> None:
    d = decoder()
    frames = [orjson.loads(f) for f in d.subscribe([BTC])]
    assert frames == [{"sub": "market.btcusdt.bbo", "id": "1"}, {"sub": "market.btcusdt.ticker", "id": "2"}]
    frames = [orjson.loads(f) for f in d.unsubscribe([BTC])]
    assert frames == [
        {"unsub": "market.btcusdt.bbo", "id": "3"},
        {"unsub": "market.btcusdt.ticker", "id": "4"},
    ]


def test_the_bbo_answer_speaks_for_the_pair_and_an_unknown_one_is_rejected() -> None:
    d = decoder()
    d.subscribe([BTC, "NOPE/USDT"])  # ids 1, 2 for BTC; 3, 4 for NOPE
    for request_id in ("1", "2"):
        assert d.decode(gz(SUBSCRIBED | {"id": request_id})) == []
    for request_id in ("3", "4"):
        assert d.decode(gz(INVALID | {"id": request_id})) == []
    assert d.events == [
        Subscribed(BTC),
        Rejected("NOPE/USDT", "bad-request: invalid topic market.nopeusdt.bbo"),
    ]
    assert d.junk == 0


@pytest.mark.parametrize(
    ("symbol", "name"), [(BTC, "btcusdt"), ("ETH/BTC", "ethbtc"), ("SOL/USDC", "solusdc")]
)
def test_pair_names_both_ways(symbol: str, name: str) -> None:
    assert native(symbol) == name
    assert FakeHtxSpot().topic_symbol(f"market.{name}.ticker") == symbol


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "BTC/USD:BTC", "BTC/USDT:USDT-261225"])
def test_derivatives_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match=r"spot only|serves no dated futures"):
        exchanges.get("htx").check_symbol(symbol)


async def _answer(conn: transport.Connection) -> dict[str, Any]:
    """The next frame from the fake that is not a ping, decompressed."""
    while "ping" in (msg := orjson.loads(zlib.decompress(await conn.receive(), GZIP))):  # type: ignore[arg-type]
        pass
    return msg  # type: ignore[no-any-return]


async def test_the_fake_counts_answered_pings_and_refuses_unlisted_pairs(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeHtxSpot())
    fake.reject("NOPE/USDT")
    async with transport.connect(fake.url) as conn:
        ping = orjson.loads(zlib.decompress(await conn.receive(), GZIP))  # type: ignore[arg-type]
        await conn.send(orjson.dumps({"pong": ping["ping"]}).decode())
        for request_id, topic in (("7", "market.nopeusdt.bbo"), ("8", "market.btcxyz.bbo")):
            await conn.send(orjson.dumps({"sub": topic, "id": request_id}).decode())
            error = await _answer(conn)
            assert (error["id"], error["status"], error["err-code"]) == (request_id, "error", "bad-request")
        await conn.send('{"sub":"market.btcusdt.bbo","id":"9"}')
        assert (await _answer(conn))["subbed"] == "market.btcusdt.bbo"
    assert fake.keepalives == 1
