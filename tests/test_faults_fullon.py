"""fullon process records survive a Redis restarted empty (real processes: a redis-server of the
test's own, ``python -m tickerd``)."""

from __future__ import annotations

from pathlib import Path

import redis
import trio

from tests.conftest import start_fake
from tests.processes import RedisServer, daemon_process, until_redis
from tests.test_fullon_process import components, record
from tickerd.layout import RedisLayout
from tickerd.testing import FakeKraken


async def test_the_process_records_are_back_right_after_redis_restarts_empty(
    nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    # A long interval: the records must come back with the reconnect, not with the next write.
    path = tmp_path / "tickerd.toml"
    path.write_text(
        f'shutdown_grace = 1.0\n[health]\ninterval = 30.0\n[redis]\nurl = "{redis_server.url}"\n'
        f'[fullon]\nprocess_records = "exchange"\n'
        f'[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = ["BTC/USD"]\n'
    )
    client = redis.Redis(port=redis_server.port)
    layout = RedisLayout()
    async with daemon_process(["--config", str(path)]) as daemon:
        await until_redis(client, lambda: components(client, layout).keys() == {"ticker_daemon", "kraken"})
        ids = components(client, layout)

        redis_server.restart()
        await kraken.push("BTC/USD", last=2.0)  # the writer's next round trip reconnects
        await until_redis(client, lambda: components(client, layout) == ids, within=3)
        # The same processes, each with its record and active entry again.
        for component, process_id in ids.items():
            assert record(client, layout, process_id)["component"] == component
        await until_redis(
            client, lambda: all(client.hexists(layout.process_active("tick"), i) for i in ids.values())
        )
        assert daemon.process.returncode is None
    client.close()
