"""Gate.io spot: the documented ``spot.tickers`` and ``spot.book_ticker`` pushes merged into one
record, requests answered by id, refusals, pongs, pair names both ways, and the fake's refusals."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import start_fake
from tickerd import exchanges, transport
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio import BOOK, TICKERS, Gateio, GateioDecoder
from tickerd.testing.gateio import FakeGateio

BTC = "BTC/USDT"
ETH = "ETH/USDT"
#: https://www.gate.com/docs/developers/apiv4/ws/en/, "Tickers Channel", the notification
#: example (it carries ``time`` alone; live pushes add ``time_ms``).
TICKER = """{
  "time": 1606291803,
  "channel": "spot.tickers",
  "event": "update",
  "result": {
    "currency_pair": "BTC_USDT",
    "last": "19106.55",
    "lowest_ask": "19108.71",
    "highest_bid": "19106.55",
    "change_percentage": "3.66",
    "base_volume": "2811.3042155865",
    "quote_volume": "53441606.52411221454674732293",
    "high_24h": "19417.74",
    "low_24h": "18434.21"
  }
}"""
#: The same page, "Best bid or ask price", the notification example.
BOOK_TICKER = """{
  "time": 1606293275,
  "time_ms": 1606293275723,
  "channel": "spot.book_ticker",
  "event": "update",
  "result": {
    "t": 1606293275123,
    "u": 48733182,
    "s": "BTC_USDT",
    "b": "19177.79",
    "B": "0.0003341504",
    "a": "19179.38",
    "A": "0.09"
  }
}"""
#: The page's "Application ping pong" answer.
PONG = '{"time": 1545404023, "time_ms": 1545404023123, "channel": "spot.pong", "event": "", "result": null}'


def decoder(*symbols: str) -> GateioDecoder:
    return exchanges.get("gateio").decoder(symbols)  # type: ignore[return-value]


def answer(request: str, error: dict[str, object] | None = None) -> str:
    """The answer to ``request`` as the page shows it (``time``, ``time_ms``, the request's
    ``channel`` and ``event``, ``{"status": "success"}``), with the ``id`` sent back and, on
    failure, the error object."""
    msg = orjson.loads(request)
    answer = {
        "time": msg["time"],
        "time_ms": msg["time"] * 1000 + 231,
        "id": msg["id"],
        "channel": msg["channel"],
        "event": msg["event"],
        "result": {"status": "success"},
    }
    if error:
        answer |= {"error": error, "result": None}
    return orjson.dumps(answer).decode()


def test_the_documented_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(TICKER)
    assert (t.exchange, t.symbol, t.last) == ("gateio", BTC, 19106.55)
    assert (t.bid, t.ask, t.bid_size, t.ask_size, t.sequence) == (None,) * 5  # its prices lag the book
    assert (t.volume_24h, t.high_24h, t.low_24h) == (2811.3042155865, 19417.74, 18434.21)
    assert (t.change_24h, t.change_pct_24h) == (None, 3.66)
    assert t.exchange_ts == 1606291803.0  # ``time``: the example has no ``time_ms``
    assert (t.mark_price, t.index_price, t.funding_rate, t.next_funding_ts, t.open_interest) == (None,) * 5


def test_the_documented_book_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(BOOK_TICKER)
    assert (t.bid, t.ask, t.bid_size, t.ask_size) == (19177.79, 19179.38, 0.0003341504, 0.09)
    assert (t.sequence, t.exchange_ts) == (48733182, 1606293275.123)
    assert (t.last, t.volume_24h) == (None, None)  # no tickers push yet


def test_each_push_carries_the_latest_of_both_channels() -> None:
    d = decoder(BTC)
    d.decode(TICKER)
    [book] = d.decode(BOOK_TICKER)
    assert (book.last, book.volume_24h, book.change_pct_24h) == (19106.55, 2811.3042155865, 3.66)
    msg = orjson.loads(TICKER) | {"time_ms": 1606291804567}
    [ticker] = d.decode(orjson.dumps(msg))
    assert (ticker.bid, ticker.ask_size, ticker.sequence) == (19177.79, 0.09, 48733182)
    assert ticker.exchange_ts == 1606291804.567  # ``time_ms`` where sent
    assert d.junk == 0


def test_an_empty_side_and_a_pair_not_yet_traded_are_read_as_absent() -> None:
    d = decoder(BTC)
    book = orjson.loads(BOOK_TICKER)
    book["result"] |= {"b": "", "B": "0"}
    [t] = d.decode(orjson.dumps(book))
    assert (t.bid, t.bid_size, t.ask) == (None, 0.0, 19179.38)
    ticker = orjson.loads(TICKER)
    ticker["result"] |= {"last": "", "change_percentage": "", "high_24h": "", "low_24h": ""}
    [t] = d.decode(orjson.dumps(ticker))
    assert (t.last, t.change_pct_24h, t.high_24h, t.low_24h) == (None,) * 4


def test_an_insane_push_is_junk_and_leaves_the_merged_state() -> None:
    d = decoder(BTC)
    d.decode(BOOK_TICKER)
    book = orjson.loads(BOOK_TICKER)
    book["result"]["a"] = "-1"
    assert d.decode(orjson.dumps(book)) == []
    assert d.junk == 1 and "ask -1.0 is not a valid price" in d.junk_reason
    [t] = d.decode(TICKER)
    assert t.ask == 19179.38


def test_a_push_missing_a_field_is_junk() -> None:
    msg = orjson.loads(TICKER)
    del msg["result"]["base_volume"]
    d = decoder(BTC)
    assert d.decode(orjson.dumps(msg)) == [] and d.junk == 1 and "base_volume" in d.junk_reason


def test_every_symbol_is_subscribed_by_a_request_of_its_own_per_channel() -> None:
    d = decoder()
    frames = [orjson.loads(f) for f in d.subscribe([BTC, ETH])]
    assert [(f["channel"], f["event"], f["payload"]) for f in frames] == [
        (TICKERS, "subscribe", ["BTC_USDT"]),
        (BOOK, "subscribe", ["BTC_USDT"]),
        (TICKERS, "subscribe", ["ETH_USDT"]),
        (BOOK, "subscribe", ["ETH_USDT"]),
    ]
    assert len({f["id"] for f in frames}) == 4


def test_an_unknown_pair_is_rejected_once_and_the_others_subscribe() -> None:
    d = decoder()
    good_tickers, good_book, bad_tickers, bad_book = d.subscribe([BTC, "NOPE/USDT"])
    error = {"code": 2, "message": "unknown currency pair NOPE_USDT"}
    for frame in (
        answer(bad_tickers, error),
        answer(good_tickers),
        answer(bad_book, error),
        answer(good_book),
    ):
        assert d.decode(frame) == []
    assert d.events == [
        Rejected("NOPE/USDT", f"{TICKERS}: unknown currency pair NOPE_USDT (code 2)"),
        Subscribed(BTC),
    ]
    assert d.junk == 0


def test_late_pushes_of_a_removed_pair_are_dropped_and_it_starts_afresh() -> None:
    d = decoder(BTC, ETH)
    d.decode(BOOK_TICKER)
    d.unsubscribe([BTC])
    assert d.decode(TICKER) == [] and d.decode(BOOK_TICKER) == [] and d.junk == 0
    d.subscribe([BTC])
    [t] = d.decode(TICKER)
    assert t.bid is None


def test_pongs_are_control_frames_and_strangers_are_junk() -> None:
    d = decoder(BTC)
    assert d.decode(PONG) == [] and d.junk == 0
    stranger = BOOK_TICKER.replace("spot.book_ticker", "spot.trades")
    for frame in ('{"channel":"spot.announcement","event":"notice"}', stranger, "[]"):
        assert d.decode(frame) == []
    assert d.junk == 3


def test_the_keepalive_is_the_documented_ping() -> None:
    keepalive = Gateio.keepalive
    assert keepalive is not None and keepalive.interval == 10.0
    assert orjson.loads(keepalive.frame) == {"time": 0, "channel": "spot.ping"}


@pytest.mark.parametrize(
    ("symbol", "name"), [(BTC, "BTC_USDT"), ("ETH/BTC", "ETH_BTC"), ("GT/USDT", "GT_USDT")]
)
def test_pair_names_both_ways(symbol: str, name: str) -> None:
    assert native(symbol) == name
    assert FakeGateio().unified(name) == symbol


@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "BTC/USD:BTC", "BTC/USDT:USDT-261225"])
def test_derivatives_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match=r"spot only|serves no dated futures"):
        exchanges.get("gateio").check_symbol(symbol)


async def test_the_fake_answers_by_id_refuses_unknown_pairs_and_pongs(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeGateio())
    fake.reject("NOPE/USDT")
    async with transport.connect(fake.url) as conn:
        await conn.send(
            '{"time":1,"id":7,"channel":"spot.tickers","event":"subscribe","payload":["NOPE_USDT"]}'
        )
        refused = orjson.loads(await conn.receive())
        assert (refused["id"], refused["error"]) == (
            7,
            {"code": 2, "message": "unknown currency pair NOPE_USDT"},
        )
        await conn.send('{"channel":"spot.tickers","event":"subscribe","payload":["BTC_USDT"]}')
        assert orjson.loads(await conn.receive())["error"]["code"] == 1
        await conn.send(Gateio.keepalive.frame)
        pong = orjson.loads(await conn.receive())
        assert (pong["channel"], pong["event"], pong["result"]) == ("spot.pong", "", None)
    assert fake.keepalives == 1 and not fake.is_subscribed(BTC)
    assert len(fake.violations) == 1 and "not a request of the protocol" in fake.violations[0]
