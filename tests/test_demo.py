"""``tickerd demo`` and ``tickerd fake`` as a person runs them: their own prefix, their fakes' URLs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import redis
import trio

from tests.conftest import REDIS_URL, Updates, read_until, run_cli, start_daemon
from tests.processes import RedisServer, free_port
from tests.test_faults_lifecycle import port_in_use
from tickerd import exchanges
from tickerd.commands.demo import PREFIX
from tickerd.config import structure
from tickerd.layout import RedisLayout


async def test_demo_runs_under_its_own_prefix_whatever_redis_prefix_says(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    real = RedisLayout("trial:")
    real_keys = {real.tickers("kraken"): "kraken data", real.tickers("binance"): "binance data"}
    for key, value in real_keys.items():
        client.hset(key, "BTC/USD", value)
    env = {"REDIS_URL": redis_server.url, "REDIS_PREFIX": "trial:"}
    result = await trio.to_thread.run_sync(
        lambda: run_cli("demo", "--exchange", "okx", "--duration", "2", env=env)
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^tickerd demo: fake okx at ws://127\.0\.0\.1:\d+/ws/v5/public$", result.stderr, re.M)
    assert re.search(r"^tickerd demo: status page at http://127\.0\.0\.1:\d+/$", result.stderr, re.M)
    rows = [line.split() for line in result.stdout.strip().split("\n\n")[-1].splitlines()[2:-1]]
    assert [row[:2] for row in rows] == sorted(["okx", s] for s in exchanges.get("okx").sample_symbols)
    for key, value in real_keys.items():  # the real data is untouched
        assert client.hget(key, "BTC/USD") == value.encode()
    assert list(client.scan_iter(RedisLayout(PREFIX).tickers_pattern())) == []  # its own went
    assert client.exists(RedisLayout(PREFIX).heartbeat())  # it ran there (a stopped heartbeat)
    client.close()


async def test_fake_serves_one_lively_exchange_at_the_url_it_prints(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tickerd", "fake", "kraken", "--port", str(port)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    url = f"ws://127.0.0.1:{port}/v2"
    try:
        with trio.fail_after(20):
            await read_until(process.stdout, f"{url}\n".encode(), bytearray())
            # A user's own config: a sample symbol and one of its own, both get lively prices.
            exchanges = {"kraken": {"url": url, "symbols": ["BTC/USD", "DOGE/USD"]}}
            await start_daemon(
                nursery, structure({"redis": {"url": REDIS_URL, "prefix": prefix}, "exchanges": exchanges})
            )
            first = await updates.wait_for(lambda r: r["symbol"] == "BTC/USD")
            await updates.wait_for(lambda r: r["symbol"] == "BTC/USD" and r["last"] != first["last"])
            await updates.wait_for(lambda r: r["symbol"] == "DOGE/USD")
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    finally:
        process.kill()
    assert 60000 < first["last"] < 68000  # it starts near the real market (tickerd.testing.market)


def test_fake_on_a_port_in_use_exits_2() -> None:
    with port_in_use() as port:
        result = run_cli("fake", "okx", "--port", str(port))
    assert result.returncode == 2 and f"tickerd fake: --port {port}: " in result.stderr
