"""fullon process records, as fullon_cache's ``ProcessCache`` reads them, from a running daemon.

fullon_cache cannot be installed here, so the contract is issue 11's text, spelled out below
(field names, status values, the id's form, the expiry) rather than taken from tickerd's own
classes: a renamed field fails here, not on a fullon dashboard.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import trio
import trio.testing

import tickerd
from tests.conftest import Database, make_config, start_daemon, start_fake
from tests.processes import RedisServer, daemon_process, free_port, until_redis
from tests.test_fullon import fullon_db
from tests.test_monitor import spy_records
from tickerd.config import ConfigError, load
from tickerd.layout import RedisLayout
from tickerd.testing import FakeBinance, FakeKraken

FIELDS = {
    "process_id",
    "process_type",
    "component",
    "params",
    "status",
    "message",
    "created_at",
    "updated_at",
    "heartbeat",
}
STATUSES = {"starting", "running", "processing", "idle", "error", "stopped"}
DAY = 86_400


def fields(client: redis.Redis, key: str) -> dict[str, str]:
    """A hash's fields and values as text (the client returns bytes)."""
    raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


def components(client: redis.Redis, layout: RedisLayout) -> dict[str, str]:
    """``process:components``: component → process id."""
    return fields(client, layout.process_components())


def active(client: redis.Redis, layout: RedisLayout) -> dict[str, str]:
    """``process:active:tick``: process id → ISO time of its last update."""
    return fields(client, layout.process_active("tick"))


def utc(text: str) -> datetime:
    """An ISO 8601 time that says it is UTC (as fullon's ``datetime.now(timezone.utc)`` does)."""
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0), text
    return value


def record(client: redis.Redis, layout: RedisLayout, process_id: str) -> dict[str, Any]:
    """``process:data:{process_id}``, checked against the whole contract."""
    key = layout.process_data(process_id)
    raw = client.get(key)
    assert raw is not None, key
    data: dict[str, Any] = orjson.loads(raw)
    assert set(data) == FIELDS, data
    component = data["component"]
    assert isinstance(component, str) and data["process_type"] == "tick"
    assert process_id.startswith(f"tick:{component}:")
    epoch = float(process_id.removeprefix(f"tick:{component}:"))
    assert isinstance(data["params"], dict) and isinstance(data["message"], str)
    assert data["status"] in STATUSES
    created, updated, heartbeat = (utc(data[name]) for name in ("created_at", "updated_at", "heartbeat"))
    assert abs(created.timestamp() - epoch) < 1e-3 and created <= heartbeat <= updated
    assert DAY - 60 < client.ttl(key) <= DAY
    return data


async def until_written(daemon: tickerd.TickerDaemon, check: Callable[[], object]) -> None:
    """Return once ``check()`` holds, re-checked after every write to Redis (a far limit: the
    mock clock races ahead while a write runs in the writer's thread)."""
    with trio.fail_after(3600):
        while not check():
            await daemon.writer.flushed()


def statuses(client: redis.Redis, layout: RedisLayout) -> dict[str, str]:
    """Component → status of every process in the components hash (with its record checked)."""
    return {c: record(client, layout, pid)["status"] for c, pid in components(client, layout).items()}


async def test_fullon_mode_registers_the_daemon_and_each_exchange(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, db: Database
) -> None:
    await fullon_db(db)
    await db.execute("UPDATE exchanges SET active = true WHERE name = 'binance old'")
    kraken = await start_fake(nursery, FakeKraken())
    binance = await start_fake(nursery, FakeBinance())
    config = make_config(
        prefix, {"kraken": kraken, "binance": binance}, {}, database={"url": db.url, "mode": "fullon"}
    )
    assert config.process_records == "exchange"  # on by default in fullon mode
    daemon = await start_daemon(nursery, config)
    layout = RedisLayout(prefix)
    wanted = {"ticker_daemon": "running", "kraken": "running", "binance": "running"}
    await until_written(daemon, lambda: statuses(redis_client, layout) == wanted)

    ids = components(redis_client, layout)
    stamps = active(redis_client, layout)
    assert set(stamps) >= set(ids.values())
    for component, process_id in ids.items():
        data = record(redis_client, layout, process_id)
        assert data["component"] == component
        assert utc(stamps[process_id]) >= utc(data["created_at"])
    assert record(redis_client, layout, ids["kraken"])["params"] == {
        "symbols": 2,  # BTC/USD and ETH/USD, from fullon's symbols table
        "state": "connected",
        "last_error": None,
    }
    params = record(redis_client, layout, ids["ticker_daemon"])["params"]
    assert params["exchanges"] == ["binance", "kraken"] and params["symbols"] == 3


