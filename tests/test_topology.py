"""Redis as users run it: ``redis+cluster://`` and ``redis+sentinel://`` URLs, read through
redis-py's own cluster and sentinel clients (:mod:`tickerd.topology`).

The cluster (three masters with a replica each) and the Sentinel set (master, replica, one
Sentinel) are the tests' own redis-servers on free ports, started once for the module.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import pytest
import redis
import redis.cluster
import trio
from redis.exceptions import NoScriptError

from tests.conftest import (
    cli_config,
    make_config,
    run_cli,
    start_daemon,
    start_fake,
    until,
    until_redis_up,
)
from tests.processes import ClusterServers, RedisServer, SentinelServers
from tickerd import topology
from tickerd.client import AsyncTickerClient, TickerClient
from tickerd.commands.status import read_report
from tickerd.layout import RedisLayout
from tickerd.lease import LeaseHeld, PrefixLease
from tickerd.model import Removal, Ticker
from tickerd.testing import FakeKraken
from tickerd.writer import RedisWriter
from tickerd.writer.cluster import ClusterConnection
from tickerd.writer.connection import RedisConnection


@pytest.fixture
def own_prefix() -> str:
    """A prefix of the test's own (the servers are the module's, shared by its tests)."""
    return f"t{uuid.uuid4().hex[:8]}:"


def record(exchange: str, symbol: str, last: float) -> bytes:
    """A stored ticker as the extended layout writes it."""
    ticker = Ticker(exchange, symbol, last, last - 1, last + 1, received_ts=1.0e9)
    return RedisLayout().encode_ticker(ticker)


def spread(client: redis.cluster.RedisCluster, layout: RedisLayout) -> list[str]:
    """Three exchange names whose ticker hashes are on the three masters, one on each."""
    found: dict[str, str] = {}
    for index in range(1000):
        name = f"venue{index}"
        node = client.get_node_from_key(layout.tickers(name))  # type: ignore[no-untyped-call]
        found.setdefault(node.name, name)
        if len(found) == 3:
            return sorted(found.values())
    raise AssertionError("no three names on three masters")


def test_the_url_forms() -> None:
    cluster = topology.parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert (cluster.kind, cluster.nodes) == (
        "cluster",
        (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)),
    )
    assert cluster.options == {"password": "pw"}
    watched = topology.parse(
        "rediss+sentinel://app:pw@s1,s2:26380/prices/2?sentinel_password=spw&socket_timeout=3"
    )
    assert (watched.kind, watched.service, watched.nodes) == (
        "sentinel",
        "prices",
        (("s1", 26379), ("s2", 26380)),
    )
    assert watched.options == {
        "username": "app",
        "password": "pw",
        "db": 2,
        "socket_timeout": 3.0,
        "ssl": True,
    }
    assert watched.sentinel_options == {"socket_timeout": 3.0, "ssl": True, "password": "spw"}
    assert topology.parse("redis://127.0.0.1:6379/0").kind == "server"
    assert "pw" not in repr(watched) + repr(cluster)  # credentials never reach a log by repr
    for url, problem in [
        ("redis+cluster://h:7000/3", "a cluster has database 0 only"),
        ("redis+sentinel://h:26379", "expected the master's name"),
        ("redis+sentinel://h:26379/m/0/x", "expected the master's name"),
        ("redis+cluster://h:70000", "port '70000' is not 1-65535"),
        ("redis+cluster://:pw@,h", "a node without a host"),
        ("http://h", "unknown scheme 'http'"),
    ]:
        with pytest.raises(ValueError, match=problem):
            topology.parse(url)
    assert topology.describe("redis+sentinel://:secret@s1,s2/prices") == (
        "master 'prices' via 2 Sentinels redis+sentinel://:***@s1,s2/prices"
    )
    assert topology.describe("redis+cluster://n1:7000") == "Cluster redis+cluster://n1:7000 (1 seed node)"


def test_a_cluster_client_is_redis_pys_cluster_client(cluster: ClusterServers) -> None:
    client = topology.client(cluster.url)
    try:
        assert isinstance(client, redis.cluster.RedisCluster)
        assert len(client.get_primaries()) == 3  # type: ignore[no-untyped-call]  # it learnt the nodes the URL does not name
    finally:
        client.close()
    with pytest.raises(redis.ConnectionError, match="no node of the Redis Cluster answers"):
        topology.client("redis+cluster://127.0.0.1:1", socket_connect_timeout=0.5)


async def test_readers_read_through_a_cluster(cluster: ClusterServers, own_prefix: str) -> None:
    """The latest values of exchanges whose hashes are in different slots, the updates published
    on any master, the status report and the asyncio client, all through ``redis+cluster://``."""
    layout = RedisLayout(own_prefix)
    writer = topology.client(cluster.url)
    assert isinstance(writer, redis.cluster.RedisCluster)
    kraken, binance, okx = spread(writer, layout)
    with TickerClient.from_url(cluster.url, prefix=own_prefix) as reader:
        with reader.updates() as updates:  # every exchange's channels, by pattern, on one node
            for exchange, last in ((kraken, 100.0), (binance, 200.0), (okx, 300.0)):
                value = record(exchange, "BTC/USD", last)
                writer.hset(layout.tickers(exchange), "BTC/USD", value)
                writer.publish(layout.updates(exchange, "BTC/USD"), value)
            published = [await trio.to_thread.run_sync(updates.get, 5.0) for _ in range(3)]
        # published on three masters: each reaches the subscriber's node over the cluster bus
        assert sorted((t.exchange, t.last) for t in published if t) == [
            (kraken, 100.0),
            (binance, 200.0),
            (okx, 300.0),
        ]
        with reader.updates(okx, ["BTC/USD"]) as one:  # a channel of its own
            writer.publish(layout.updates(okx, "BTC/USD"), record(okx, "BTC/USD", 301.0))
            ticker = await trio.to_thread.run_sync(one.get, 5.0)
            assert ticker is not None and ticker.last == 301.0
        latest = reader.latest_many([(kraken, "BTC/USD"), (binance, "BTC/USD"), (okx, "ETH/USD")])
        assert {pair: t and t.last for pair, t in latest.items()} == {
            (kraken, "BTC/USD"): 100.0,
            (binance, "BTC/USD"): 200.0,
            (okx, "ETH/USD"): None,
        }
        assert list(reader.all(okx)) == ["BTC/USD"]
    assert {r["exchange"] for r in layout.read_all_tickers(writer)} == {
        kraken,
        binance,
        okx,
    }  # every master scanned

    async def read_async() -> tuple[float | None, float | None]:
        async with AsyncTickerClient.from_url(cluster.url, prefix=own_prefix) as client:
            async with client.updates(kraken) as live:
                writer.publish(layout.updates(kraken, "ETH/USD"), record(kraken, "ETH/USD", 7.0))
                ticker = await live.get(5.0)
            stored = await client.latest(binance, "BTC/USD")
            return (ticker.last if ticker else None), (stored.last if stored else None)

    assert await trio.to_thread.run_sync(asyncio.run, read_async()) == (7.0, 200.0)
    report = read_report(writer, cluster.url, own_prefix)
    assert report.reasons == [
        f"tickerd is not running: no heartbeat in Redis at {cluster.url} (prefix {own_prefix!r})"
    ]
    layout.delete_tickers(writer, [kraken, binance, okx])  # one DEL per slot
    assert not layout.read_all_tickers(writer)
    writer.close()


