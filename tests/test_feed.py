"""The shared I/O loop against fake exchanges: healing, timing (virtual), limits, TLS."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from loguru import logger

from tickerd import exchanges
from tickerd.config import ConfigError, FeedSettings, structure
from tickerd.exchanges.base import Decoder, Exchange
from tickerd.exchanges.kraken import Kraken, KrakenDecoder
from tickerd.feed import POLL_TICKS, Feed
from tickerd.health import CONNECTED, FAILED, ExchangeHealth
from tickerd.model import Ticker
from tickerd.pacing import Pacer, next_tick
from tickerd.testing import FakeBinance, FakeExchange, FakeKraken


class Harness:
    """A Feed wired to a fake and a memory channel (no Redis needed at this layer)."""

    def __init__(
        self, feed: Feed, receive: trio.MemoryReceiveChannel[Sequence[Ticker]], health: ExchangeHealth
    ) -> None:
        self.feed, self.receive, self.health = feed, receive, health

    async def wait_for_state(self, state: str) -> None:
        """Return once the exchange's health state is ``state`` (woken by health changes)."""
        with trio.fail_after(30):
            while self.health.state != state:
                await self.health.changed.wait()

    async def next_ticker(self, symbol: str | None = None) -> Ticker:
        with trio.fail_after(30):
            async for tickers in self.receive:
                for ticker in tickers:
                    if symbol is None or ticker.symbol == symbol:
                        return ticker
        raise AssertionError("channel closed")


async def start(
    nursery: trio.Nursery,
    fake: FakeExchange,
    symbols: list[str],
    url: str | None = None,
    adapter: Exchange | None = None,
    capacity: int = 1000,
    **settings: Any,
) -> Harness:
    if not fake.port:
        await nursery.start(fake.serve)
    send, receive = trio.open_memory_channel[Sequence[Ticker]](capacity)
    health = ExchangeHealth(fake.name)
    feed = Feed(
        adapter or exchanges.get(fake.name),
        url or fake.url,
        symbols,
        settings=FeedSettings(**settings),
        sink=send,
        health=health,
        feed_id=1,
        rng=random.Random(7),
    )
    nursery.start_soon(feed.run)
    return Harness(feed, receive, health)


async def test_watchdog_reconnects_a_silent_connection(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeKraken(heartbeat_interval=1.0)
    h = await start(nursery, fake, ["BTC/USD"], silence_timeout=10.0, reconnect_delay=0.5)
    await fake.wait_until(lambda: fake.is_subscribed("BTC/USD"))
    went_silent = trio.current_time()
    fake.silent = True  # the socket stays open; nothing arrives any more
    await fake.wait_until(lambda: len(fake.attempt_times) == 2)
    waited = fake.attempt_times[1] - went_silent
    assert 10.0 <= waited <= 10.0 + 10.0 / 4 + 0.5  # timeout + one watchdog step + max backoff
    assert h.health.last_error == "no frame for 10 s"


async def test_watchdog_covers_a_connection_that_never_sends_a_frame(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeKraken()
    fake.silent = True
    h = await start(nursery, fake, ["BTC/USD"], silence_timeout=5.0, ready_timeout=60.0, reconnect_delay=0.5)
    await fake.wait_until(lambda: len(fake.attempt_times) == 2)
    assert 5.0 <= fake.attempt_times[1] - fake.attempt_times[0] <= 5.0 + 5.0 / 4 + 0.5
    assert h.health.reconnects == 1


def test_backoff_grows_is_capped_and_jittered() -> None:
    settings = FeedSettings(reconnect_delay=1.0, max_reconnect_delay=8.0)
    rng = random.Random(1)
    for failures, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)]:
        delays = {settings.backoff.delay(failures, rng) for _ in range(50)}
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert len(delays) > 1  # jittered, not lockstep


