"""Faults at shutdown: ``shutdown_grace`` is a hard bound, and the exit status tells whether
every latest value reached Redis (real processes: a private redis-server, ``python -m tickerd``).
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import redis
import trio

from tests.conftest import Updates, start_fake
from tests.processes import RedisServer, daemon_process
from tickerd.layout import RedisLayout
from tickerd.testing import FakeKraken

GRACE = 1.0
SYMBOLS = [f"S{i:02d}/USD" for i in range(20)]
LAYOUT = RedisLayout()


def config(tmp_path: Path, kraken: FakeKraken, server: RedisServer) -> Path:
    """All :data:`SYMBOLS` on ``kraken``; default lease and socket timeouts (the slow ones)."""
    path = tmp_path / "tickerd.toml"
    path.write_text(
        f'shutdown_grace = {GRACE}\n[redis]\nurl = "{server.url}"\n'
        f'[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = {SYMBOLS!r}\n'.replace("'", '"')
    )
    return path


async def push_rounds(kraken: FakeKraken, rounds: int) -> dict[str, float]:
    """Push ``rounds`` prices to every symbol; the last price of each."""
    last: dict[str, float] = {}
    for n in range(rounds):
        for i, symbol in enumerate(SYMBOLS):
            last[symbol] = 1000.0 * (n + 1) + i
            await kraken.push(symbol, last=last[symbol])
    return last


def stored_prices(client: redis.Redis) -> dict[str, float]:
    return {symbol: record["last"] for symbol, record in LAYOUT.read_tickers(client, "kraken").items()}


async def until_all_published(updates: Updates) -> None:
    """Every symbol's subscription snapshot was written (and published)."""
    seen: set[str] = set()
    while len(seen) < len(SYMBOLS):
        record = await updates.wait_for(lambda r: r["symbol"] not in seen)
        seen.add(record["symbol"])


@pytest.mark.timeout(60)
async def test_a_hung_redis_cannot_stretch_the_shutdown_and_the_exit_says_what_was_lost(
    nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    client = redis.Redis.from_url(redis_server.url)
    updates = Updates(client, "")
    async with daemon_process(["--config", str(config(tmp_path, kraken, redis_server))]) as daemon:
        await until_all_published(updates)
        redis_server.pause()
        await push_rounds(kraken, 1)
        # The write of those values hangs until redis-py's socket timeout: once it says so, the
        # daemon has long held them (they were pushed before the hung write began).
        await daemon.wait_log("Redis unreachable")
        daemon.signal(signal.SIGTERM)
        started = time.monotonic()
        status = await daemon.wait(within=GRACE + 10)
        took = time.monotonic() - started
    redis_server.resume()
    updates.close()
    client.close()
    assert status == 1, daemon.output
    assert took < GRACE + 2, f"{took:.1f} s for a grace of {GRACE:g} s\n{daemon.output}"
    unwritten = re.search(r"shutdown: (\d+) latest values not written", daemon.output)
    assert unwritten is not None, daemon.output
    assert int(unwritten[1]) == len(SYMBOLS)


@pytest.mark.timeout(60)
async def test_sigterm_under_load_writes_every_latest_value_and_exits_0(
    nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    client = redis.Redis.from_url(redis_server.url)
    updates = Updates(client, "")
    async with daemon_process(["--config", str(config(tmp_path, kraken, redis_server))]) as daemon:
        await until_all_published(updates)
        # Hold the writer back so that SIGTERM finds a backlog: Redis hangs while the fake
        # pushes, and answers again the moment the daemon is told to stop.
        redis_server.pause()
        last = await push_rounds(kraken, 50)
        await daemon.wait_log("Redis unreachable")
        redis_server.resume()
        daemon.signal(signal.SIGTERM)
        status = await daemon.wait(within=GRACE + 10)
    assert status == 0, daemon.output
    assert "not written" not in daemon.output
    assert stored_prices(client) == last
    updates.close()
    client.close()
