"""The conformance suite: every registered exchange, against its fake, through the daemon.

Each scenario is written once and runs for every name in :func:`tickerd.exchanges.names`; a new
exchange gets all of them by being registered.  Where a venue lacks a mechanism, its adapter
says so (``rejects_unknown``, ``reconnect_request``) and the scenario
checks tickerd's fallback instead: nothing is skipped.  An exchange whose streams are split over
several URLs (``Exchange.groups``) has one connection per group for each set of symbols: the
scenarios count connections in units of :func:`lanes`.

Timing is virtual (the ``clock`` fixture), so keepalive intervals, lifetimes, backoff and
staleness cost no real time.  One caveat shapes the helpers below: the writer talks to Redis
from a thread, and while only that thread works the mock clock's autojump races virtual time
ahead from timer to timer.  So the scenarios give every timer they are not about a long
horizon (:data:`QUIET`), wait with guards as long as that horizon, and switch to real-rate
time (:func:`real_time`) while they wait for a ticker in Redis.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import redis
import trio
import trio.testing

from tests.conftest import Updates, make_config, start_daemon, start_fake, stored, until, wait_health
from tickerd import TickerDaemon, exchanges
from tickerd.config import FeedSettings
from tickerd.exchanges.base import DERIVATIVE_FIELDS, Exchange, market
from tickerd.snapshots import ExchangeSnapshot
from tickerd.testing import FakeExchange, fake_for

#: Virtual seconds no timer outside a scenario's subject may reach: silence, staleness, guards.
QUIET = 3600.0
#: Frames no decoder can use: text, JSON of no known shape, binary.
JUNK: tuple[str | bytes, ...] = ("garbage", '{"tickerd":"junk"}', b"\x00\xff")


@pytest.fixture(params=exchanges.names())
def adapter(request: pytest.FixtureRequest) -> Exchange:
    exchange: Exchange = exchanges.get(request.param)
    return exchange


def variant(adapter: Exchange, symbol: str, base: str) -> str:
    """``symbol`` with another base asset: the same market kind, served on the same endpoint.  An
    inverse market whose settle asset the adapter refuses with another base (Binance COIN-M)
    settles in its new base instead (BitMEX settles it in BTC: a quanto)."""
    same = base + symbol[symbol.index("/") :]
    try:
        adapter.check_symbol(same)
    except ValueError:
        return attrs.evolve(market(symbol), base=base, settle=base).symbol
    return same


def lanes(adapter: Exchange) -> int:
    """Connections one set of symbols takes: one per endpoint group."""
    return len(adapter.groups)


def exchange_health(daemon: TickerDaemon, exchange: str) -> ExchangeSnapshot:
    return daemon.health().exchanges[exchange]


async def until_health(
    daemon: TickerDaemon, exchange: str, predicate: Callable[[ExchangeSnapshot], bool]
) -> ExchangeSnapshot:
    """The exchange's health once ``predicate`` holds (re-checked on every health change)."""
    await wait_health(daemon, lambda h: predicate(h.exchanges[exchange]), within=QUIET)
    return exchange_health(daemon, exchange)


async def start(
    nursery: trio.Nursery,
    prefix: str,
    adapter: Exchange,
    symbols: list[str],
    *,
    fake: FakeExchange | None = None,
    feed: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
) -> tuple[FakeExchange, TickerDaemon]:
    """The adapter's fake and a daemon subscribed to ``symbols`` on it; returns once the fake
    serves every symbol it knows (not the ``reject``-ed ones).  Silence and staleness stay out
    of the way unless ``feed``/``health`` bring them in."""
    fake = await start_fake(nursery, fake or fake_for(adapter.name)())
    config = make_config(
        prefix,
        {adapter.name: fake},
        {adapter.name: symbols},
        feed={"silence_timeout": QUIET} | (feed or {}),
        health={"stale_after": QUIET} | (health or {}),
    )
    daemon = await start_daemon(nursery, config)
    served = [symbol for symbol in symbols if symbol not in fake.rejected]
    await until(fake, lambda: all(len(fake.subscribers(s)) == lanes(adapter) for s in served), within=QUIET)
    return fake, daemon


@contextlib.contextmanager
def real_time(clock: trio.testing.MockClock) -> Iterator[None]:
    """Virtual time at the real rate and without jumps, while the writer's thread works."""
    clock.autojump_threshold, clock.rate = math.inf, 1.0
    try:
        yield
    finally:
        clock.rate, clock.autojump_threshold = 0.0, 0.0


