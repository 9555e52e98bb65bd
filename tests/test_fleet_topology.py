"""Fleet membership on Redis as users run it: a Redis Cluster and a Sentinel-watched master
(the tests' own redis-servers, :mod:`tests.processes`).

The lease is long here (:data:`LEASE`: a periodic re-read only every 200 s), so a member seen
joining or leaving before the safety bound (:data:`WITHIN`, far shorter) was seen through the
announcement on the fleet's channel.  The bounds are there so that a broken test ends; how long
things take on a loaded machine is not what is tested.
"""

from __future__ import annotations

import uuid

import attrs
import pytest
import trio
from redis.crc import key_slot

from tests.processes import ClusterServers, SentinelServers
from tickerd import topology
from tickerd.config import FleetSettings
from tickerd.fleet import MemberExchange, read_members
from tickerd.fleet.membership import Membership
from tickerd.layout import RedisLayout

KRAKEN = {"kraken": MemberExchange(("BTC/USD",), ("BTC/USD",), ("BTC/USD",))}
#: The members' lease: their periodic re-read (every third of it) comes long after :data:`WITHIN`.
LEASE = 600.0
#: Seconds any wait may take at most (a safety bound on a loaded machine, not a measurement).
WITHIN = 60.0


@pytest.fixture
def layout() -> RedisLayout:
    """A prefix of the test's own (the servers are the module's)."""
    return RedisLayout(f"t{uuid.uuid4().hex[:8]}:")


def member(url: str, layout: RedisLayout, instance: str) -> Membership:
    settings = FleetSettings(name="f", instance=instance, lease=LEASE)
    return Membership(url, attrs.evolve(layout, instance=instance), settings)


async def until(membership: Membership, eligible: list[str]) -> None:
    """Return once ``membership`` counts exactly ``eligible`` as members."""
    with trio.fail_after(WITHIN):
        while membership.eligible() != eligible:
            await membership.changed.wait()


async def join_and_leave(url: str, layout: RedisLayout) -> None:
    """Two members see each other join, read each other's records and see a departure."""
    a, b = member(url, layout, "a"), member(url, layout, "b")
    a.collected = lambda: KRAKEN
    reader = topology.client(url)
    try:
        async with trio.open_nursery() as nursery:
            for membership in (a, b):
                await membership.join()
                nursery.start_soon(membership.run)
            await until(a, ["a", "b"])  # a heard b's join
            await until(b, ["a", "b"])
            with trio.fail_after(WITHIN):
                while (record := b.record("a")) is None or record.exchanges != KRAKEN:
                    await b.changed.wait()
            assert {m.instance for m in read_members(reader, layout, "f")} == {"a", "b"}
            b.leave()
            await until(a, ["a"])  # a heard b's departure
            assert a.store_up and b.store_up
            nursery.cancel_scope.cancel()
    finally:
        assert await b.close(trio.current_time() + WITHIN) == 1
        assert await a.close(trio.current_time() + WITHIN) == 0
        assert read_members(reader, layout, "f") == []
        reader.close()


async def test_membership_on_a_cluster(cluster: ClusterServers, layout: RedisLayout) -> None:
    # One fleet's keys share a slot: its record and the index are written by one script.
    slots = {
        key_slot(key.encode())
        for key in (layout.fleet_member("f", "a"), layout.fleet_member("f", "b:1"), layout.fleet_members("f"))
    }
    assert len(slots) == 1
    await join_and_leave(cluster.url, layout)


async def test_membership_through_sentinel(sentinel: SentinelServers, layout: RedisLayout) -> None:
    await join_and_leave(sentinel.url, layout)
