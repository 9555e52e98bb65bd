"""Crypto.com Exchange v1: decoder on the documentation's frames, per-request refusals, the
heartbeat answer, and the fake's rules (the 1 s wait, heartbeats) through the daemon."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing
import trio_websocket

from tests.conftest import start_fake
from tests.test_exchange_contract import start
from tickerd import exchanges
from tickerd.config import FeedSettings
from tickerd.exchanges.base import Rejected, Reply, Subscribed
from tickerd.exchanges.cryptocom import CryptocomDecoder
from tickerd.testing.cryptocom import FakeCryptocom

SPOT = "BTC/USDT"

# The push example of exchange-developer.crypto.com/exchange/v1/docs/api/websocket/
# ws-channel-ticker-instrument-name, verbatim: it is shown for BTCUSD-PERP, a perpetual this
# spot-only adapter never subscribes; TICKER is the same push for the spot BTC_USDT.
DOCUMENTED_TICKER = (
    '{"id":-1,"method":"subscribe","code":0,"result":{"instrument_name":"BTCUSD-PERP",'
    '"subscription":"ticker.BTCUSD-PERP","channel":"ticker","data":[{"h":"51790.00","l":"47895.50",'
    '"a":"51174.500000","c":"0.03955106","b":"51170.000000","bs":"0.1000","k":"51180.000000",'
    '"ks":"0.2000","i":"BTCUSD-PERP","v":"879.5024","vv":"26370000.12","oi":"12345.12",'
    '"t":1613580710768}]}}'
)
TICKER = DOCUMENTED_TICKER.replace("BTCUSD-PERP", "BTC_USDT")
# The example of .../ws-market-data-client-commands-heartbeat-request, verbatim.
HEARTBEAT = '{"id":1587523073344,"method":"public/heartbeat","code":0}'
# The answer to request 1 in the Common API Reference's response format (the pages show the
# fields, id, method, code, not a subscribe answer of their own).
ACK = '{"id":1,"method":"subscribe","code":0}'


def decoder(*symbols: str) -> CryptocomDecoder:
    return exchanges.get("cryptocom").decoder(symbols)  # type: ignore[return-value]


def test_ticker_maps_every_field() -> None:
    [ticker] = decoder(SPOT).decode(TICKER)
    assert (ticker.exchange, ticker.symbol) == ("cryptocom", SPOT)
    assert (ticker.last, ticker.bid, ticker.ask) == (51174.5, 51170.0, 51180.0)
    assert (ticker.bid_size, ticker.ask_size, ticker.volume_24h) == (0.1, 0.2, 879.5024)
    assert (ticker.high_24h, ticker.low_24h) == (51790.0, 47895.5)
    assert ticker.change_24h is None and ticker.change_pct_24h == pytest.approx(3.955106)
    assert ticker.exchange_ts == 1613580710.768
    assert (ticker.open_interest, ticker.mark_price, ticker.sequence) == (None, None, None)


def test_null_prices_of_an_empty_book_and_no_trades() -> None:
    push = orjson.loads(TICKER)
    push["result"]["data"][0] |= dict.fromkeys(("a", "b", "bs", "k", "ks", "h", "l", "c"))
    [ticker] = decoder(SPOT).decode(orjson.dumps(push))
    assert (ticker.last, ticker.bid, ticker.ask, ticker.bid_size, ticker.change_pct_24h) == (None,) * 5
    assert ticker.volume_24h == 879.5024


def test_numbers_the_schema_types_as_strings_are_read_too() -> None:
    """The schema types ``t``, ``id`` and ``code`` as digit strings, its examples send integers."""
    dec = decoder()
    dec.subscribe([SPOT, "NOPE/USDT"])
    assert dec.decode('{"id":"1","method":"subscribe","code":"0"}') == []
    assert dec.decode('{"id":"2","method":"subscribe","code":"209","message":"INVALID_INSTRUMENT"}') == []
    assert dec.events == [Subscribed(SPOT), Rejected("NOPE/USDT", "209: INVALID_INSTRUMENT")]
    [ticker] = dec.decode(TICKER.replace('"t":1613580710768', '"t":"1613580710768"'))
    assert ticker.exchange_ts == 1613580710.768 and dec.junk == 0


def test_requests_one_symbol_each_and_acks_and_refusals_by_id() -> None:
    dec = decoder()
    frames = dec.subscribe([SPOT, "NOPE/USDT"])
    assert [orjson.loads(f)["params"] for f in frames] == [
        {"channels": ["ticker.BTC_USDT"]},
        {"channels": ["ticker.NOPE_USDT"]},
    ]
    assert [orjson.loads(f)["id"] for f in frames] == [1, 2]
    assert all(orjson.loads(f)["method"] == "subscribe" for f in frames)
    assert dec.decode(ACK) == []
    assert dec.decode('{"id":2,"method":"subscribe","code":40003,"message":"INVALID_REQUEST"}') == []
    assert dec.decode(ACK) == []  # answered already: nobody's
    assert dec.events == [Subscribed(SPOT), Rejected("NOPE/USDT", "40003: INVALID_REQUEST")]
    [unsub] = dec.unsubscribe([SPOT])
    assert orjson.loads(unsub)["method"] == "unsubscribe"
    assert orjson.loads(unsub)["params"] == {"channels": ["ticker.BTC_USDT"]}
    assert dec.decode('{"id":3,"method":"unsubscribe","code":0}') == [] and dec.junk == 0


def test_a_first_push_carrying_the_request_id_acks_it() -> None:
    dec = decoder()
    dec.subscribe([SPOT])
    [ticker] = dec.decode(TICKER.replace('"id":-1', '"id":1'))
    assert ticker.symbol == SPOT and dec.events == [Subscribed(SPOT)]


def test_the_heartbeat_is_answered_with_its_id() -> None:
    dec = decoder(SPOT)
    assert dec.decode(HEARTBEAT) == []
    assert dec.events == [Reply('{"id":1587523073344,"method":"public/respond-heartbeat"}')]


def test_untracked_instruments_are_dropped_and_junk_counted() -> None:
    dec = decoder("ETH/USDT")
    assert dec.decode(TICKER) == [] and dec.decode(DOCUMENTED_TICKER) == [] and dec.junk == 0
    book = TICKER.replace('"channel":"ticker"', '"channel":"book"')
    for frame in ("nope", "{}", '{"method":"mystery"}', book, b"\xff"):
        assert dec.decode(frame) == []
    assert dec.junk == 5


@pytest.mark.parametrize(("field", "value"), [("b", "-1"), ("k", "0"), ("a", "NaN"), ("bs", "-5")])
def test_an_insane_number_makes_the_push_junk(field: str, value: str) -> None:
    dec = decoder(SPOT)
    push = orjson.loads(TICKER)
    push["result"]["data"][0][field] = value
    assert dec.decode(orjson.dumps(push)) == [] and dec.junk == 1


@pytest.mark.parametrize("field", ["i", "v", "t"])
def test_a_push_without_a_required_field_is_junk(field: str) -> None:
    dec = decoder(SPOT)
    push = orjson.loads(TICKER)
    del push["result"]["data"][0][field]
    assert dec.decode(orjson.dumps(push)) == [] and dec.junk == 1


def test_spot_only() -> None:
    with pytest.raises(ValueError, match="serves spot only"):
        exchanges.get("cryptocom").check_symbol("BTC/USD:USD")


# -- the fake's rules ------------------------------------------------------------------------


async def test_the_fake_flags_an_early_request_and_closes_on_an_unanswered_heartbeat(
    clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = await start_fake(nursery, FakeCryptocom())
    began = trio.current_time()
    async with trio_websocket.open_websocket_url(fake.url) as ws:
        await ws.send_message('{"params":{}}')  # no id, no method: the documented error answer
        error = {"id": -1, "method": "ERROR", "code": 40001, "message": "BAD_REQUEST"}
        assert orjson.loads(await ws.get_message()) == error
        request = {"id": 1, "method": "subscribe", "params": {"channels": ["ticker.BTC_USDT"]}}
        await ws.send_message(orjson.dumps(request).decode())
        assert orjson.loads(await ws.get_message()) == {"id": 1, "method": "subscribe", "code": 0}
        await ws.get_message()  # the ticker
        beat = orjson.loads(await ws.get_message())
        assert beat["method"] == "public/heartbeat"
        await ws.send_message(orjson.dumps({"id": beat["id"], "method": "public/respond-heartbeat"}).decode())
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await ws.get_message()  # the next heartbeat, then the close
    assert fake.violations == ["a request within 1 s of connecting"] * 2 and fake.keepalives == 1
    assert trio.current_time() - began >= 2 * fake.heartbeat_interval + fake.heartbeat_timeout


async def test_the_daemon_waits_a_second_and_answers_every_heartbeat(
    clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    feed = {"silence_timeout": FeedSettings().silence_timeout}
    fake, daemon = await start(nursery, prefix, exchanges.get("cryptocom"), [SPOT, "ETH/USDT"], feed=feed)
    [conn] = fake.connections
    assert fake.received_times[0] - conn.opened_at >= 1.0
    await trio.sleep(10 * fake.heartbeat_interval)  # type: ignore[attr-defined]
    assert fake.connections == [conn] and fake.keepalives >= 9
    assert daemon.health().exchanges["cryptocom"].reconnects == 0 and fake.violations == []
