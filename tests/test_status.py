"""``tickerd status`` against a real daemon's records in real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis
import trio

from tests.conftest import REDIS_URL, make_config, run_cli, start_daemon, start_fake
from tests.test_monitor import wait_records
from tickerd import snapshots
from tickerd.commands.status import read_report
from tickerd.layout import RedisLayout
from tickerd.snapshots import Heartbeat, SourceSnapshot, WriterCounters
from tickerd.testing import FakeKraken


def status_config(tmp_path: Path, prefix: str, redis_url: str = REDIS_URL) -> str:
    path = tmp_path / "status.toml"
    path.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n')
    return str(path)


async def status(tmp_path: Path, prefix: str, *args: str) -> tuple[int, str]:
    config = status_config(tmp_path, prefix)
    result = await trio.to_thread.run_sync(lambda: run_cli("status", "--config", config, *args))
    return result.returncode, result.stdout


async def test_not_running_is_down_with_exit_2(tmp_path: Path, prefix: str) -> None:
    code, out = await status(tmp_path, prefix)
    assert code == 2
    assert "tickerd is not running: no heartbeat in Redis at redis://127.0.0.1:6379/0" in out


def test_unreachable_redis_is_down(tmp_path: Path, prefix: str) -> None:
    config = status_config(tmp_path, prefix, redis_url="redis://127.0.0.1:1/0")
    result = run_cli("status", "--config", config)
    assert result.returncode == 2 and "Redis at redis://127.0.0.1:1/0 is not reachable" in result.stdout


async def test_healthy_daemon_exit_0_table_and_json(
    nursery: trio.Nursery, redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    daemon = await start_daemon(
        nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "ETH/USD"]})
    )
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD") and kraken.is_subscribed("ETH/USD"))
    await kraken.push("BTC/USD", last=5.0)
    await kraken.push("ETH/USD", last=6.0)
    await wait_records(
        daemon,
        redis_client,
        prefix,
        lambda _, ex: "kraken" in ex and ex["kraken"].connections and len(ex["kraken"].last_tick) == 2,
    )

    code, out = await status(tmp_path, prefix)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("tickerd 0.1.0 running, pid ")
    header = next(line for line in lines if line.startswith("EXCHANGE"))
    assert header.split() == [
        *("EXCHANGE", "STATE", "CONNS", "SYMBOLS", "FRESH", "WAITING", "STALE", "REJECTED"),
        *("RECONNECTS", "LAST", "ERROR"),
    ]
    row = next(line for line in lines if line.startswith("kraken"))
    assert row.split() == ["kraken", "connected", "1", "2", "2", "0", "0", "0", "0", "-"]
    assert lines[-1] == "status: healthy"

    code, out = await status(tmp_path, prefix, "--json")
    report = orjson.loads(out)
    assert code == 0 and report["level"] == "healthy" and report["exit_status"] == 0
    assert report["exchanges"]["kraken"]["symbols"] == ["BTC/USD", "ETH/USD"]
    assert 0 <= report["heartbeat_age"] < 30


async def test_rejected_symbol_is_degraded_exit_1(
    nursery: trio.Nursery, redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.reject("FOO/USD")
    daemon = await start_daemon(
        nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD", "FOO/USD"]})
    )
    await wait_records(daemon, redis_client, prefix, lambda _, ex: "kraken" in ex and ex["kraken"].rejected)
    code, out = await status(tmp_path, prefix)
    assert code == 1, out
    assert "  rejected  kraken FOO/USD: Currency pair not supported FOO/USD" in out
    assert out.splitlines()[-1] == "status: degraded (kraken: 1 rejected symbol(s))"


async def test_stopped_daemon_is_down(
    nursery: trio.Nursery, redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    async with trio.open_nursery() as inner:
        daemon = await start_daemon(inner, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
        await wait_records(daemon, redis_client, prefix, lambda _, ex: "kraken" in ex)
        inner.cancel_scope.cancel()
    code, out = await status(tmp_path, prefix)
    assert code == 2 and "status: down (tickerd stopped at " in out


def store_heartbeat(client: redis.Redis, prefix: str, *, age: float, uptime: float) -> None:
    """A running daemon's heartbeat written ``age`` seconds ago, started ``uptime`` ago (no
    exchanges, 30 s interval), as if another machine's daemon wrote it."""
    now = time.time()
    heartbeat = Heartbeat(
        state="running",
        time=now - age,
        started=now - uptime,
        pid=1,
        host="elsewhere",
        version="0.1.0",
        interval=30.0,
        stale_after=60.0,
        exchanges=(),
        writer=WriterCounters(written=0, batches=0, coalesced=0),
        source=SourceSnapshot(kind="toml"),
    )
    client.set(RedisLayout(prefix).heartbeat(), snapshots.dumps(heartbeat), ex=30)


def test_an_old_heartbeat_means_down(redis_client: redis.Redis, prefix: str) -> None:
    """A daemon that hangs (or died less than a TTL ago) is not taken for alive."""
    store_heartbeat(redis_client, prefix, age=75, uptime=3600)
    report = read_report(redis_client, REDIS_URL, prefix)
    assert report.level == 2 and report.reasons == ["heartbeat is 75 s old: tickerd is hung or gone"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "is not JSON"),
        (b'{"state": "running", "time": 1.0}', "is not a Heartbeat: required field missing @ $.started"),
    ],
)
def test_an_unreadable_heartbeat_is_reported_not_a_crash(
    redis_client: redis.Redis, prefix: str, raw: bytes, problem: str
) -> None:
    """A heartbeat of an incompatible version (or another program's value) makes status say so."""
    key = RedisLayout(prefix).heartbeat()
    redis_client.set(key, raw, ex=30)
    report = read_report(redis_client, REDIS_URL, prefix)
    [reason] = report.reasons
    assert report.level == 2 and f"{key} {problem}" in reason