async def flows(
    clock: trio.testing.MockClock, fake: FakeExchange, updates: Updates, symbol: str, bid: float
) -> dict[str, Any]:
    """Push a ticker for ``symbol`` and return its record once Redis has it."""
    with real_time(clock):
        while not await fake.push(symbol, bid=bid, ask=bid + 1):  # between unsubscribe and subscribe
            await until(fake, lambda: fake.is_subscribed(symbol))
        return await updates.wait_for(lambda r: r["symbol"] == symbol and r["bid"] == bid)


async def test_tickers_reach_redis(
    adapter: Exchange,
    clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    redis_client: redis.Redis,
    prefix: str,
    updates: Updates,
) -> None:
    symbols = list(adapter.sample_symbols)
    fake, _ = await start(nursery, prefix, adapter, symbols)
    for n, symbol in enumerate(symbols):
        record = await flows(clock, fake, updates, symbol, 100.0 + n)
        assert (record["exchange"], record["ask"]) == (adapter.name, 101.0 + n)
        kept = stored(redis_client, prefix, adapter.name, symbol)  # a push may be several frames
        assert kept is not None and (kept["bid"], kept["ask"]) == (100.0 + n, 101.0 + n)
    assert fake.violations == []


async def test_a_drop_heals(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    symbol = adapter.sample_symbols[0]
    fake, daemon = await start(nursery, prefix, adapter, [symbol])
    n = lanes(adapter)
    await fake.drop()
    await until(
        fake, lambda: fake.connection_count == 2 * n and len(fake.subscribers(symbol)) == n, within=QUIET
    )
    await flows(clock, fake, updates, symbol, 4242.0)
    assert exchange_health(daemon, adapter.name).reconnects == n


async def test_keepalive_keeps_a_quiet_socket_open(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    silence = FeedSettings().silence_timeout
    quiet = 3 * silence  # no ticker traffic for three silence timeouts
    # Protocol pings (Binance's duty) feed the watchdog as application heartbeats do.
    feed = {"silence_timeout": silence}
    fake, daemon = await start(nursery, prefix, adapter, [adapter.sample_symbols[0]], feed=feed)
    conns = list(fake.connections)
    assert len(conns) == lanes(adapter)
    performed = fake.keepalives

    await trio.sleep(quiet)
    assert fake.connections == conns and fake.connection_count == len(conns)
    assert fake.keepalives - performed >= 2  # the exchange's keepalive duty, done again and again
    assert exchange_health(daemon, adapter.name).reconnects == 0


async def test_an_unknown_symbol_does_not_stop_the_others(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    good, unknown = adapter.sample_symbols[0], variant(adapter, adapter.sample_symbols[0], "NOPE")
    fake = fake_for(adapter.name)()
    fake.reject(unknown)
    stale_after = 10.0
    began = trio.current_time()
    fake, daemon = await start(
        nursery, prefix, adapter, [unknown, good], fake=fake, health={"stale_after": stale_after}
    )
    if adapter.rejects_unknown:
        seen = await until_health(daemon, adapter.name, lambda h: unknown in h.rejected)
        assert list(seen.rejected) == [unknown]
    else:  # accepted and never served: it goes stale instead
        seen = await until_health(daemon, adapter.name, lambda h: unknown in h.stale)
        assert not seen.rejected and trio.current_time() - began >= stale_after
    assert not fake.is_subscribed(unknown)
    await flows(clock, fake, updates, good, 31.5)
    assert fake.violations == []


async def test_live_add_and_remove_touch_only_that_symbol(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    first, kept, added = (variant(adapter, adapter.sample_symbols[0], base) for base in ("BTC", "ETH", "SOL"))
    fake, daemon = await start(nursery, prefix, adapter, [first, kept])
    conns = list(fake.connections)
    assert len(conns) == lanes(adapter)
    mark = len(fake.changes)

    daemon.add(adapter.name, added)
    await until(fake, lambda: len(fake.subscribers(added)) == len(conns), within=QUIET)
    daemon.remove(adapter.name, first)
    await until(fake, lambda: not fake.is_subscribed(first), within=QUIET)
    assert len(fake.changes) - mark == 2 * len(conns)
    for conn in conns:  # on every connection of the set: this symbol's change, and nothing else
        changes = [(op, symbol) for c, op, symbol in fake.changes[mark:] if c is conn]
        assert changes == [("subscribe", added), ("unsubscribe", first)]
        assert conn.subscribed == {kept, added}
    assert fake.connections == conns
    assert fake.violations == []


async def test_rotation_is_make_before_break(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str
) -> None:
    """A reconnect request from the exchange, or else the configured lifetime, rotates a
    connection: the successor is subscribed while the old one still runs."""
    symbol = adapter.sample_symbols[0]
    limit = 600.0  # when the exchange closes the old connection itself
    fake = fake_for(adapter.name)()
    feed: dict[str, Any] = {}
    if not adapter.reconnect_request:
        fake.lifetime = limit
        feed["max_lifetime"] = limit / 2
    fake, daemon = await start(nursery, prefix, adapter, [symbol], fake=fake, feed=feed)
    old = list(fake.connections)
    n = len(old)
    if adapter.reconnect_request:
        nursery.start_soon(fake.request_reconnect, limit)

    await until(fake, lambda: len(fake.subscribers(symbol)) == 2 * n, within=limit)
    assert not any(conn.closed for conn in old)  # no gap: old and new serve the symbol
    await until(fake, lambda: all(conn.closed for conn in old), within=limit)
    assert all(trio.current_time() - conn.opened_at < limit for conn in old)  # closed by tickerd
    assert fake.connection_count == 2 * n and len(fake.subscribers(symbol)) == n
    assert exchange_health(daemon, adapter.name).reconnects == 0  # a rotation is not a failure


async def test_junk_frames_are_counted_and_the_connection_stays(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    symbol = adapter.sample_symbols[0]
    fake, daemon = await start(nursery, prefix, adapter, [symbol])
    for frame in JUNK:
        await fake.send_raw(frame)
    await flows(clock, fake, updates, symbol, 9.25)  # sent after the junk, on the same socket
    seen = exchange_health(daemon, adapter.name)
    assert seen.junk == len(JUNK) * lanes(adapter) and seen.reconnects == 0  # each connection got it
    assert fake.connection_count == lanes(adapter)


async def test_an_insane_frame_is_junk_and_the_stored_value_stays(
    adapter: Exchange,
    clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    prefix: str,
    updates: Updates,
    logs: list[str],
) -> None:
    """A frame with a negative bid and ask (seen live: bid −1, ask −5) is junk: it is counted
    and its reason logged, nothing of it reaches Redis, and the next good frame goes through."""
    symbol = adapter.sample_symbols[0]
    fake, daemon = await start(nursery, prefix, adapter, [symbol])
    await flows(clock, fake, updates, symbol, 50.0)
    before = exchange_health(daemon, adapter.name)

    published: list[dict[str, Any]] = []

    def good_one(record: dict[str, Any]) -> bool:
        published.append(record)
        return bool(record["bid"] == 60.0)

    with real_time(clock):
        await fake.push(symbol, bid=-1.0, ask=-5.0)
        await fake.push(symbol, bid=60.0, ask=61.0)  # on the same socket, after the junk
        await updates.wait_for(good_one)
    assert {(r["bid"], r["ask"]) for r in published} <= {(50.0, 51.0), (60.0, 61.0)}
    seen = exchange_health(daemon, adapter.name)
    assert seen.junk > before.junk and seen.reconnects == 0
    assert any(f"{symbol}: bid -1.0 is not a valid price" in message for message in logs)


async def test_a_crossed_book_is_written_and_counted(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    symbol = adapter.sample_symbols[0]
    fake, daemon = await start(nursery, prefix, adapter, [symbol])
    await flows(clock, fake, updates, symbol, 50.0)
    assert exchange_health(daemon, adapter.name).crossed == 0
    with real_time(clock):
        await fake.push(symbol, bid=101.0, ask=100.0)
        await updates.wait_for(lambda r: (r["bid"], r["ask"]) == (101.0, 100.0))
    seen = exchange_health(daemon, adapter.name)
    assert seen.crossed >= 1 and seen.junk == 0


async def test_derivative_fields_reach_the_record_of_the_price(
    adapter: Exchange, clock: trio.testing.MockClock, nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    """Mark and index price, funding and open interest of a perpetual (a spot symbol where the
    adapter serves spot only) land in the same latest record as its book, whichever channel of
    the venue carries them; a field the adapter cannot provide stays null, and spot has none."""
    symbol = next((s for s in adapter.sample_symbols if ":" in s), adapter.sample_symbols[0])
    pushed = {
        "mark": 101.5,
        "index": 101.25,
        "funding_rate": -0.000125,  # shorts pay longs: negative rates are valid
        "next_funding": 1798761600.0,
        "open_interest": 0.0,  # nobody holds it: zero is valid
    }
    fields = dict(zip(DERIVATIVE_FIELDS, pushed.values(), strict=True))
    expected = {
        field: value if ":" in symbol and field in adapter.provides else None
        for field, value in fields.items()
    }
    fake, _ = await start(nursery, prefix, adapter, [symbol])
    with real_time(clock):
        await fake.push(symbol, bid=100.0, ask=102.0, **pushed)
        record = await updates.wait_for(
            lambda r: (
                r["symbol"] == symbol and r["bid"] == 100.0 and all(r[f] == v for f, v in expected.items())
            )
        )
    assert {field: record[field] for field in DERIVATIVE_FIELDS} == expected
    assert fake.violations == []
