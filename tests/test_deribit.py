"""Deribit: the ticker notification decoded from the documentation's frames, the JSON-RPC
requests, subscription results, heartbeats, symbol forms, and the fake's heartbeat rule."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests.conftest import start_fake
from tickerd import exchanges, transport
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.deribit import DeribitDecoder, instrument
from tickerd.testing.deribit import FakeDeribit, unified

INVERSE = "BTC/USD:BTC"
LINEAR = "BTC/USDC:USDC"
FUTURE = "BTC/USD:BTC-261225"

#: The ticker of ``BTC-PERPETUAL`` as docs.deribit.com gives it (``public/ticker``'s example
#: result, the object the ``ticker.(instrument_name).(interval)`` notification carries as
#: ``data``), in the notification envelope the docs give for subscriptions.
DATA = (
    '{"best_ask_amount":53040,"best_ask_price":36290,"best_bid_amount":4600,"best_bid_price":36289.5,'
    '"current_funding":0,"estimated_delivery_price":36297.02,"funding_8h":0.00002203,'
    '"index_price":36297.02,"instrument_name":"BTC-PERPETUAL","interest_value":1.7362511643080387,'
    '"last_price":36289.5,"mark_price":36288.31,"max_price":36833.4,"min_price":35744.73,'
    '"open_interest":502231260,"settlement_price":36169.49,"state":"open","stats":{"high":36824.5,'
    '"low":35213.5,"price_change":0.2362,"volume":7831.26548117,"volume_usd":282615600},'
    '"timestamp":1623059681955}'
)
PERPETUAL = (
    '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":'
    + DATA
    + "}}"
)
#: A real notification (captured by ccxws, 2020): a non-zero ``current_funding``.
FUNDED = (
    '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":'
    '{"timestamp":1597244851057,"stats":{"volume_usd":404775400.0,"volume":35574.05167122,'
    '"price_change":0.493,"low":11131.5,"high":11632.5},"state":"open","settlement_price":11452.62,'
    '"open_interest":117979530,"min_price":11443.06,"max_price":11791.58,"mark_price":11617.8,'
    '"last_price":11618.0,"instrument_name":"BTC-PERPETUAL","index_price":11609.61,'
    '"funding_8h":0.00001212,"estimated_delivery_price":11609.61,"current_funding":0.00020545,'
    '"best_bid_price":11618.0,"best_bid_amount":7460.0,"best_ask_price":11618.5,"best_ask_amount":497870.0}}}'
)
#: The documentation's examples: the heartbeat set-up's and ``public/test``'s answers.
HEARTBEAT_SET = '{"jsonrpc":"2.0","id":1569,"result":"ok"}'
TEST_ANSWER = '{"jsonrpc":"2.0","id":8212,"result":{"version":"1.2.26"}}'
#: What ``public/set_heartbeat`` makes Deribit send.
TEST_REQUEST = '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'
HEARTBEAT = '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}'


def decoder(*symbols: str) -> DeribitDecoder:
    return exchanges.get("deribit").decoder(symbols)  # type: ignore[return-value]


def notification(name: str, drop: tuple[str, ...] = (), **changes: Any) -> str:
    """:data:`PERPETUAL` for instrument ``name``, with fields of ``data`` changed and the
    fields named in ``drop`` left out."""
    frame = orjson.loads(PERPETUAL)
    data = frame["params"]["data"] | {"instrument_name": name} | changes
    kept = {field: value for field, value in data.items() if field not in drop}
    frame["params"] = {"channel": f"ticker.{name}.100ms", "data": kept}
    return orjson.dumps(frame).decode()


def answer(request_id: int, result: list[str]) -> str:
    """A subscribe's answer: the channels it subscribed (the real frame has the timing fields)."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "result": result,
            "usIn": 1,
            "usOut": 2,
            "usDiff": 1,
            "testnet": False,
        }
    ).decode()


def test_the_documented_ticker_maps_every_field() -> None:
    [ticker] = decoder(INVERSE).decode(PERPETUAL)
    assert (ticker.exchange, ticker.symbol) == ("deribit", INVERSE)
    assert (ticker.last, ticker.bid, ticker.ask, ticker.bid_size, ticker.ask_size) == (
        36289.5,
        36289.5,
        36290.0,
        4600.0,
        53040.0,
    )
    assert (ticker.volume_24h, ticker.high_24h, ticker.low_24h) == (7831.26548117, 36824.5, 35213.5)
    assert (ticker.change_24h, ticker.change_pct_24h) == (None, 0.2362)  # the percentage only
    assert ticker.exchange_ts == 1623059681.955  # milliseconds on the wire
    assert (ticker.mark_price, ticker.index_price, ticker.open_interest) == (36288.31, 36297.02, 502231260.0)
    assert ticker.funding_rate == 0.0  # current_funding, not funding_8h
    assert (ticker.next_funding_ts, ticker.sequence) == (None, None)  # continuous funding; no sequence
    assert all(isinstance(getattr(ticker, f), float) for f in ("ask", "bid_size", "open_interest"))


