"""Redis as users run it: ``redis+cluster://`` and ``redis+sentinel://`` URLs, read through
redis-py's own cluster and sentinel clients (:mod:`tickerd.topology`).

The cluster (three masters with a replica each) and the Sentinel set (master, replica, one
Sentinel) are the tests' own redis-servers on free ports, started once for the module.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import orjson
import pytest
import redis
import redis.cluster
import trio

from tests.processes import ClusterServers, SentinelServers
from tickerd import topology
from tickerd.client import AsyncTickerClient, TickerClient
from tickerd.commands.status import read_report
from tickerd.layout import RedisLayout
from tickerd.lease import LeaseHeld, PrefixLease
from tickerd.model import Ticker


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    servers = ClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServers]:
    servers = SentinelServers(tmp_path_factory.mktemp("sentinel"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


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


async def test_readers_follow_a_sentinel_failover(sentinel: SentinelServers, own_prefix: str) -> None:
    """``redis+sentinel://`` reads the master the Sentinel names, and the new one after
    ``SENTINEL FAILOVER``."""
    layout = RedisLayout(own_prefix)
    with TickerClient.from_url(sentinel.url, prefix=own_prefix, socket_timeout=2.0) as reader:
        client = topology.client(sentinel.url)
        client.hset(layout.tickers("kraken"), "BTC/USD", record("kraken", "BTC/USD", 1.0))
        ticker = reader.latest("kraken", "BTC/USD")
        assert ticker is not None and ticker.last == 1.0
        await failover(sentinel)
        with trio.fail_after(20):
            while True:  # the old master answers READONLY until its clients follow the Sentinel
                try:
                    client.hset(layout.tickers("kraken"), "BTC/USD", record("kraken", "BTC/USD", 2.0))
                    break
                except redis.ConnectionError:
                    await trio.sleep(0.1)
        ticker = reader.latest("kraken", "BTC/USD")
        assert ticker is not None and ticker.last == 2.0
        new_master = redis.Redis(port=sentinel.replica.port)
        assert orjson.loads(new_master.hget(layout.tickers("kraken"), "BTC/USD") or b"{}")["last"] == 2.0
        new_master.close()
        client.close()


async def polled(predicate: Callable[[], object], within: float = 30) -> None:
    """Return once ``predicate()`` holds: another process's state, with nothing to wait on but
    its answers."""
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.05)


async def failover(servers: SentinelServers) -> None:
    """``SENTINEL FAILOVER`` (retried while the Sentinel has no replica it calls good yet); return
    once the Sentinel names the replica as the master and has demoted the old master (until
    then the old master takes writes that its resync from the new one discards: Redis's
    replication is asynchronous)."""
    watcher = redis.Redis(port=servers.port)
    old = redis.Redis(port=servers.master.port)

    def started() -> bool:
        try:
            return bool(watcher.sentinel_failover(servers.SERVICE))
        except redis.ResponseError:  # NOGOODSLAVE: the replica is not known to be good yet
            return False

    def promoted() -> bool:
        address = watcher.sentinel_get_master_addr_by_name(servers.SERVICE)
        return bool(address) and int(address[1]) == servers.replica.port  # type: ignore[index]

    await polled(started)
    await polled(promoted)
    await polled(lambda: old.role()[0] == b"slave")
    watcher.close()
    old.close()