async def test_the_prefix_lease_works_on_a_cluster(cluster: ClusterServers, own_prefix: str) -> None:
    layout = RedisLayout(own_prefix)
    first = PrefixLease(cluster.url, layout, 5.0)
    second = PrefixLease(cluster.url, layout, 5.0)
    await first.acquire()
    with pytest.raises(LeaseHeld):
        await second.acquire()
    await first.release()
    await second.acquire()
    await second.release()


def stored_last(client: topology.Client, layout: RedisLayout, symbol: str) -> float | None:
    """The stored Kraken ticker's ``last`` (``None`` while none is stored, or Redis does not
    answer: a master failing over)."""
    try:
        found = layout.read_ticker(client, "kraken", symbol)
    except topology.ERRORS:
        return None
    return None if found is None else found["last"]


async def eventually(check: Callable[[], object], within: float = 20) -> None:
    """Return once ``check()`` (blocking: run in a worker thread) holds: another process's state,
    with nothing to wait on but its answers."""
    with trio.fail_after(within):
        while not await trio.to_thread.run_sync(check):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def until_stored(client: topology.Client, layout: RedisLayout, values: dict[str, float]) -> None:
    """Return once every Kraken symbol of ``values`` holds its value in Redis."""
    await eventually(lambda: [stored_last(client, layout, s) for s in values] == list(values.values()))