def test_funding_rate_is_the_current_8h_rate_as_a_fraction() -> None:
    [ticker] = decoder(INVERSE).decode(FUNDED)
    assert ticker.funding_rate == 0.00020545
    assert (ticker.bid, ticker.ask, ticker.last) == (11618.0, 11618.5, 11618.0)


def test_linear_perpetuals_and_dated_futures_route_by_their_channel() -> None:
    dec = decoder(LINEAR, FUTURE)
    [linear] = dec.decode(notification("BTC_USDC-PERPETUAL"))
    future_frame = notification("BTC-25DEC26", drop=("current_funding", "funding_8h", "interest_value"))
    [future] = dec.decode(future_frame)
    assert (linear.symbol, future.symbol) == (LINEAR, FUTURE)
    assert future.funding_rate is None and future.mark_price == 36288.31  # futures have no funding
    assert dec.junk == 0


def test_before_the_first_trade_the_last_price_and_stats_are_null() -> None:
    stats = {"high": None, "low": None, "price_change": None, "volume": None}
    [ticker] = decoder(INVERSE).decode(notification("BTC-PERPETUAL", last_price=None, stats=stats))
    assert (ticker.last, ticker.volume_24h, ticker.high_24h, ticker.low_24h, ticker.change_pct_24h) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert ticker.bid == 36289.5


def test_a_side_without_orders_has_no_price() -> None:
    frame = orjson.loads(PERPETUAL)
    frame["params"]["data"] |= {"best_bid_price": None, "best_ask_price": 0, "best_ask_amount": 0}
    [ticker] = decoder(INVERSE).decode(orjson.dumps(frame))
    assert (ticker.bid, ticker.ask, ticker.ask_size, ticker.bid_size) == (None, None, 0.0, 4600.0)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("best_bid_price", -1, "bid -1.0 is not a valid price"),
        ("mark_price", 0, "mark_price 0.0 is not a valid price"),
        ("open_interest", -5, "open_interest -5.0 is not a valid amount"),
    ],
)
def test_an_insane_number_makes_the_frame_junk(field: str, value: float, reason: str) -> None:
    dec = decoder(INVERSE)
    frame = orjson.loads(PERPETUAL)
    frame["params"]["data"][field] = value
    assert dec.decode(orjson.dumps(frame)) == []
    assert dec.junk == 1 and reason in dec.junk_reason


def test_a_notification_without_a_field_it_always_carries_is_junk() -> None:
    dec = decoder(INVERSE)
    assert dec.decode(notification("BTC-PERPETUAL", drop=("mark_price",))) == []
    assert dec.junk == 1 and "mark_price" in dec.junk_reason


def test_late_frames_of_a_removed_symbol_and_answers_are_not_junk() -> None:
    dec = decoder(INVERSE)
    dec.unsubscribe([INVERSE])
    for frame in (PERPETUAL, HEARTBEAT_SET, TEST_ANSWER, HEARTBEAT):
        assert dec.decode(frame) == []
    assert dec.junk == 0 and dec.events == []


def test_the_first_request_asks_for_heartbeats_then_each_change_is_one_request() -> None:
    dec = decoder()
    first = [orjson.loads(frame) for frame in dec.subscribe([INVERSE, FUTURE])]
    assert first == [
        {"jsonrpc": "2.0", "id": 1, "method": "public/set_heartbeat", "params": {"interval": 10}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "public/subscribe",
            "params": {"channels": ["ticker.BTC-PERPETUAL.100ms", "ticker.BTC-25DEC26.100ms"]},
        },
    ]
    [added] = (orjson.loads(frame) for frame in dec.subscribe([LINEAR]))
    [removed] = (orjson.loads(frame) for frame in dec.unsubscribe([INVERSE]))
    assert (added["id"], added["params"]) == (3, {"channels": ["ticker.BTC_USDC-PERPETUAL.100ms"]})
    assert (removed["id"], removed["method"]) == (4, "public/unsubscribe")
    assert removed["params"] == {"channels": ["ticker.BTC-PERPETUAL.100ms"]}


def test_every_test_request_is_answered_with_public_test_under_a_new_id() -> None:
    dec = decoder()
    dec.subscribe([])  # the heartbeat set-up takes id 1
    assert dec.decode(TEST_REQUEST) == [] and dec.decode(TEST_REQUEST) == []
    replies = [orjson.loads(event.frame) for event in dec.events if isinstance(event, Reply)]
    assert replies == [
        {"jsonrpc": "2.0", "id": 2, "method": "public/test", "params": {}},
        {"jsonrpc": "2.0", "id": 3, "method": "public/test", "params": {}},
    ]
    assert dec.decode(HEARTBEAT) == [] and len(dec.events) == 2  # a plain heartbeat needs nothing


def test_a_channel_left_out_of_the_result_rejects_its_symbol() -> None:
    unknown = "NOPE/USDC:USDC"
    dec = decoder()
    dec.subscribe([LINEAR, unknown])  # request 2
    assert dec.decode(answer(2, ["ticker.BTC_USDC-PERPETUAL.100ms"])) == []
    assert dec.events == [
        Subscribed(LINEAR),
        Rejected(unknown, "Deribit left ticker.NOPE_USDC-PERPETUAL.100ms out: no such instrument"),
    ]
    assert dec.junk == 0


