"""Status that tells the truth (issue 10, items 9-12): uptime, subscription changes written at
once, symbols waiting for their first ticker, exchanges that never connected, writer counters."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis
import trio
import trio.testing

from tests.conftest import make_config, start_daemon, start_fake
from tests.test_monitor import spy_records, wait_records, wait_stale
from tests.test_status import status, store_heartbeat
from tickerd import snapshots
from tickerd.config import ExchangeConfig
from tickerd.layout import RedisLayout
from tickerd.model import Ticker
from tickerd.snapshots import ExchangeRecord
from tickerd.testing import FakeBinance, FakeKraken


async def test_uptime_counts_to_now_not_to_the_last_heartbeat(
    redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    store_heartbeat(redis_client, prefix, age=11, uptime=3600)
    code, out = await status(tmp_path, prefix)
    assert code == 0, out
    # Not "up 59 min": the heartbeat's own time is 11 s (and the CLI's start-up) behind.
    assert ", up 60 min, heartbeat 1" in out.splitlines()[0]


async def test_a_subscription_change_is_written_at_once_one_write_per_burst(
    nursery: trio.Nursery,
    clock: trio.testing.MockClock,
    redis_client: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]})
    daemon = await start_daemon(nursery, config)
    await wait_records(
        daemon, redis_client, prefix, lambda _, ex: "kraken" in ex and ex["kraken"].connections
    )
    await trio.sleep(40)  # past the first steady-state write: the next is 30 s away
    key = RedisLayout(prefix).health("kraken")

    def symbol_sets() -> list[tuple[float, int]]:
        """(put time, number of symbols) of every kraken record handed to the writer."""
        return [
            (t, len(snapshots.loads(v, ExchangeRecord, key).symbols)) for t, k, v in puts if k == key and v
        ]

    many = ["BTC/USD", *(f"S{i}/USD" for i in range(50))]
    puts = spy_records(daemon, monkeypatch)
    changed = trio.current_time()
    await daemon.apply({"kraken": ExchangeConfig(url=kraken.url, symbols=tuple(many))})
    await wait_records(daemon, redis_client, prefix, lambda _, ex: len(ex["kraken"].symbols) == 51)
    first_at, first_count = symbol_sets()[0]
    assert first_at - changed < 1.0 and first_count == 51  # at once, and the 50 as one write
    assert {count for _, count in symbol_sets()} == {51}  # never a half-applied set

    await trio.sleep(5)  # quiet: the first change after a quiet second is written at once
    puts = spy_records(daemon, monkeypatch)
    changed = trio.current_time()
    for symbol in many[1:]:  # a burst through the API, as from the database source
        daemon.remove("kraken", symbol)
    await wait_records(daemon, redis_client, prefix, lambda _, ex: ex["kraken"].symbols == ("BTC/USD",))
    first_at, first_count = symbol_sets()[0]
    assert first_at - changed < 1.0 and first_count == 1
    assert {count for _, count in symbol_sets()} == {1}

    await trio.sleep(5)
    puts = spy_records(daemon, monkeypatch)
    changed = trio.current_time()
    daemon.add("kraken", "ETH/USD")
    await wait_records(daemon, redis_client, prefix, lambda _, ex: len(ex["kraken"].symbols) == 2)
    first_at, first_count = symbol_sets()[0]
    assert first_at - changed < 1.0 and first_count == 2


async def test_a_symbol_without_any_ticker_is_waiting_then_stale(
    nursery: trio.Nursery, threaded_clock: trio.testing.MockClock, prefix: str
) -> None:
    binance = await start_fake(nursery, FakeBinance())  # sends nothing until pushed
    config = make_config(
        prefix,
        {"binance": binance},
        {"binance": ["BTC/USDT", "ETH/USDT"]},
        health={"stale_after": 60},
        feed={"silence_timeout": 3600},
    )
    daemon = await start_daemon(nursery, config)
    await binance.wait_until(lambda: binance.is_subscribed("ETH/USDT"))
    await binance.push("BTC/USDT", bid=1.0, ask=2.0)
    with trio.fail_after(3600):
        while daemon.health().exchanges["binance"].waiting != ("ETH/USDT",):
            await daemon.health_changed()
    snapshot = daemon.health().exchanges["binance"]
    assert snapshot.stale == () and snapshot.state == "connected"
    await wait_stale(daemon, "binance", ["BTC/USDT", "ETH/USDT"])  # past stale_after: stale, not waiting
    assert daemon.health().exchanges["binance"].waiting == ()


async def test_status_counts_waiting_symbols_apart_from_fresh_ones(
    nursery: trio.Nursery, redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    binance = await start_fake(nursery, FakeBinance())
    daemon = await start_daemon(
        nursery, make_config(prefix, {"binance": binance}, {"binance": ["BTC/USDT", "ETH/USDT"]})
    )
    await binance.wait_until(lambda: binance.is_subscribed("BTC/USDT") and binance.is_subscribed("ETH/USDT"))
    await binance.push("BTC/USDT", bid=1.0, ask=2.0)
    # The first ticker is a state change: written at once, not at the next 30 s interval.
    with trio.fail_after(5):
        await wait_records(
            daemon,
            redis_client,
            prefix,
            lambda _, ex: "binance" in ex and ex["binance"].waiting == ("ETH/USDT",),
        )
    code, out = await status(tmp_path, prefix)
    assert code == 0, out  # waiting is not a problem until stale_after
    row = next(line for line in out.splitlines() if line.startswith("binance"))
    # SYMBOLS FRESH WAITING STALE REJECTED
    assert row.split()[3:8] == ["2", "1", "1", "0", "0"]


def test_a_record_of_an_older_tickerd_without_waiting_still_reads() -> None:
    old = {
        **{"exchange": "kraken", "time": 1.0, "state": "connected", "connections": 1, "reconnects": 0},
        **{"last_error": None, "last_error_ts": None, "rejected": {}, "stale": [], "symbols": ["BTC/USD"]},
        **{"feeds": 1, "frames": 5, "junk": 0, "last_tick": {"BTC/USD": 1.0}},
    }
    record = snapshots.loads(orjson.dumps(old), ExchangeRecord, "key")
    assert record.waiting == () and record.symbols == ("BTC/USD",)


async def test_an_exchange_that_never_connected_is_down(
    nursery: trio.Nursery, redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.refuse = True  # from the start: never a connection, never a ticker
    config = make_config(
        prefix,
        {"kraken": kraken},
        {"kraken": ["BTC/USD", "ETH/USD", "SOL/USD"]},
        feed={"reconnect_delay": 60},
    )
    daemon = await start_daemon(nursery, config)
    await wait_records(daemon, redis_client, prefix, lambda _, ex: "kraken" in ex and ex["kraken"].reconnects)
    code, out = await status(tmp_path, prefix)
    assert code == 2, out
    row = next(line for line in out.splitlines() if line.startswith("kraken"))
    # STATE CONNS SYMBOLS FRESH WAITING: not "reconnecting ... 3 fresh"
    assert row.split()[1:6] == ["down", "0", "3", "0", "3"]
    assert out.splitlines()[-1] == "status: down (kraken: down)"


async def test_the_heartbeat_counts_the_tickers_written(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())  # a snapshot ticker per symbol on subscribe
    symbols = ["BTC/USD", "ETH/USD", "SOL/USD"]
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": symbols}))
    # Within seconds, not the 30 s interval: the first tickers are a state change (not waiting).
    with trio.fail_after(5):
        heartbeat, _ = await wait_records(
            daemon, redis_client, prefix, lambda hb, _: hb is not None and hb.writer.written >= 3
        )
    assert heartbeat is not None and heartbeat.writer.batches >= 1

    for i in range(20):
        await kraken.push("BTC/USD", last=100.0 + i)
    with trio.fail_after(5):  # every ticker written, or replaced by a newer one before
        while (counters := daemon.health().writer).written + counters.coalesced < 23:
            await daemon.writer.flushed()
    daemon.add("kraken", "XRP/USD")  # a state change carries the counters along
    with trio.fail_after(5):
        heartbeat, _ = await wait_records(
            daemon,
            redis_client,
            prefix,
            lambda hb, ex: hb is not None and "kraken" in ex and "XRP/USD" in ex["kraken"].symbols,
        )
    assert heartbeat is not None
    assert heartbeat.writer.written >= counters.written > 3
    assert heartbeat.writer.coalesced >= counters.coalesced


async def test_the_stopped_heartbeat_counts_the_final_batch(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    async with trio.open_nursery() as inner:
        daemon = await start_daemon(inner, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
        await wait_records(daemon, redis_client, prefix, lambda _, ex: "kraken" in ex)
        for i in range(10):  # queued in the same step as the shutdown: the final flush writes them
            daemon.writer.sink.send_nowait([Ticker("kraken", f"Q{i}/USD", last=1.0)])
        inner.cancel_scope.cancel()
    heartbeat, _ = RedisLayout(prefix).read_health(redis_client)
    assert heartbeat is not None and heartbeat.state == "stopped"
    assert daemon.writer.written >= 10 and heartbeat.writer.written == daemon.writer.written