@pytest.mark.parametrize(("per", "component"), [("exchange", "kraken"), ("symbol", "kraken:BTC/USD")])
async def test_records_are_rewritten_once_per_health_interval(
    per: str,
    component: str,
    nursery: trio.Nursery,
    clock: trio.testing.MockClock,
    redis_client: redis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kraken = await start_fake(nursery, FakeKraken(heartbeat_interval=10.0))
    config = make_config(
        prefix,
        {"kraken": kraken},
        {"kraken": ["BTC/USD", "ETH/USD"]},
        health={"stale_after": 7200},
        fullon={"process_records": per},
    )
    daemon = await start_daemon(nursery, config)
    layout = RedisLayout(prefix)
    await until_written(daemon, lambda: statuses(redis_client, layout).get(component) == "running")
    ids = components(redis_client, layout)
    assert len(ids) == (2 if per == "exchange" else 3)
    before = {c: record(redis_client, layout, pid) for c, pid in ids.items()}
    stamps = active(redis_client, layout)

    puts = spy_records(daemon, monkeypatch)
    await trio.sleep(3600)  # virtual: an hour of a healthy daemon, 120 intervals of 30 s
    writes = Counter(key for _, key, _ in puts)
    for process_id in ids.values():
        assert 119 <= writes[layout.process_data(process_id)] <= 121

    await daemon.writer.flushed()
    assert components(redis_client, layout) == ids  # the same processes, kept fresh
    for component, process_id in ids.items():
        now = record(redis_client, layout, process_id)
        old = before[component]
        assert (now["created_at"], now["status"]) == (old["created_at"], "running")
        assert utc(now["updated_at"]) > utc(old["updated_at"])
        assert utc(now["heartbeat"]) > utc(old["heartbeat"])
        assert utc(active(redis_client, layout)[process_id]) > utc(stamps[process_id])


async def test_an_exchange_that_cannot_connect_is_an_error_with_the_reason(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    port = free_port()  # nothing listens there
    config = make_config(
        prefix,
        {},
        {},
        exchanges={"kraken": {"url": f"ws://127.0.0.1:{port}", "symbols": ["BTC/USD"]}},
        fullon={"process_records": "exchange"},
    )
    daemon = await start_daemon(nursery, config)
    layout = RedisLayout(prefix)
    await until_written(daemon, lambda: statuses(redis_client, layout).get("kraken") == "error")
    data = record(redis_client, layout, components(redis_client, layout)["kraken"])
    assert data["message"].startswith("down: ") and str(port) in data["message"]
    assert data["params"]["state"] == "down" and data["params"]["last_error"] in data["message"]
    # Nothing is collected at all: the daemon's record says so too.
    assert statuses(redis_client, layout)["ticker_daemon"] == "error"


async def test_symbol_mode_writes_one_record_per_symbol_and_stops_a_removed_one(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.reject("FOO/USD")
    symbols = ["BTC/USD", "ETH/USD", "FOO/USD"]
    config = make_config(
        prefix, {"kraken": kraken}, {"kraken": symbols}, fullon={"process_records": "symbol"}
    )
    daemon = await start_daemon(nursery, config)
    layout = RedisLayout(prefix)
    wanted = {
        "ticker_daemon": "running",
        "kraken:BTC/USD": "running",  # the fake's subscription snapshot is its first ticker
        "kraken:ETH/USD": "running",
        "kraken:FOO/USD": "error",
    }
    await until_written(daemon, lambda: statuses(redis_client, layout) == wanted)
    ids = components(redis_client, layout)
    refused = record(redis_client, layout, ids["kraken:FOO/USD"])
    assert refused["message"] == "rejected: Currency pair not supported FOO/USD"
    btc = record(redis_client, layout, ids["kraken:BTC/USD"])
    assert btc["params"]["exchange"] == "kraken" and btc["params"]["symbol"] == "BTC/USD"
    utc(btc["params"]["last_tick"])

    daemon.remove("kraken", "ETH/USD")
    await until_written(daemon, lambda: "kraken:ETH/USD" not in components(redis_client, layout))
    gone = record(redis_client, layout, ids["kraken:ETH/USD"])
    assert (gone["status"], gone["message"]) == ("stopped", "unsubscribed")
    assert ids["kraken:ETH/USD"] not in active(redis_client, layout)
    assert components(redis_client, layout).keys() == wanted.keys() - {"kraken:ETH/USD"}


async def test_off_writes_no_process_record_even_in_fullon_mode(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(
        prefix,
        {"kraken": kraken},
        {"kraken": ["BTC/USD"]},
        database={"mode": "fullon"},
        fullon={"process_records": "off"},
    )
    daemon = await start_daemon(nursery, config)
    layout = RedisLayout(prefix)
    await until_written(daemon, lambda: layout.read_health(redis_client)[1].get("kraken"))
    assert not redis_client.exists(layout.process_components(), layout.process_active("tick"))
    assert not list(redis_client.scan_iter(layout.process_data("*")))


def test_the_setting_defaults_by_mode_and_is_strict() -> None:
    assert load(environ={}).process_records == "off"  # nobody reads them outside fullon
    assert load(environ={"DATABASE_MODE": "fullon"}).process_records == "exchange"
    environ = {"DATABASE_MODE": "fullon", "TICKER_PROCESS_RECORDS": "symbol"}
    assert load(environ=environ).process_records == "symbol"
    with pytest.raises(
        ConfigError, match=r"^TICKER_PROCESS_RECORDS \(fullon.process_records\): expected one of"
    ):
        load(environ={"TICKER_PROCESS_RECORDS": "each"})


@pytest.mark.timeout(60)
async def test_sigterm_stops_every_process_of_ours_and_no_other(
    nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    client = redis.Redis.from_url(redis_server.url)
    layout = RedisLayout()  # the empty prefix fullon's readers expect
    # Other fullon programs' entries in the same hashes, written before tickerd starts.
    theirs = {"bot_1": "bot:bot_1:1700000000.5", "kraken:BTC/USD": "tick:kraken:BTC/USD:1700000000.5"}
    for component, process_id in theirs.items():
        client.hset(layout.process_components(), component, process_id)
    client.hset(
        layout.process_active("tick"), "tick:kraken:BTC/USD:1700000000.5", "2023-11-14T22:13:20+00:00"
    )
    path = tmp_path / "tickerd.toml"
    path.write_text(
        f'shutdown_grace = 2.0\n[redis]\nurl = "{redis_server.url}"\n[fullon]\nprocess_records = "exchange"\n'
        f'[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = ["BTC/USD"]\n'
    )
    async with daemon_process(["--config", str(path)]) as daemon:
        await until_redis(client, lambda: {"ticker_daemon", "kraken"} <= components(client, layout).keys())
        ours = {c: pid for c, pid in components(client, layout).items() if c not in theirs}
        # Meanwhile a program registers the component "kraken" anew: its entry is its own now.
        client.hset(layout.process_components(), "kraken", "tick:kraken:1900000000.5")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0, daemon.output

    assert ours.keys() == {"ticker_daemon", "kraken"}
    for process_id in ours.values():
        data = record(client, layout, process_id)
        assert (data["status"], data["message"]) == ("stopped", "tickerd stopped")
    assert active(client, layout) == {"tick:kraken:BTC/USD:1700000000.5": "2023-11-14T22:13:20+00:00"}
    assert components(client, layout) == {**theirs, "kraken": "tick:kraken:1900000000.5"}
    client.close()
