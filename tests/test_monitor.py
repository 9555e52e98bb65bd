"""Health records in Redis (rate limits, TTLs, state changes) and staleness, in virtual time."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable

import pytest
import redis
import trio
import trio.testing

import tickerd
from tests.conftest import make_config, start_daemon, start_fake, wait_health
from tickerd import snapshots
from tickerd.broadcast import Broadcast
from tickerd.config import HealthSettings
from tickerd.layout import RedisLayout
from tickerd.monitor import COALESCE, HealthMonitor
from tickerd.snapshots import DaemonHealth, ExchangeRecord, ExchangeSnapshot, Heartbeat, WriterStats
from tickerd.testing import FakeKraken
from tickerd.writer import RedisWriter

#: What the health records read from Redis are: the heartbeat (if any), every exchange's record.
Records = tuple[Heartbeat | None, dict[str, ExchangeRecord]]


def spy_records(
    daemon: tickerd.TickerDaemon, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[float, str, bytes | None]]:
    """Every health record the monitor hands the writer from now on: (virtual time, key,
    stored value; ``None`` for a deletion).

    Put times are exact in virtual time, unlike the writes themselves: the clock jumps ahead
    while a write runs in its worker thread.
    """
    puts: list[tuple[float, str, bytes | None]] = []
    put = daemon.writer.put_record

    def spy(key: str, value: bytes | None, ttl: int) -> None:
        puts.append((trio.current_time(), key, value))
        put(key, value, ttl)

    monkeypatch.setattr(daemon.writer, "put_record", spy)
    return puts


async def wait_stale(daemon: tickerd.TickerDaemon, exchange: str, symbols: list[str]) -> None:
    """Return once ``exchange``'s stale symbols are ``symbols`` (virtual time: a far limit)."""
    with trio.fail_after(3600):
        while daemon.health().exchanges[exchange].stale != tuple(symbols):
            await daemon.health_changed()


def methods(fake: FakeKraken) -> list[str]:
    """The methods of the messages the fake received, application pings left out."""
    return [m["method"] for m in fake.received if m.get("method") != "ping"]


async def wait_records(
    daemon: tickerd.TickerDaemon,
    client: redis.Redis,
    prefix: str,
    predicate: Callable[[Heartbeat | None, dict[str, ExchangeRecord]], object],
) -> Records:
    """The health records once ``predicate`` holds, re-read after every write to Redis.

    The time limit is far off because under a MockClock the clock may jump to the nearest
    deadline while a write runs in its worker thread.
    """
    with trio.fail_after(3600):
        while not predicate(*(found := RedisLayout(prefix).read_health(client))):
            await daemon.writer.flushed()
    return found


async def test_records_describe_the_daemon_and_each_exchange(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.reject("FOO/USD")
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "FOO/USD"]})
    daemon = await start_daemon(nursery, config)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await kraken.push("BTC/USD", last=5.0)

    heartbeat, exchanges = await wait_records(
        daemon,
        redis_client,
        prefix,
        # The refusal is written at once, possibly before the connection counts as up.
        lambda _, ex: "kraken" in ex and ex["kraken"].rejected and ex["kraken"].state == "connected",
    )
    assert heartbeat is not None
    assert heartbeat.state == "running" and heartbeat.pid == os.getpid()
    assert heartbeat.exchanges == ("kraken",) and heartbeat.version == tickerd.__version__
    record = exchanges["kraken"]
    assert record.exchange == "kraken" and record.state == "connected" and record.connections == 1
    assert record.symbols == ("BTC/USD", "FOO/USD") and record.stale == ()
    assert record.rejected == {"FOO/USD": "Currency pair not supported FOO/USD"}
    assert record.last_error == "FOO/USD rejected: Currency pair not supported FOO/USD"
    assert record.last_error_ts is not None and record.last_error_ts > heartbeat.started - 1
    assert record.reconnects == 0
    layout = RedisLayout(prefix)
    for key in (layout.heartbeat(), layout.health("kraken")):
        assert 0 < redis_client.ttl(key) <= 90  # 3 × the 30 s interval: a dead daemon's records expire


