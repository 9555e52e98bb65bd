"""Gate.io USDT futures: the documented ``futures.tickers`` and ``futures.book_ticker`` pushes
merged into one record, requests answered by id, pongs, contract names both ways."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import start_fake
from tickerd import exchanges, transport
from tickerd.exchanges.base import Rejected, Subscribed
from tickerd.exchanges.gate_v4 import native
from tickerd.exchanges.gateio_futures import BOOK, TICKERS, GateioFutures, GateioFuturesDecoder
from tickerd.testing.gateio_futures import FakeGateioFutures

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
#: https://www.gate.com/docs/developers/futures/ws/en/, "Tickers API", the notification example,
#: with its contract renamed ``BTC_USDT`` (the page's example names ``BTC_USD``, of the
#: BTC-settled server).
TICKER = """{
  "time": 1541659086,
  "time_ms": 1541659086123,
  "channel": "futures.tickers",
  "event": "update",
  "result": [
    {
      "contract": "BTC_USDT",
      "last": "118.4",
      "change_percentage": "0.77",
      "funding_rate": "-0.000114",
      "funding_rate_indicative": "0.01875",
      "mark_price": "118.35",
      "index_price": "118.36",
      "total_size": "73648",
      "volume_24h": "745487577",
      "volume_24h_btc": "117",
      "volume_24h_usd": "419950",
      "quanto_base_rate": "",
      "volume_24h_quote": "1665006",
      "volume_24h_settle": "178",
      "volume_24h_base": "5526",
      "low_24h": "99.2",
      "high_24h": "132.5"
    }
  ]
}"""
#: The same page, "Best ask/bid API", the notification example, contract renamed likewise.
BOOK_TICKER = """{
  "time": 1615366379,
  "time_ms": 1615366379123,
  "channel": "futures.book_ticker",
  "event": "update",
  "result": {
    "t": 1615366379123,
    "u": 2517661076,
    "s": "BTC_USDT",
    "b": "54696.6",
    "B": 37000,
    "a": "54696.7",
    "A": 47061
  }
}"""
#: The page's "Ping and Pong" answer.
PONG = (
    '{"time": 1545404023, "time_ms": 1545404023123, "channel": "futures.pong", "event": "", "result": null}'
)


def decoder(*symbols: str) -> GateioFuturesDecoder:
    return exchanges.get("gateio_futures").decoder(symbols)  # type: ignore[return-value]


def answer(request: str, error: dict[str, object] | None = None) -> str:
    """The answer to ``request`` as the page shows it ("Tickers subscription": ``time``,
    ``time_ms``, the request's ``channel`` and ``event``, ``{"status": "success"}``), with the
    ``id`` the "Request" table says is sent back and, on failure, the "Error" object."""
    msg = orjson.loads(request)
    answer = {
        "time": msg["time"],
        "time_ms": msg["time"] * 1000 + 123,
        "id": msg["id"],
        "channel": msg["channel"],
        "event": msg["event"],
        "result": {"status": "success"},
    }
    if error:
        answer |= {"error": error, "result": {"status": "failed"}}
    return orjson.dumps(answer).decode()


def test_the_documented_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(TICKER)
    assert (t.exchange, t.symbol, t.last) == ("gateio_futures", BTC, 118.4)
    assert (t.bid, t.ask, t.bid_size, t.ask_size, t.sequence) == (None, None, None, None, None)  # no book yet
    assert (t.volume_24h, t.high_24h, t.low_24h) == (5526.0, 132.5, 99.2)  # volume_24h_base, not contracts
    assert (t.change_24h, t.change_pct_24h) == (None, 0.77)
    assert t.exchange_ts == 1541659086.123
    assert (t.mark_price, t.index_price) == (118.35, 118.36)
    assert t.funding_rate == -0.000114  # the current rate, not funding_rate_indicative
    assert t.next_funding_ts is None  # not on the channel
    assert t.open_interest == 73648.0  # total_size, in contracts


def test_the_documented_book_ticker_maps_every_field() -> None:
    [t] = decoder(BTC).decode(BOOK_TICKER)
    assert (t.bid, t.ask, t.bid_size, t.ask_size) == (54696.6, 54696.7, 37000.0, 47061.0)  # contracts
    assert t.sequence == 2517661076
    assert t.exchange_ts == 1615366379.123
    assert (t.last, t.mark_price) == (None, None)  # no tickers push yet


def test_each_push_carries_the_latest_of_both_channels() -> None:
    d = decoder(BTC)
    d.decode(TICKER)
    [book] = d.decode(BOOK_TICKER)
    assert (book.last, book.mark_price, book.funding_rate, book.open_interest) == (
        118.4,
        118.35,
        -0.000114,
        73648.0,
    )
    [ticker] = d.decode(TICKER)
    assert (ticker.bid, ticker.ask_size, ticker.sequence) == (54696.6, 47061.0, 2517661076)
    assert d.junk == 0


def test_sizes_sent_as_decimal_strings_and_an_empty_side_are_read() -> None:
    """``X-Gate-Size-Decimal`` sizes are strings; a side without orders has an empty price."""
    msg = orjson.loads(BOOK_TICKER)
    msg["result"] |= {"b": "", "B": "0", "A": "47061.5"}
    [t] = decoder(BTC).decode(orjson.dumps(msg))
    assert (t.bid, t.bid_size, t.ask, t.ask_size) == (None, 0.0, 54696.7, 47061.5)


def test_a_contract_not_yet_traded_sends_empty_values() -> None:
    msg = orjson.loads(TICKER)
    msg["result"][0] |= {"last": "", "change_percentage": "", "high_24h": "", "low_24h": ""}
    [t] = decoder(BTC).decode(orjson.dumps(msg))
    assert (t.last, t.change_pct_24h, t.high_24h, t.low_24h) == (None, None, None, None)
    assert t.mark_price == 118.35


def test_an_insane_push_is_junk_and_leaves_the_merged_state() -> None:
    d = decoder(BTC)
    d.decode(TICKER)
    msg = orjson.loads(TICKER)
    msg["result"][0]["mark_price"] = "-1"
    assert d.decode(orjson.dumps(msg)) == []
    assert d.junk == 1 and "mark_price -1.0 is not a valid price" in d.junk_reason
    [t] = d.decode(BOOK_TICKER)
    assert t.mark_price == 118.35


def test_a_push_missing_a_field_is_junk() -> None:
    msg = orjson.loads(TICKER)
    del msg["result"][0]["total_size"]
    d = decoder(BTC)
    assert d.decode(orjson.dumps(msg)) == [] and d.junk == 1


def test_every_symbol_is_subscribed_by_a_request_of_its_own_per_channel() -> None:
    d = decoder()
    frames = [orjson.loads(f) for f in d.subscribe([BTC, ETH])]
    assert [(f["channel"], f["event"], f["payload"]) for f in frames] == [
        (TICKERS, "subscribe", ["BTC_USDT"]),
        (BOOK, "subscribe", ["BTC_USDT"]),
        (TICKERS, "subscribe", ["ETH_USDT"]),
        (BOOK, "subscribe", ["ETH_USDT"]),
    ]
    assert len({f["id"] for f in frames}) == 4 and all(isinstance(f["time"], int) for f in frames)


def test_the_tickers_answer_speaks_for_the_symbol() -> None:
    d = decoder()
    tickers, book = d.subscribe([BTC])
    assert d.decode(answer(book)) == [] and d.events == []
    assert d.decode(answer(tickers)) == []
    assert d.events == [Subscribed(BTC)] and d.junk == 0


def test_an_error_refuses_the_symbol_of_its_request_once() -> None:
    d = decoder()
    good_tickers, good_book, bad_tickers, bad_book = d.subscribe([BTC, "NOPE/USDT:USDT"])
    error = {"code": 2, "message": "unknown contract NOPE_USDT"}
    for frame in (
        answer(bad_tickers, error),
        answer(good_tickers),
        answer(bad_book, error),
        answer(good_book),
    ):
        assert d.decode(frame) == []
    assert d.events == [
        Rejected("NOPE/USDT:USDT", f"{TICKERS}: unknown contract NOPE_USDT (code 2)"),
        Subscribed(BTC),
    ]
    assert d.junk == 0


def test_unsubscribe_is_one_request_a_channel_and_late_pushes_are_dropped() -> None:
    d = decoder(BTC, ETH)
    frames = [orjson.loads(f) for f in d.unsubscribe([BTC, ETH])]
    assert [(f["channel"], f["event"], f["payload"]) for f in frames] == [
        (TICKERS, "unsubscribe", ["BTC_USDT", "ETH_USDT"]),
        (BOOK, "unsubscribe", ["BTC_USDT", "ETH_USDT"]),
    ]
    assert d.decode(answer(orjson.dumps(frames[0]).decode())) == []
    assert d.decode(TICKER) == [] and d.decode(BOOK_TICKER) == [] and d.junk == 0


def test_an_answer_without_its_id_is_matched_by_channel_and_payload() -> None:
    """The page's own answers carry no ``id``; live ones echo the ``payload``."""
    d = decoder()
    tickers, _ = d.subscribe([BTC])
    msg = orjson.loads(answer(tickers))
    del msg["id"]
    assert d.decode(orjson.dumps(msg | {"payload": ["ETH_USDT"]})) == [] and d.events == []
    assert d.decode(orjson.dumps(msg | {"payload": ["BTC_USDT"]})) == [] and d.events == [Subscribed(BTC)]


def test_an_error_to_an_unsubscribe_is_logged_as_junk() -> None:
    d = decoder(BTC)
    [tickers, _] = d.unsubscribe([BTC])
    assert d.decode(answer(tickers, {"code": 3, "message": "service error"})) == []
    assert d.junk == 1 and "service error" in d.junk_reason


def test_pongs_are_control_frames_and_strangers_are_junk() -> None:
    d = decoder(BTC)
    assert d.decode(PONG) == [] and d.junk == 0
    stranger = BOOK_TICKER.replace("futures.book_ticker", "futures.trades")
    for frame in ('{"channel":"futures.announcement","event":"notice"}', stranger, "[]"):
        assert d.decode(frame) == []
    assert d.junk == 3


def test_the_keepalive_is_the_documented_ping() -> None:
    keepalive = GateioFutures.keepalive
    assert keepalive is not None and keepalive.interval == 10.0
    assert orjson.loads(keepalive.frame) == {"time": 0, "channel": "futures.ping"}


def test_contract_names() -> None:
    assert native(BTC) == "BTC_USDT"
    assert FakeGateioFutures().unified("BTC_USDT") == BTC


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USD:BTC", "BTC/USDC:USDC", "BTC/USDT:USDT-261225"])
def test_markets_other_than_usdt_perpetuals_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError, match=r"USDT-margined perpetuals only|serves no dated futures"):
        exchanges.get("gateio_futures").check_symbol(symbol)


async def test_the_fake_answers_by_id_refuses_malformed_requests_and_pongs(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeGateioFutures())
    fake.reject("NOPE/USDT:USDT")
    async with transport.connect(fake.url) as conn:
        await conn.send(
            '{"time":1,"id":7,"channel":"futures.tickers","event":"subscribe","payload":["NOPE_USDT"]}'
        )
        refused = orjson.loads(await conn.receive())
        assert (refused["id"], refused["error"], refused["result"]) == (
            7,
            {"code": 2, "message": "unknown contract NOPE_USDT"},
            {"status": "failed"},
        )
        await conn.send('{"channel":"futures.tickers","event":"subscribe","payload":["BTC_USDT"]}')
        assert orjson.loads(await conn.receive())["error"]["code"] == 1
        await conn.send(GateioFutures.keepalive.frame)
        pong = orjson.loads(await conn.receive())
        assert (pong["channel"], pong["event"], pong["result"]) == ("futures.pong", "", None)
    assert fake.keepalives == 1 and not fake.is_subscribed(BTC)
    assert len(fake.violations) == 1 and "not a request of the protocol" in fake.violations[0]