async def test_refused_connections_back_off_exponentially(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeKraken()
    fake.refuse = True
    await start(nursery, fake, ["BTC/USD"], reconnect_delay=1.0, max_reconnect_delay=8.0)
    await fake.wait_until(lambda: len(fake.attempt_times) == 6)
    gaps = [b - a for a, b in itertools.pairwise(fake.attempt_times)]
    for gap, nominal in zip(gaps, [1.0, 2.0, 4.0, 8.0, 8.0], strict=True):
        assert nominal / 2 <= gap <= nominal + 0.01


async def test_backoff_resets_only_after_a_healthy_period(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeKraken()
    await start(nursery, fake, ["BTC/USD"], reconnect_delay=1.0, max_reconnect_delay=64.0, healthy_after=30.0)
    for count in range(1, 5):  # connect-then-drop: the backoff keeps growing

        def reconnected(connections: int = count) -> bool:
            return fake.connection_count == connections and fake.is_subscribed("BTC/USD")

        await fake.wait_until(reconnected)
        await fake.drop()
    await fake.wait_until(lambda: fake.connection_count == 5 and fake.is_subscribed("BTC/USD"))
    gaps = [b - a for a, b in itertools.pairwise(fake.attempt_times)]
    assert gaps[-1] >= 4.0  # the 4th consecutive failure waits 8 s nominal, at least 4
    await trio.sleep(31)  # virtual: the connection stays up past healthy_after
    await fake.drop()
    await fake.wait_until(lambda: fake.connection_count == 6)
    assert fake.attempt_times[-1] - fake.attempt_times[-2] <= 31 + 1.0  # reset: first-step delay


async def test_gives_up_after_max_retries(nursery: trio.Nursery, clock: trio.testing.MockClock) -> None:
    fake = FakeKraken()
    fake.refuse = True
    h = await start(nursery, fake, ["BTC/USD"], reconnect_delay=1.0, max_retries=3)
    await h.wait_for_state(FAILED)
    assert len(fake.attempt_times) == 3
    assert h.health.state == FAILED


async def test_binance_subscribe_requests_respect_the_rate_limit(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeBinance()
    h = await start(nursery, fake, ["BTC/USDT"])
    await fake.wait_until(lambda: fake.is_subscribed("BTC/USDT"))
    symbols = [f"C{i}/USDT" for i in range(250)]  # 100 symbols a request: three requests
    for symbol in symbols:
        h.feed.add(symbol)
    await fake.wait_until(lambda: all(fake.is_subscribed(s) for s in symbols))
    gaps = [b - a for a, b in itertools.pairwise(fake.request_times)]
    assert len(gaps) == 3 and min(gaps) >= 0.45  # ≤ 2 requests a second (Binance allows 5)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, ca_file


async def test_wss_verifies_certificates(nursery: trio.Nursery, tls: tuple[trustme.CA, Path]) -> None:
    import ssl

    ca, ca_file = tls
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    fake = FakeKraken(ssl_context=server_ctx)
    h = await start(nursery, fake, ["BTC/USD"], ca_file=str(ca_file))
    assert fake.url.startswith("wss://localhost:")
    await fake.wait_until(lambda: fake.is_subscribed("BTC/USD"))
    await fake.push("BTC/USD", last=9.5)
    while (await h.next_ticker()).last != 9.5:
        pass


async def test_wss_refuses_an_untrusted_certificate(
    nursery: trio.Nursery, tls: tuple[trustme.CA, Path]
) -> None:
    import ssl

    ca, _ = tls
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    fake = FakeKraken(ssl_context=server_ctx)
    h = await start(nursery, fake, ["BTC/USD"], reconnect_delay=0.01, max_retries=2)
    await h.wait_for_state(FAILED)
    assert "CERTIFICATE_VERIFY_FAILED" in (h.health.last_error or "")
    assert fake.connection_count == 0


async def test_live_changes_in_one_tick_go_out_as_one_request(nursery: trio.Nursery) -> None:
    fake = FakeKraken()
    h = await start(nursery, fake, ["BTC/USD"])
    await fake.wait_until(lambda: fake.is_subscribed("BTC/USD"))
    sent_before = len(fake.received)
    for symbol in ("ETH/USD", "SOL/USD", "XRP/USD"):
        h.feed.add(symbol)
    await fake.wait_until(lambda: fake.is_subscribed("XRP/USD"))
    assert [m["params"]["symbol"] for m in fake.received[sent_before:]] == [["ETH/USD", "SOL/USD", "XRP/USD"]]


async def test_application_keepalive_is_sent_on_schedule(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake = FakeKraken(heartbeat_interval=1.0)
    await start(nursery, fake, ["BTC/USD"])
    await fake.wait_until(lambda: sum(m.get("method") == "ping" for m in fake.received) >= 3)
    times = [t for m, t in zip(fake.received, fake.received_times, strict=True) if m.get("method") == "ping"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(gap - 30.0) < 0.5 for gap in gaps)  # Kraken's adapter asks for one every 30 s


async def test_a_full_channel_makes_the_reader_wait_and_lose_nothing(nursery: trio.Nursery) -> None:
    """The channel is the backpressure: while it is full the reader waits in ``send`` (what
    comes meanwhile waits in the socket) instead of dropping what it read; once drained,
    everything arrives, in order."""
    fake = FakeKraken()
    h = await start(nursery, fake, ["BTC/USD"], capacity=1)
    await fake.wait_until(lambda: fake.is_subscribed("BTC/USD"))
    for last in (1.0, 2.0, 3.0):
        await fake.push("BTC/USD", last=last)
        await trio.testing.wait_all_tasks_blocked()
    assert h.receive.statistics().tasks_waiting_send == 1
    lasts: list[float | None] = []
    with trio.fail_after(10):
        while lasts[-1:] != [3.0]:
            lasts += [ticker.last for ticker in await h.receive.receive()]
    assert lasts[-3:] == [1.0, 2.0, 3.0]


def test_a_connection_lives_until_the_shorter_of_the_configured_and_the_exchanges_limit() -> None:
    def lifetime(exchange: str, max_lifetime: float | None = None) -> float | None:
        send, _ = trio.open_memory_channel[Sequence[Ticker]](1)
        adapter = exchanges.get(exchange)
        feed = Feed(
            adapter,
            adapter.url,
            [],
            settings=FeedSettings(max_lifetime=max_lifetime),
            sink=send,
            health=ExchangeHealth(exchange),
            feed_id=1,
        )
        return feed.max_lifetime

    assert lifetime("kraken") is None  # Kraken sets no limit: connections are never rotated
    assert lifetime("kraken", max_lifetime=3600.0) == 3600.0
    assert lifetime("binance") == 23 * 3600.0  # before Binance's own 24 h cut
    assert lifetime("binance", max_lifetime=3600.0) == 3600.0
    assert lifetime("binance", max_lifetime=48 * 3600.0) == 23 * 3600.0
    with pytest.raises(
        ConfigError, match=r"max_lifetime: expected a positive number of seconds, at least 60, got 0\.0"
    ):
        structure({"feed": {"max_lifetime": 0}})


async def test_log_lines_name_exchange_and_connection_in_loguru_s_default_format(
    nursery: trio.Nursery,
) -> None:
    lines: list[str] = []
    handler = logger.add(lines.append)  # as an embedding program would: no tickerd.logs.configure
    try:
        h = await start(nursery, FakeKraken(), ["BTC/USD"])
        await h.wait_for_state(CONNECTED)
    finally:
        logger.remove(handler)
    assert any(
        line.rstrip().endswith(" - [exchange=kraken feed=1] connected, 1 symbols") for line in lines
    ), lines


async def test_frames_within_the_batch_window_go_on_together_and_a_quiet_one_at_once(
    nursery: trio.Nursery, still_clock: trio.testing.MockClock
) -> None:
    window = 0.01
    fake = FakeKraken()
    h = await start(nursery, fake, ["BTC/USD", "ETH/USD"], batch_window=window)
    await fake.wait_until(lambda: fake.is_subscribed("ETH/USD"))

    async def ticks(n: int) -> None:
        """Let ``n`` ticks pass (a little more than a window each: the clock only moves here)."""
        for _ in range(n):
            still_clock.jump(window * 1.01)
            await trio.testing.wait_all_tasks_blocked()

    def drained() -> list[Sequence[Ticker]]:
        items = []
        while True:
            try:
                items.append(h.receive.receive_nowait())
            except trio.WouldBlock:
                return items

    await ticks(POLL_TICKS + 2)  # the snapshots sent on subscribing are read, then polls run out
    drained()

    quiet_since = trio.current_time()
    await fake.push("BTC/USD", last=1.0)
    first = await h.receive.receive()
    assert [t.last for t in first] == [1.0]
    assert trio.current_time() == quiet_since  # after a quiet spell: read at once, no tick waited

    await fake.push("BTC/USD", last=2.0)
    await fake.push("ETH/USD", last=20.0)
    await trio.testing.wait_all_tasks_blocked()
    assert drained() == []  # both wait in the socket for the window's next tick
    await ticks(1)
    assert [[(t.symbol, t.last) for t in item] for item in drained()] == [
        [("BTC/USD", 2.0), ("ETH/USD", 20.0)]
    ]

    await ticks(3)  # empty ticks: the reader keeps looking at the socket at each tick ...
    await fake.push("BTC/USD", last=3.0)
    await trio.testing.wait_all_tasks_blocked()
    assert drained() == []  # ... and does not wake for the frame on its own
    await ticks(1)
    assert [[t.last for t in item] for item in drained()] == [[3.0]]


def test_the_batch_window_is_a_latency_budget_of_at_most_100_ms() -> None:
    for bad in (-0.001, 0.5):  # (nan is refused as not a finite number, as for every float)
        with pytest.raises(ConfigError, match=r"feed\.batch_window: expected seconds from 0 "):
            structure({"feed": {"batch_window": bad}})
    assert structure({"feed": {"batch_window": 0}}).feed.batch_window == 0.0


async def test_paced_connections_share_one_timer_a_tick_and_a_cancelled_timekeeper_wakes_the_rest(
    still_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer(0.01)
    woken: list[str] = []

    async def wait(name: str) -> None:
        await pacer.tick()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        keeper = trio.CancelScope()

        async def timekeeper() -> None:
            with keeper:
                await wait("keeper")

        nursery.start_soon(timekeeper)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "a")
        nursery.start_soon(wait, "b")
        await trio.testing.wait_all_tasks_blocked()
        assert len(pacer._ticks) == 1  # one tick, one timer, three waiting
        keeper.cancel()  # the first waiter's connection closes: the others are not left behind
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == ["a", "b"] and not pacer._ticks
        assert trio.current_time() == 0.0


def test_the_next_tick_is_strictly_after_now_despite_float_rounding() -> None:
    assert next_tick(1.0, 0.01) > 1.0  # 1.0 // 0.01 is 99.0 in floats: the naive tick is 1.0
    assert next_tick(0.0, 0.002) == 0.002
    assert all(
        now < next_tick(now, 0.002) <= now + 0.002 + 1e-12 for now in (i * 0.0007 for i in range(5000))
    )


class _SplitKraken(Kraken):
    """Kraken's protocol declared as two endpoint groups, each at its own URL of the one fake:
    what the loop does for an exchange that splits a symbol's streams over several URLs."""

    groups = ("book", "stats")

    def __init__(self) -> None:
        #: (group, merged state) of every decoder made, in order.
        self.made: list[tuple[str, object]] = []

    def endpoint(self, url: str, symbol: str, group: str = "") -> str:
        return f"{url}?group={group}"

    def merged_state(self) -> object:
        return object()

    def decoder(self, symbols: Iterable[str], group: str = "", merged: object = None) -> Decoder:
        self.made.append((group, merged))
        return KrakenDecoder(symbols)


async def test_endpoint_groups_run_a_connection_each_that_heals_alone_and_share_the_merged_state(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    fake, adapter = FakeKraken(), _SplitKraken()
    h = await start(nursery, fake, ["BTC/USD"], adapter=adapter, reconnect_delay=0.5)
    await fake.wait_until(lambda: len(fake.subscribers("BTC/USD")) == 2)
    await h.wait_for_state(CONNECTED)
    book, stats = sorted(fake.connections, key=lambda conn: str(conn.ws.path))
    assert (book.ws.path, stats.ws.path) == ("/v2?group=book", "/v2?group=stats")
    assert h.health.connections == 2
    [(_, merged), _] = adapter.made
    assert sorted(adapter.made, key=str) == sorted([("book", merged), ("stats", merged)], key=str)

    await book.drop()  # one group's connection fails: that lane alone reconnects
    await fake.wait_until(lambda: fake.connection_count == 3 and len(fake.subscribers("BTC/USD")) == 2)
    assert not stats.closed and h.health.reconnects == 1
    assert adapter.made[-1] == ("book", merged)  # the new decoder shares the state that outlived it
    assert await fake.push("BTC/USD", bid=10.0, ask=11.0) == 2
    while (await h.next_ticker("BTC/USD")).bid != 10.0:  # the snapshots of the subscriptions come first
        pass
    await h.wait_for_state(CONNECTED)
    assert h.health.connections == 2
