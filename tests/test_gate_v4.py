"""Gate.io API v4: the protocol the spot and USDT-futures adapters share
(:mod:`tickerd.exchanges.gate_v4`: requests with ids, answers resolved by id or by channel and
payload, refusals, pongs, the ``book_ticker`` push merged with the ``tickers`` one), tested once
for both decoders and both fakes.  Each venue's documented pushes, its ``tickers`` fields and its
symbols stay in ``tests/test_gateio.py`` and ``tests/test_gateio_futures.py``, whose literal
frames these tests feed."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest
import trio
import trio.testing

from tests import test_gateio, test_gateio_futures
from tests.conftest import start_fake
from tickerd import exchanges, transport
from tickerd.exchanges.base import Keepalive, Rejected, Subscribed
from tickerd.exchanges.gate_v4 import MergingGateDecoder
from tickerd.model import Ticker
from tickerd.testing.gate_v4 import FakeGateV4
from tickerd.testing.gateio import FakeGateio
from tickerd.testing.gateio_futures import FakeGateioFutures


@attrs.frozen
class Venue:
    """One adapter of the shared protocol, with its documented frames."""

    exchange: str
    symbol: str
    other: str
    #: A symbol the venue does not list, and the fake's refusal of it (``code`` 2).
    unknown: str
    refusal: str
    tickers_push: str
    book_push: str
    pong: str
    #: The ``result`` of a failed answer as the venue's page shows it.
    failed_result: Any
    fake: type[FakeGateV4]

    def decoder(self, *symbols: str) -> MergingGateDecoder:
        return exchanges.get(self.exchange).decoder(symbols)  # type: ignore[return-value]

    @property
    def channels(self) -> tuple[str, ...]:
        """``tickers`` then ``book_ticker``, prefixed."""
        return exchanges.get(self.exchange).decoder_class.channels  # type: ignore[attr-defined, no-any-return]

    @property
    def prefix(self) -> str:
        return self.channels[0].partition(".")[0]

    @property
    def keepalive(self) -> Keepalive:
        keepalive = exchanges.get(self.exchange).keepalive
        assert keepalive is not None
        return keepalive

    def answer(self, request: str, error: dict[str, object] | None = None) -> str:
        """The answer to ``request`` as the pages show it (``time``, ``time_ms``, the request's
        ``channel`` and ``event``, ``{"status": "success"}``), with the ``id`` the "Request"
        table says is sent back and, on failure, the "Error" object."""
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
            answer |= {"error": error, "result": self.failed_result}
        return orjson.dumps(answer).decode()


VENUES = [
    Venue(
        "gateio",
        "BTC/USDT",
        "ETH/USDT",
        "NOPE/USDT",
        "unknown currency pair NOPE_USDT",
        test_gateio.TICKER,
        test_gateio.BOOK_TICKER,
        test_gateio.PONG,
        None,
        FakeGateio,
    ),
    Venue(
        "gateio_futures",
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
        "NOPE/USDT:USDT",
        "unknown contract NOPE_USDT",
        test_gateio_futures.TICKER,
        test_gateio_futures.BOOK_TICKER,
        test_gateio_futures.PONG,
        {"status": "failed"},
        FakeGateioFutures,
    ),
]


@pytest.fixture(params=VENUES, ids=lambda venue: venue.exchange)
def venue(request: pytest.FixtureRequest) -> Venue:
    return request.param  # type: ignore[no-any-return]


def quote(t: Ticker) -> tuple[object, ...]:
    """What a ``book_ticker`` push sets."""
    return (t.bid, t.ask, t.bid_size, t.ask_size, t.sequence)


def statistics(t: Ticker) -> tuple[object, ...]:
    """What a ``tickers`` push sets."""
    return (
        *(t.last, t.volume_24h, t.high_24h, t.low_24h, t.change_pct_24h),
        *(t.mark_price, t.index_price, t.funding_rate, t.open_interest),
    )


# -- the merge -----------------------------------------------------------------------------


def test_each_push_carries_the_latest_of_both_channels(venue: Venue) -> None:
    [tickers_alone] = venue.decoder(venue.symbol).decode(venue.tickers_push)
    [book_alone] = venue.decoder(venue.symbol).decode(venue.book_push)
    assert quote(tickers_alone) == (None,) * 5 and statistics(book_alone) == (None,) * 9
    d = venue.decoder(venue.symbol)
    d.decode(venue.tickers_push)
    [book] = d.decode(venue.book_push)
    assert (quote(book), statistics(book)) == (quote(book_alone), statistics(tickers_alone))
    assert book.exchange_ts == book_alone.exchange_ts
    [tickers] = d.decode(venue.tickers_push)
    assert (quote(tickers), statistics(tickers)) == (quote(book_alone), statistics(tickers_alone))
    assert tickers.exchange_ts == tickers_alone.exchange_ts and d.junk == 0


def test_an_empty_side_of_the_book_is_read_as_absent(venue: Venue) -> None:
    """A side without orders has an empty price (the futures' page says ``""``)."""
    msg = orjson.loads(venue.book_push)
    msg["result"] |= {"b": "", "B": "0"}
    [t] = venue.decoder(venue.symbol).decode(orjson.dumps(msg))
    [documented] = venue.decoder(venue.symbol).decode(venue.book_push)
    assert (t.bid, t.bid_size, t.ask, t.ask_size) == (None, 0.0, documented.ask, documented.ask_size)


def test_an_insane_book_push_is_junk_and_leaves_the_merged_state(venue: Venue) -> None:
    d = venue.decoder(venue.symbol)
    [good] = d.decode(venue.book_push)
    msg = orjson.loads(venue.book_push)
    msg["result"]["a"] = "-1"
    assert d.decode(orjson.dumps(msg)) == []
    assert d.junk == 1 and "ask -1.0 is not a valid price" in d.junk_reason
    [t] = d.decode(venue.tickers_push)
    assert quote(t) == quote(good)


@pytest.mark.parametrize("field", ["s", "t", "u", "B", "A"])
def test_a_book_push_missing_a_field_is_junk(venue: Venue, field: str) -> None:
    msg = orjson.loads(venue.book_push)
    del msg["result"][field]
    d = venue.decoder(venue.symbol)
    assert d.decode(orjson.dumps(msg)) == [] and d.junk_reason == f"missing field '{field}'"


# -- requests and answers ------------------------------------------------------------------


def test_every_symbol_is_subscribed_by_a_request_of_its_own_per_channel(venue: Venue) -> None:
    d = venue.decoder()
    frames = [orjson.loads(f) for f in d.subscribe([venue.symbol, venue.other])]
    tickers, book = venue.channels
    assert [(f["channel"], f["event"], f["payload"]) for f in frames] == [
        (tickers, "subscribe", ["BTC_USDT"]),
        (book, "subscribe", ["BTC_USDT"]),
        (tickers, "subscribe", ["ETH_USDT"]),
        (book, "subscribe", ["ETH_USDT"]),
    ]
    assert len({f["id"] for f in frames}) == 4 and all(isinstance(f["time"], int) for f in frames)


def test_the_tickers_answer_speaks_for_the_symbol(venue: Venue) -> None:
    d = venue.decoder()
    tickers, book = d.subscribe([venue.symbol])
    assert d.decode(venue.answer(book)) == [] and d.events == []
    assert d.decode(venue.answer(tickers)) == []
    assert d.events == [Subscribed(venue.symbol)] and d.junk == 0


def test_an_error_refuses_the_symbol_of_its_request_once_and_the_others_subscribe(venue: Venue) -> None:
    d = venue.decoder()
    good_tickers, good_book, bad_tickers, bad_book = d.subscribe([venue.symbol, venue.unknown])
    error = {"code": 2, "message": venue.refusal}
    for frame in (
        venue.answer(bad_tickers, error),
        venue.answer(good_tickers),
        venue.answer(bad_book, error),
        venue.answer(good_book),
    ):
        assert d.decode(frame) == []
    assert d.events == [
        Rejected(venue.unknown, f"{venue.channels[0]}: {venue.refusal} (code 2)"),
        Subscribed(venue.symbol),
    ]
    assert d.junk == 0


def test_an_answer_without_its_id_is_matched_by_channel_and_payload(venue: Venue) -> None:
    """The pages' own answers carry no ``id``; live ones echo the ``payload``."""
    d = venue.decoder()
    tickers, _ = d.subscribe([venue.symbol])
    msg = orjson.loads(venue.answer(tickers))
    del msg["id"]
    assert d.decode(orjson.dumps(msg | {"payload": ["ETH_USDT"]})) == [] and d.events == []
    assert d.decode(orjson.dumps(msg | {"payload": ["BTC_USDT"]})) == []
    assert d.events == [Subscribed(venue.symbol)]


def test_unsubscribe_is_one_request_a_channel_late_pushes_are_dropped_and_a_return_starts_afresh(
    venue: Venue,
) -> None:
    d = venue.decoder(venue.symbol, venue.other)
    d.decode(venue.book_push)
    frames = [orjson.loads(f) for f in d.unsubscribe([venue.symbol, venue.other])]
    tickers, book = venue.channels
    assert [(f["channel"], f["event"], f["payload"]) for f in frames] == [
        (tickers, "unsubscribe", ["BTC_USDT", "ETH_USDT"]),
        (book, "unsubscribe", ["BTC_USDT", "ETH_USDT"]),
    ]
    assert d.decode(venue.answer(orjson.dumps(frames[0]).decode())) == []
    assert d.decode(venue.tickers_push) == [] and d.decode(venue.book_push) == [] and d.junk == 0
    d.subscribe([venue.symbol])
    [t] = d.decode(venue.tickers_push)
    assert quote(t) == (None,) * 5


def test_an_error_to_an_unsubscribe_is_logged_as_junk(venue: Venue) -> None:
    d = venue.decoder(venue.symbol)
    [tickers, _] = d.unsubscribe([venue.symbol])
    assert d.decode(venue.answer(tickers, {"code": 3, "message": "service error"})) == []
    assert d.junk == 1 and "service error" in d.junk_reason


def test_pongs_are_control_frames_and_strangers_are_junk(venue: Venue) -> None:
    d = venue.decoder(venue.symbol)
    assert d.decode(venue.pong) == [] and d.junk == 0
    stranger = venue.book_push.replace(venue.channels[1], f"{venue.prefix}.trades")
    for frame in (f'{{"channel":"{venue.prefix}.announcement","event":"notice"}}', stranger, "[]"):
        assert d.decode(frame) == []
    assert d.junk == 3


def test_the_keepalive_is_the_documented_ping(venue: Venue) -> None:
    assert venue.keepalive.interval == 10.0
    assert orjson.loads(venue.keepalive.frame) == {"time": 0, "channel": f"{venue.prefix}.ping"}


# -- the fakes -----------------------------------------------------------------------------


async def test_the_fake_answers_by_id_refuses_unknown_symbols_and_malformed_requests_and_pongs(
    venue: Venue, clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, venue.fake())
    fake.reject(venue.unknown)
    tickers = venue.channels[0]
    async with transport.connect(fake.url) as conn:
        request = {"time": 1, "id": 7, "channel": tickers, "event": "subscribe", "payload": ["NOPE_USDT"]}
        await conn.send(orjson.dumps(request).decode())
        refused = orjson.loads(await conn.receive())
        assert (refused["id"], refused["error"], refused["result"]) == (
            7,
            {"code": 2, "message": venue.refusal},
            {"status": "failed"},
        )
        await conn.send(f'{{"channel":"{tickers}","event":"subscribe","payload":["BTC_USDT"]}}')
        assert orjson.loads(await conn.receive())["error"]["code"] == 1
        await conn.send(venue.keepalive.frame)
        pong = orjson.loads(await conn.receive())
        assert (pong["channel"], pong["event"], pong["result"]) == (f"{venue.prefix}.pong", "", None)
    assert fake.keepalives == 1 and not fake.is_subscribed(venue.symbol)
    assert len(fake.violations) == 1 and "not a request of the protocol" in fake.violations[0]