async def test_steady_state_costs_one_write_per_exchange_per_interval(
    nursery: trio.Nursery, clock: trio.testing.MockClock, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kraken = await start_fake(nursery, FakeKraken(heartbeat_interval=10.0))
    symbols = [f"S{i}/USD" for i in range(100)]
    config = make_config(prefix, {"kraken": kraken}, {"kraken": symbols}, health={"stale_after": 7200})
    daemon = await start_daemon(nursery, config)
    await kraken.wait_until(lambda: all(kraken.is_subscribed(s) for s in symbols))
    # Connected and every snapshot ticker in (a first ticker is a state change of its own); a
    # far limit, since virtual time jumps ahead while the writer's thread writes them.
    await wait_health(
        daemon,
        lambda h: h.exchanges["kraken"].state == "connected" and not h.exchanges["kraken"].waiting,
        within=3600,
    )

    puts = spy_records(daemon, monkeypatch)
    await trio.sleep(3600)  # virtual: one hour of a healthy daemon

    writes = Counter(key for _, key, _ in puts)
    layout = RedisLayout(prefix)
    # 120 an hour for 100 symbols (a per-symbol scheme would cost 12,000).
    assert writes[layout.health("kraken")] <= 121
    assert writes[layout.heartbeat()] <= 121
    assert writes[layout.health("kraken")] >= 119  # and the records are kept fresh


async def test_a_state_change_is_written_at_once(
    nursery: trio.Nursery,
    clock: trio.testing.MockClock,
    redis_client: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}, feed={"reconnect_delay": 60})
    daemon = await start_daemon(nursery, config)
    await wait_records(
        daemon, redis_client, prefix, lambda _, ex: "kraken" in ex and ex["kraken"].connections
    )
    await trio.sleep(40)  # past the first steady-state write
    puts = spy_records(daemon, monkeypatch)
    kraken.refuse = True
    dropped = trio.current_time()
    await kraken.drop()
    _, exchanges = await wait_records(
        daemon, redis_client, prefix, lambda _, ex: ex["kraken"].state == "reconnecting"
    )
    key = RedisLayout(prefix).health("kraken")
    put_at = next(
        t
        for t, k, value in puts
        if k == key and value and snapshots.loads(value, ExchangeRecord, key).state == "reconnecting"
    )
    assert put_at - dropped < 1.0  # at once, not at the next 30 s interval
    assert exchanges["kraken"].reconnects >= 1 and exchanges["kraken"].connections == 0


async def test_a_symbol_without_updates_is_stale_logged_once_and_fresh_again(
    nursery: trio.Nursery,
    threaded_clock: trio.testing.MockClock,
    redis_client: redis.Redis,
    prefix: str,
    logs: list[str],
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    # Generous against the pushes: in virtual time the writer's thread lags a little.
    config = make_config(
        prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}, health={"stale_after": 30}
    )
    daemon = await start_daemon(nursery, config)
    await kraken.wait_until(lambda: kraken.is_subscribed("ETH/USD"))

    async def btc_keeps_moving() -> None:
        while True:
            await kraken.push("BTC/USD", last=kraken.wiggle("BTC/USD")["last"])
            await trio.sleep(1)

    nursery.start_soon(btc_keeps_moving)
    await wait_stale(daemon, "kraken", ["ETH/USD"])
    _, exchanges = await wait_records(
        daemon, redis_client, prefix, lambda _, ex: ex["kraken"].stale == ("ETH/USD",)
    )
    assert exchanges["kraken"].last_tick["ETH/USD"] < exchanges["kraken"].last_tick["BTC/USD"]
    await trio.sleep(120)  # virtual: still stale, no new log line
    assert logs.count("[exchange=kraken symbol=ETH/USD] stale: no update for 30 s") == 1
    assert not any(m.get("method") == "unsubscribe" for m in kraken.received)  # BTC/USD flows

    await kraken.push("ETH/USD", last=3000.0)
    await wait_stale(daemon, "kraken", [])
    assert logs.count("[exchange=kraken symbol=ETH/USD] fresh again") == 1