def test_an_error_answer_rejects_every_symbol_of_its_request() -> None:
    dec = decoder()
    dec.subscribe([LINEAR, INVERSE])  # request 2
    error = {
        "code": -32602,
        "message": "Invalid params",
        "data": {"reason": "wrong format", "param": "channels"},
    }
    assert dec.decode(orjson.dumps({"jsonrpc": "2.0", "id": 2, "error": error, "testnet": False})) == []
    reason = "Invalid params (-32602): {'reason': 'wrong format', 'param': 'channels'}"
    assert dec.events == [Rejected(LINEAR, reason), Rejected(INVERSE, reason)]


def test_an_error_to_another_request_is_junk_with_its_reason() -> None:
    dec = decoder()
    frame = '{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Invalid params"},"testnet":false}'
    assert dec.decode(frame) == []
    assert dec.junk == 1 and "Invalid params" in dec.junk_reason and dec.events == []


@pytest.mark.parametrize(
    "frame",
    [
        "garbage",
        '{"tickerd":"junk"}',
        "[1,2]",
        '{"jsonrpc":"2.0","method":"announcements","params":{}}',
        # An error without an id: Deribit's answer to a REST call (ccxt/ccxt#6931).
        '{"jsonrpc":"2.0","error":{"message":"Invalid params","data":{"reason":"value must be a list",'
        '"param":"channels"},"code":-32602},"testnet":false,"usIn":1589288990523561,'
        '"usOut":1589288990524197,"usDiff":636}',
    ],
)
def test_frames_of_no_known_kind_are_junk(frame: str) -> None:
    dec = decoder(INVERSE)
    assert dec.decode(frame) == []
    assert dec.junk == 1


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        ("BTC/USD:BTC", "BTC-PERPETUAL"),
        ("ETH/USD:ETH", "ETH-PERPETUAL"),
        ("BTC/USDC:USDC", "BTC_USDC-PERPETUAL"),
        ("SOL/USDC:USDC", "SOL_USDC-PERPETUAL"),
        ("BTC/USD:BTC-261225", "BTC-25DEC26"),
        ("ETH/USD:ETH-270326", "ETH-26MAR27"),
        ("BTC/USD:BTC-270305", "BTC-5MAR27"),  # no leading zero in the day
        ("BTC/USDC:USDC-261225", "BTC_USDC-25DEC26"),
    ],
)
def test_symbols_map_to_instruments_and_back(symbol: str, name: str) -> None:
    exchanges.get("deribit").check_symbol(symbol)
    assert instrument(symbol) == name
    assert unified(name) == symbol  # the fake's listing reads them back


@pytest.mark.parametrize(
    ("symbol", "error"),
    [
        ("BTC/USDC", "serves perpetuals and futures"),  # spot
        ("ETH/USD:BTC", "serves perpetuals and futures"),  # a quanto
        ("BTC/EUR:BTC", "serves perpetuals and futures"),  # inverse contracts are quoted in USD
        ("BTC/USD:BTC-261332", "is not a date"),
    ],
)
def test_other_markets_are_refused_naming_the_forms(symbol: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        exchanges.get("deribit").check_symbol(symbol)


def test_options_and_spot_are_not_in_the_fakes_listing() -> None:
    assert unified("BTC-27JUN25-100000-C") is None and unified("BTC_USDC") is None


async def _request(conn: transport.Connection, request_id: int, method: str, params: dict[str, Any]) -> Any:
    """Send one request and return its answer's ``result`` (the fake answers in order)."""
    await conn.send(
        orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).decode()
    )
    while "id" not in (reply := orjson.loads(await conn.receive())):
        pass
    assert reply["id"] == request_id
    return reply["result"]


async def test_the_fake_closes_a_connection_whose_test_request_goes_unanswered(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeDeribit())
    async with transport.connect(fake.url) as conn:
        assert await _request(conn, 1, "public/set_heartbeat", {"interval": 10}) == "ok"
        assert await _request(conn, 2, "public/subscribe", {"channels": ["ticker.BTC-PERPETUAL.100ms"]}) == [
            "ticker.BTC-PERPETUAL.100ms"
        ]
        await _request(conn, 3, "public/test", {})  # not asked for: no keepalive duty done
        with pytest.raises(transport.TransportError):
            while True:  # the ticker, the test request, then the close
                await conn.receive()
    assert fake.violations == ["a test_request went unanswered"]
    assert fake.keepalives == 0


async def test_the_fake_refuses_a_heartbeat_faster_than_10_s_and_requests_without_an_id(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery, FakeDeribit())
    async with transport.connect(fake.url) as conn:
        await conn.send('{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":5}}')
        assert orjson.loads(await conn.receive())["error"]["code"] == -32602
        await conn.send('{"jsonrpc":"2.0","method":"public/test","params":{}}')
        assert orjson.loads(await conn.receive())["error"]["message"] == "Invalid Request"
    assert fake.violations and "with an id" in fake.violations[0]
