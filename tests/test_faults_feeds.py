"""Fault injection, feeds: exchanges that accept a connection and then never deliver.

Each hostile server belongs to the test (a fake told to misbehave, or a bare TCP server), the
timing runs on the mock clock.  Such a connection ends by the silence watchdog or a timeout,
not by a drop, and used to count as healthy by its age: it reconnected every
``silence_timeout`` with first-step delays for ever.  A connection is healthy only after it
delivered tickers for ``healthy_after``, so these back off toward the cap.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Sequence

import pytest
import trio
import trio.testing

from tests.test_feed import Harness, start
from tests.test_transport import Offline
from tickerd import exchanges, transport
from tickerd.config import FeedSettings
from tickerd.feed import Feed
from tickerd.health import CONNECTED, ExchangeHealth
from tickerd.model import Ticker
from tickerd.testing import FakeBinance, FakeExchange, FakeKraken

#: reconnect_delay 1 s doubling to a 16 s cap: the nominal delay after each failure.
NOMINAL = [1.0, 2.0, 4.0, 8.0, 16.0, 16.0]
FIRST, CAP = 1.0, 16.0
#: silence_timeout and healthy_after of the feeds under test.
SILENCE = 4.0


def assert_backs_off(attempt_times: list[float], session: float) -> None:
    """Each gap between attempts is the time a session lasts (``session`` to 1¼ × it: the
    watchdog samples every quarter) plus a delay that doubles toward the cap (equal jitter:
    half of the nominal delay at least)."""
    gaps = [b - a for a, b in itertools.pairwise(attempt_times)]
    assert len(gaps) >= len(NOMINAL)
    for gap, nominal in zip(gaps, NOMINAL, strict=False):
        assert session + nominal / 2 <= gap <= session * 1.25 + nominal + 0.1, (gaps, nominal)


async def backs_off(nursery: trio.Nursery, fake: FakeExchange, symbols: list[str]) -> Harness:
    """Run a feed of ``symbols`` against ``fake`` (which never delivers) until it has
    reconnected once per :data:`NOMINAL` step, and check the delays grew toward the cap."""
    h = await start(
        nursery,
        fake,
        symbols,
        silence_timeout=SILENCE,
        healthy_after=SILENCE,
        reconnect_delay=FIRST,
        max_reconnect_delay=CAP,
    )
    await fake.wait_until(lambda: len(fake.attempt_times) == len(NOMINAL) + 1)
    assert_backs_off(fake.attempt_times, SILENCE)
    return h


async def test_acknowledged_then_silent_backs_off(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeKraken(heartbeat_interval=3600.0)  # acks and the snapshot, then nothing
    h = await backs_off(nursery, fake, ["BTC/USD"])
    assert h.health.last_error == "no frame for 4 s"


async def test_pings_only_keeps_the_connection(nursery: trio.Nursery, clock: trio.testing.MockClock) -> None:
    """A server that pings a subscription without updates is alive: no reconnect at all (the
    staleness check resubscribes symbols that never update, see the daemon's runner)."""
    fake = FakeBinance(ping_interval=1.0)  # the SUBSCRIBE ack, then protocol pings only
    fake.reject("BTC/USDT")  # Binance accepts an unknown stream and never serves it
    h = await start(nursery, fake, ["BTC/USDT"], silence_timeout=SILENCE, healthy_after=SILENCE)
    await fake.wait_until(lambda: fake.keepalives >= 10 * SILENCE)  # ten silence timeouts of pings
    assert len(fake.attempt_times) == 1
    assert h.health.state == CONNECTED and h.health.reconnects == 0


async def test_a_server_that_stops_answering_pings_back_off(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeBinance(ping_interval=1.0)
    fake.reject("BTC/USDT")
    fake.silent = True  # no ack, no ping: nothing is heard on any connection
    await backs_off(nursery, fake, ["BTC/USDT"])


async def test_every_symbol_rejected_backs_off_and_logs_each_refusal_once(
    nursery: trio.Nursery, clock: trio.testing.MockClock, logs: list[str]
) -> None:
    fake = FakeKraken()
    for symbol in ("BTC/USD", "ETH/USD"):
        fake.reject(symbol)
    h = await backs_off(nursery, fake, ["BTC/USD", "ETH/USD"])
    assert set(h.health.rejected) == {"BTC/USD", "ETH/USD"}
    refusals = [line for line in logs if "symbol rejected" in line]
    assert refusals == [
        "[exchange=kraken feed=1 symbol=BTC/USD] symbol rejected: Currency pair not supported BTC/USD",
        "[exchange=kraken feed=1 symbol=ETH/USD] symbol rejected: Currency pair not supported ETH/USD",
    ]
    await trio.sleep(600)  # virtual: after ten minutes a refusal that persists is logged again
    await fake.wait_until(lambda: sum("symbol rejected" in line for line in logs) == 4)


@pytest.mark.parametrize("engine", transport.engine_names())
async def test_a_handshake_that_never_completes_is_retried_with_backoff(
    nursery: trio.Nursery, clock: trio.testing.MockClock, engine: str, logs: list[str]
) -> None:
    attempt_times: list[float] = []
    attempted = trio.Condition()

    async def accept_and_never_answer(stream: trio.SocketStream) -> None:
        async with attempted:
            attempt_times.append(trio.current_time())
            attempted.notify_all()
        await trio.sleep_forever()

    serve = functools.partial(trio.serve_tcp, accept_and_never_answer, 0, host="127.0.0.1")
    listeners = await nursery.start(serve)
    port = listeners[0].socket.getsockname()[1]
    send, _ = trio.open_memory_channel[Sequence[Ticker]](10)
    health = ExchangeHealth("kraken")
    feed = Feed(
        exchanges.get("kraken"),
        f"ws://127.0.0.1:{port}/v2",
        ["BTC/USD"],
        settings=FeedSettings(engine=engine, reconnect_delay=FIRST, max_reconnect_delay=CAP),
        sink=send,
        health=health,
        feed_id=1,
        rng=random.Random(7),
    )
    nursery.start_soon(feed.run)
    async with attempted:
        while len(attempt_times) <= len(NOMINAL):
            await attempted.wait()
    gaps = [b - a for a, b in itertools.pairwise(attempt_times)]
    for gap, nominal in zip(gaps, NOMINAL, strict=False):  # the connect timeout, then the delay
        assert transport.CONNECT_TIMEOUT + nominal / 2 <= gap <= transport.CONNECT_TIMEOUT + nominal + 0.1
    assert "timed out" in (health.last_error or "")
    assert any(line.startswith("[exchange=kraken feed=1] no connection (") for line in logs)
    assert not any("connection lost" in line for line in logs)  # none was ever made


async def test_a_name_that_does_not_resolve_is_logged_as_such(
    nursery: trio.Nursery, clock: trio.testing.MockClock, logs: list[str]
) -> None:
    trio.socket.set_custom_hostname_resolver(Offline())  # this test's trio.run only
    send, _ = trio.open_memory_channel[Sequence[Ticker]](10)
    health = ExchangeHealth("kraken")
    adapter = exchanges.get("kraken")
    settings = FeedSettings(reconnect_delay=FIRST, max_reconnect_delay=CAP)
    feed = Feed(adapter, adapter.url, ["BTC/USD"], settings=settings, sink=send, health=health, feed_id=1)
    nursery.start_soon(feed.run)
    await trio.sleep(30)  # virtual: a few attempts
    assert health.reconnects >= 3
    assert (health.last_error or "").startswith("cannot resolve ws.kraken.com (")
    failures = [line for line in logs if "cannot resolve" in line]
    assert failures and all(
        line.startswith("[exchange=kraken feed=1] no connection (cannot resolve ws.kraken.com (")
        for line in failures
    )
    assert not any("connection lost" in line for line in logs)