def replica_of(servers: ClusterServers, client: redis.cluster.RedisCluster, key: str) -> tuple[int, int]:
    """The ports of the master that holds ``key`` and of its replica (whose ``ROLE`` names it)."""
    master: redis.cluster.ClusterNode = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    for node in servers.nodes:
        if node.process is not None:
            with redis.Redis(port=node.port) as server:
                role = server.role()
            if role[0] == b"slave" and int(role[2]) == master.port:
                return master.port, node.port
    raise AssertionError(f"no replica of {master.name}")


async def outages(writer: RedisWriter, seen: list[bool]) -> None:
    """Record each change of ``writer.redis_up`` into ``seen`` (run as a task)."""
    while True:
        await writer.redis_state_changed()
        seen.append(writer.redis_up)


async def test_the_daemon_runs_on_a_cluster_and_loses_nothing_latest_in_failovers(
    cluster: ClusterServers, own_prefix: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The daemon writes through ``redis+cluster://``; ``status`` and the pub/sub reader see it.
    ``CLUSTER FAILOVER`` of the master holding ``tickers:kraken`` loses no latest value, and
    neither does that master's death (``kill -9``): its slots take writes only once its replica
    took over, so the writer holds the batch meanwhile and writes it then."""
    kraken = await start_fake(nursery, FakeKraken())
    symbols = ["BTC/USD", "ETH/USD"]
    config = make_config(own_prefix, {"kraken": kraken}, {"kraken": symbols}, redis={"url": cluster.url})
    layout = config.layout
    reader = topology.client(cluster.url)
    assert isinstance(reader, redis.cluster.RedisCluster)
    daemon = await start_daemon(nursery, config)
    await until(kraken, lambda: all(kraken.is_subscribed(s) for s in symbols))

    async def push(last: float) -> None:
        for symbol in symbols:
            await kraken.push(symbol, last=last)

    with TickerClient.from_url(cluster.url, prefix=own_prefix) as client, client.updates("kraken") as updates:
        await push(1.0)
        with trio.fail_after(10):  # after the fake's own first values
            while (ticker := await trio.to_thread.run_sync(updates.get, 10.0)) is None or ticker.last != 1.0:
                pass
    await until_stored(reader, layout, dict.fromkeys(symbols, 1.0))
    await eventually(lambda: read_report(reader, cluster.url, own_prefix).exchanges)  # the monitor's pace
    path = cli_config(tmp_path, kraken.url, own_prefix, redis_url=cluster.url)
    status = await trio.to_thread.run_sync(partial(run_cli, "status", "--json", "--config", str(path)))
    assert status.returncode in (0, 1), status.stderr  # running (degraded at most: a fake feed)
    assert "kraken" in orjson.loads(status.stdout)["exchanges"]

    # A coordinated failover while the feed goes on: the old master answers MOVED, redis-py's
    # pipeline follows it.
    old_master, replica = replica_of(cluster, reader, layout.tickers("kraken"))
    promoted = redis.Redis(port=replica)
    promoted.cluster("FAILOVER")
    last = 1.0
    with trio.fail_after(20):
        while promoted.role()[0] != b"master":
            last += 1
            await push(last)
            await trio.sleep(0.02)
    await push(last := last + 1)
    await until_stored(promoted, layout, dict.fromkeys(symbols, last))
    promoted.close()

    # The new master dies: writes to its slots fail until the old one (its replica now) takes
    # over (cluster-node-timeout 2 s); the value pushed meanwhile is held and written then.
    seen: list[bool] = []
    nursery.start_soon(outages, daemon.writer, seen)
    dead = next(node for node in cluster.nodes if node.port == replica)
    dead.kill()
    await push(last := last + 1)
    with redis.Redis(port=old_master) as again:
        await until_stored(again, layout, dict.fromkeys(symbols, last))
    # up again once every node takes writes again: a node may answer CLUSTERDOWN for a few
    # seconds after the failover (the batch is sent again until it does; what went through stays)
    with trio.fail_after(40):  # the writer's Redis state is no exchange's: no health change fires
        await until_redis_up(daemon.writer, True)
    assert False in seen  # held while no master had the slot
    assert stored_last(reader, layout, "BTC/USD") == last
    reader.close()


async def test_the_writer_rewrites_for_a_cluster_what_it_cannot_take_as_is(
    cluster: ClusterServers, own_prefix: str
) -> None:
    """The fullon layout's ``MSET``/``DEL`` of ``ticker_time`` keys in several slots go one per
    key, and the monotonic write's scripts are on every master, loaded again after ``NOSCRIPT``."""
    reader = topology.client(cluster.url)
    assert isinstance(reader, redis.cluster.RedisCluster)
    fullon = RedisLayout(own_prefix, "fullon")
    names = spread(reader, fullon)
    batch: dict[tuple[str, str], Ticker | Removal] = {
        (name, "BTC/USD"): Ticker(name, "BTC/USD", 5.0, 4.0, 6.0, received_ts=1.0e9 + 5) for name in names
    }
    connection = ClusterConnection(cluster.url)
    await connection.execute(fullon.ticker_commands(batch))
    times = [fullon.ticker_time(name, "BTC/USD") for name in names]
    assert reader.mget_nonatomic(times) == [b"1000000005.0"] * 3
    await connection.execute(fullon.ticker_commands({key: Removal(*key) for key in batch}))
    assert reader.mget_nonatomic(times) == [None] * 3
    assert [fullon.read_tickers(reader, name) for name in names] == [{}, {}, {}]

    monotonic = RedisLayout(own_prefix, monotonic=True)
    connection = ClusterConnection(cluster.url, scripts=monotonic.scripts)

    def ticker(name: str, last: float) -> dict[tuple[str, str], Ticker | Removal]:
        return {(name, "BTC/USD"): Ticker(name, "BTC/USD", last, None, None, received_ts=1.0e9 + last)}

    for name in names:
        await connection.execute(monotonic.ticker_commands(ticker(name, 2.0)))
    for master in reader.get_primaries():  # type: ignore[no-untyped-call]
        with redis.Redis(port=master.port) as node:
            node.script_flush()
    with pytest.raises(NoScriptError):
        await connection.execute(monotonic.ticker_commands(ticker(names[0], 3.0)))
    await connection.execute(monotonic.ticker_commands(ticker(names[0], 3.0)))  # loaded again first
    replies = await connection.execute(monotonic.ticker_commands(ticker(names[1], 1.0)))  # older
    assert replies == [[1]]  # rejected: the script compared, on the master of its key
    assert [(monotonic.read_ticker(reader, n, "BTC/USD") or {}).get("last") for n in names] == [3.0, 2.0, 2.0]
    connection.close()
    reader.close()


async def test_the_daemon_writes_through_sentinel_and_follows_its_failover(
    sentinel: SentinelServers, own_prefix: str, nursery: trio.Nursery
) -> None:
    """``redis+sentinel://``: the writer and the readers reach the master the Sentinel names,
    and after ``SENTINEL FAILOVER`` the new one (the writer's connection to the demoted master
    is closed by the Sentinel, or answers ``READONLY``: it asks the Sentinel again)."""
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(own_prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}, redis={"url": sentinel.url})
    layout = config.layout
    daemon = await start_daemon(nursery, config)
    await until(kraken, lambda: kraken.is_subscribed("BTC/USD"))
    with TickerClient.from_url(sentinel.url, prefix=own_prefix, socket_timeout=2.0) as reader:
        await kraken.push("BTC/USD", last=1.0)
        await until_stored(reader.redis, layout, {"BTC/USD": 1.0})
        seen: list[bool] = []
        nursery.start_soon(outages, daemon.writer, seen)
        promoted = await failover(sentinel)
        await kraken.push("BTC/USD", last=2.0)
        new_master = redis.Redis(port=promoted)
        await until_stored(new_master, layout, {"BTC/USD": 2.0})
        new_master.close()
        with trio.fail_after(10):
            await until_redis_up(daemon.writer, True)
        assert False in seen  # the batch that met the demoted master was held, then written
        with trio.fail_after(10):
            while True:  # the reader's connection to the demoted master was closed: it asks again
                try:
                    ticker = reader.latest("kraken", "BTC/USD")
                    break
                except redis.ConnectionError:
                    await trio.sleep(0.1)
        assert ticker is not None and ticker.last == 2.0