async def test_a_connection_whose_symbols_all_went_stale_resubscribes(
    nursery: trio.Nursery, threaded_clock: trio.testing.MockClock, prefix: str, logs: list[str]
) -> None:
    kraken = await start_fake(nursery, FakeKraken(heartbeat_interval=1.0))  # frames keep coming
    # stale_after is generous: in virtual time the writer's thread lags a little behind.
    config = make_config(
        prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]}, health={"stale_after": 30}
    )
    daemon = await start_daemon(nursery, config)
    await wait_stale(daemon, "kraken", ["BTC/USD", "ETH/USD"])
    await kraken.wait_until(lambda: methods(kraken) == ["subscribe", "unsubscribe", "subscribe"])
    assert kraken.connection_count == 1  # no reconnect
    # The renewed subscription's snapshots make both fresh again.
    await wait_stale(daemon, "kraken", [])
    assert sum("resubscribing" in m for m in logs) == 1


async def test_a_silent_connection_is_reconnected_not_resubscribed(
    nursery: trio.Nursery, clock: trio.testing.MockClock, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(
        prefix,
        {"kraken": kraken},
        {"kraken": ["BTC/USD"]},
        health={"stale_after": 10},
        feed={"silence_timeout": 30},
    )
    await start_daemon(nursery, config)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    kraken.silent = True  # no frame at all: the watchdog's case
    await kraken.wait_until(lambda: kraken.connection_count == 2 and kraken.is_subscribed("BTC/USD"))
    assert methods(kraken) == ["subscribe", "subscribe"]


async def test_shutdown_marks_the_daemon_stopped(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]})
    async with trio.open_nursery() as inner:
        daemon = await start_daemon(inner, config)
        await wait_records(daemon, redis_client, prefix, lambda _, ex: "kraken" in ex)
        inner.cancel_scope.cancel()
    layout = RedisLayout(prefix)
    heartbeat, exchanges = layout.read_health(redis_client)
    assert heartbeat is not None and heartbeat.state == "stopped"
    assert exchanges == {} and not redis_client.exists(layout.health("kraken"))


class ChangingHealth:
    """A health source with one exchange whose state changes on command (its reconnect count)."""

    def __init__(self) -> None:
        self.health_changes: Broadcast[str | None] = Broadcast()
        self.reconnects = 0

    def change(self) -> None:
        self.reconnects += 1
        self.health_changes.fire("kraken")

    def health(self) -> DaemonHealth:
        snapshot = ExchangeSnapshot(
            state="connected",
            connections=1,
            reconnects=self.reconnects,
            last_error=None,
            last_error_ts=None,
            rejected={},
            stale=(),
            symbols=("BTC/USD",),
            feeds=1,
            frames=0,
            junk=0,
            last_tick={},
        )
        return DaemonHealth({"kraken": snapshot}, WriterStats(0, 0, 0, redis_up=True, reason=None), None)


async def test_state_changes_are_coalesced_to_one_write_a_second_the_first_at_once(
    nursery: trio.Nursery, clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = RedisLayout("coalesce-test:")
    writer = RedisWriter("redis://127.0.0.1:1/0", layout)  # not run: the records are only queued
    source = ChangingHealth()
    puts: list[tuple[float, str, bytes | None]] = []
    monkeypatch.setattr(
        writer, "put_record", lambda key, value, ttl: puts.append((trio.current_time(), key, value))
    )
    nursery.start_soon(HealthMonitor(source, writer, HealthSettings(), layout).run)
    await trio.sleep(5)  # the first records, then a quiet spell
    puts.clear()

    start = trio.current_time()
    source.change()  # after a quiet second: written at once
    for _ in range(30):  # then one change every 0.1 s for 3 s
        await trio.sleep(0.1)
        source.change()
    await trio.sleep(5)

    key = layout.health("kraken")
    records = [(t, snapshots.loads(v, ExchangeRecord, key).reconnects) for t, k, v in puts if k == key and v]
    assert records[0] == (start, 1)
    times = [t for t, _ in records]
    assert all(b - a >= COALESCE - 1e-9 for a, b in itertools.pairwise(times))  # at most one a second
    assert len(records) == 4 and records[-1][1] == 31  # and the last change is not lost
    heartbeats = [t for t, k, _ in puts if k == layout.heartbeat()]
    assert heartbeats[0] == start and all(b - a >= COALESCE - 1e-9 for a, b in itertools.pairwise(heartbeats))