async def failover(servers: SentinelServers) -> int:
    """``SENTINEL FAILOVER`` (retried while the Sentinel has no replica it calls good yet); the
    new master's port, once the Sentinel names it and has demoted the old master (until then
    the old master takes writes that its resync from the new one discards: Redis replicates
    asynchronously)."""
    watcher = redis.Redis(port=servers.port)
    before = int(watcher.sentinel_get_master_addr_by_name(servers.SERVICE)[1])  # type: ignore[index]
    after = servers.replica.port if before == servers.master.port else servers.master.port
    old = redis.Redis(port=before)

    def started() -> bool:
        try:
            return bool(watcher.sentinel_failover(servers.SERVICE))
        except redis.ResponseError:  # NOGOODSLAVE: the replica is not known to be good yet
            return False

    def promoted() -> bool:
        address = watcher.sentinel_get_master_addr_by_name(servers.SERVICE)
        return bool(address) and int(address[1]) == after  # type: ignore[index]

    await eventually(started)
    await eventually(promoted)
    await eventually(lambda: old.role()[0] == b"slave")
    watcher.close()
    old.close()
    return after


async def test_a_master_demoted_behind_the_writers_back_is_left(tmp_path: Path) -> None:
    """The Sentinels still name a master that was made a replica behind their back (``REPLICAOF``
    sent to it directly): the writer's open connection meets ``READONLY`` and is dropped as an
    outage, and a new one is refused by the ``ROLE`` check instead of writing to a replica."""
    servers = SentinelServers(tmp_path)
    other = RedisServer()
    servers.start()
    other.start()
    try:
        connection = RedisConnection(servers.url)
        await connection.execute([("SET", "k", "1")])
        with redis.Redis(port=servers.master.port) as master:
            master.replicaof("127.0.0.1", other.port)
        with pytest.raises(redis.ConnectionError, match="was demoted to a replica"):
            await connection.execute([("SET", "k", "2")])
        with pytest.raises(redis.ConnectionError, match=r"is not the master \(yet\): ROLE says b'slave'"):
            await connection.execute([("SET", "k", "3")])
        connection.close()
    finally:
        other.kill()
        servers.stop()
