"""Several fleet members in one trio run, on real Redis and a fake Kraken: sharing, joins,
departures, expiry, an unreachable membership store, per-instance records, the prefix lease."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
import trio
from prometheus_client import generate_latest

import tickerd.fleet.membership
from tests.conftest import REDIS_URL, make_config, start_fake
from tests.processes import RedisServer
from tickerd.commands.status import read_fleet_report
from tickerd.config import Config
from tickerd.daemon import TickerDaemon, serve
from tickerd.fleet import owners, read_members
from tickerd.fleet.member import Member, dumps
from tickerd.fleet.store import MemberStore, announcement
from tickerd.health import DEGRADED, HEALTHY, assess_daemon
from tickerd.layout import RedisLayout
from tickerd.lease import LeaseHeld
from tickerd.metrics import Metrics
from tickerd.model import Removal
from tickerd.snapshots import FleetSnapshot
from tickerd.systemd import describe
from tickerd.testing import FakeKraken

BASES = ("BTC", "ETH", "SOL", "ADA", "XRP", "DOT", "LTC", "LINK", "ATOM", "UNI")
SYMBOLS = [f"{base}/{quote}" for quote in ("USD", "EUR", "GBP") for base in BASES]
#: Short leases keep the tests short; a grace far longer than any test waits proves that symbols
#: were let go because their new owners delivered them, not because the grace ran out.
FLEET = {"name": "f", "lease": 2.0, "handover_grace": 60.0}


class WatchedKraken(FakeKraken):
    """A fake that checks, on every change, that no symbol of :attr:`covered` lacks a subscriber
    (make-before-break: a symbol changing hands is never without one)."""

    def __init__(self) -> None:
        super().__init__()
        self.covered: set[str] = set()
        self.gaps: set[str] = set()

    def notify(self) -> None:
        self.gaps.update(symbol for symbol in self.covered if not self.is_subscribed(symbol))
        super().notify()

    def subscriber_counts(self) -> dict[str, int]:
        return {symbol: len(self.subscribers(symbol)) for symbol in SYMBOLS}


@attrs.define
class Running:
    daemon: TickerDaemon
    scope: trio.CancelScope
    config: Config

    @property
    def instance(self) -> str:
        return self.config.fleet.instance_id

    def symbols(self) -> set[str]:
        return set(self.daemon.symbols().get("kraken", []))


def fleet_config(
    prefix: str, kraken: FakeKraken, instance: str, url: str = REDIS_URL, **fleet: Any
) -> Config:
    return make_config(
        prefix,
        {"kraken": kraken},
        {"kraken": SYMBOLS},
        fleet=FLEET | {"instance": instance} | fleet,
        redis={"url": url, "prefix": prefix},
        shutdown_grace=2.0,
    )


async def start(nursery: trio.Nursery, config: Config) -> Running:
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[TickerDaemon]) -> None:
        with scope:
            await serve(config, task_status=task_status)

    daemon: TickerDaemon = await nursery.start(run)
    return Running(daemon, scope, config)


def fleet_of(member: Running) -> FleetSnapshot:
    fleet = member.daemon.health().fleet
    assert fleet is not None
    return fleet


def store_up(member: Running) -> bool:
    return fleet_of(member).store_up


def spy(
    removal: Callable[[str, str], Removal], calls: list[tuple[str, str]]
) -> Callable[[str, str], Removal]:
    """``removal``, noting each call in ``calls``."""

    def noted(exchange: str, symbol: str) -> Removal:
        calls.append((exchange, symbol))
        return removal(exchange, symbol)

    return noted


def exactly_once(kraken: WatchedKraken, members: list[Running]) -> bool:
    """Each symbol subscribed by exactly one member, as the members and the fake both say."""
    held = [member.symbols() for member in members]
    return sorted(s for symbols in held for s in symbols) == sorted(SYMBOLS) and all(
        count == 1 for count in kraken.subscriber_counts().values()
    )


async def until(kraken: WatchedKraken, condition: Callable[[], object], within: float = 15.0) -> None:
    """Return once ``condition()`` holds: re-checked on every change of the fake, and at least
    every 0.1 s, since Redis (records, the lease) and the members' views change without one."""
    with trio.fail_after(within):
        while not condition():
            with trio.move_on_after(0.1):
                await kraken.wait_until(condition)


@pytest.fixture
def layout(prefix: str) -> RedisLayout:
    return RedisLayout(prefix)


async def test_members_share_the_symbols_and_keep_their_own_records(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, layout: RedisLayout
) -> None:
    kraken = await start_fake(nursery, WatchedKraken())
    members = [await start(nursery, fleet_config(prefix, kraken, name)) for name in ("a", "b", "c")]
    await until(kraken, lambda: exactly_once(kraken, members))

    for member in members:  # each collects what the rendezvous over the three gives it
        mine = {s for s in SYMBOLS if owners(["a", "b", "c"], "kraken", s, 1) == (member.instance,)}
        assert member.symbols() == mine
    # Every value reaches Redis, and every member's record lists what it delivered.
    await until(kraken, lambda: len(redis_client.hkeys(layout.tickers("kraken"))) == len(SYMBOLS))

    def delivered() -> dict[str, set[str]]:
        records = read_members(redis_client, layout, "f")
        return {m.instance: set(m.exchanges["kraken"].delivered) for m in records if "kraken" in m.exchanges}

    await until(kraken, lambda: delivered() == {m.instance: m.symbols() for m in members})
    records = read_members(redis_client, layout, "f")
    assert {m.instance: set(m.exchanges["kraken"].assigned) for m in records} == {
        m.instance: m.symbols() for m in members
    }

    # Heartbeat and health records per instance: none overwrites another's.
    for member in members:
        own = attrs.evolve(layout, instance=member.instance)
        await until(kraken, lambda: own.read_health(redis_client)[0] is not None)  # noqa: B023
        heartbeat = own.read_health(redis_client)[0]
        assert heartbeat is not None and (heartbeat.instance, heartbeat.fleet) == (member.instance, "f")
    assert redis_client.get(layout.heartbeat()) is None
    health = members[0].daemon.health()
    assert health.fleet is not None and health.fleet.members == ("a", "b", "c")
    metrics = generate_latest(Metrics(members[0].daemon).registry).decode()
    assert "tickerd_fleet_members 3.0" in metrics
    assert 'tickerd_fleet_handovers_total{after="grace"} 0.0' in metrics
    assert "tickerd_fleet_record_writes_total" in metrics and "tickerd_fleet_record_reads_total" in metrics
    assert f'tickerd_fleet_owned_symbols{{exchange="kraken"}} {len(members[0].symbols())}.0' in metrics


async def test_members_started_together_subscribe_their_shares_and_nothing_more(
    nursery: trio.Nursery,
    redis_client: redis.Redis,
    prefix: str,
    layout: RedisLayout,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """b starts while a, its record written, waits for the members starting with it: each takes
    its share over both at once, so the exchange sees every symbol subscribed once, by its
    owner, and none unsubscribed (no churn at start).  The quiet period is longer here than by
    default (5 s) so that b's start, however slow the machine, falls within it."""
    monkeypatch.setattr(tickerd.fleet.membership, "JOIN_QUIET", 5.0)
    kraken = await start_fake(nursery, WatchedKraken())
    members: list[Running] = []

    async def start_a() -> None:
        members.insert(0, await start(nursery, fleet_config(prefix, kraken, "a", lease=60.0)))

    nursery.start_soon(start_a)
    await until(kraken, lambda: [m.instance for m in read_members(redis_client, layout, "f")] == ["a"])
    members.append(await start(nursery, fleet_config(prefix, kraken, "b", lease=60.0)))
    await until(kraken, lambda: len(members) == 2 and exactly_once(kraken, members))

    for member in members:
        mine = {s for s in SYMBOLS if owners(["a", "b"], "kraken", s, 1) == (member.instance,)}
        assert member.symbols() == mine
    assert sorted(symbol for _, change, symbol in kraken.changes if change == "subscribe") == sorted(SYMBOLS)
    assert [change for _, change, _ in kraken.changes if change != "subscribe"] == []


async def test_replicas_2_collects_each_symbol_on_two_members(nursery: trio.Nursery, prefix: str) -> None:
    kraken = await start_fake(nursery, WatchedKraken())
    members = [
        await start(nursery, fleet_config(prefix, kraken, name, replicas=2)) for name in ("a", "b", "c")
    ]

    def twice() -> bool:
        held = [member.symbols() for member in members]
        return all(sum(s in symbols for symbols in held) == 2 for s in SYMBOLS) and all(
            count == 2 for count in kraken.subscriber_counts().values()
        )

    await until(kraken, twice)
    for member in members:
        mine = {s for s in SYMBOLS if member.instance in owners(["a", "b", "c"], "kraken", s, 2)}
        assert member.symbols() == mine


async def test_a_joining_member_takes_its_share_make_before_break(
    nursery: trio.Nursery,
    redis_client: redis.Redis,
    prefix: str,
    layout: RedisLayout,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kraken = await start_fake(nursery, WatchedKraken())
    members = [await start(nursery, fleet_config(prefix, kraken, name)) for name in ("a", "b", "c")]
    await until(kraken, lambda: exactly_once(kraken, members))
    await until(kraken, lambda: len(redis_client.hkeys(layout.tickers("kraken"))) == len(SYMBOLS))
    before = {m.instance: m.symbols() for m in members}
    removals: list[tuple[str, str]] = []
    for member in members:
        monkeypatch.setattr(member.daemon.writer, "removal", spy(member.daemon.writer.removal, removals))
    kraken.covered = set(SYMBOLS)

    kraken.refuse = True  # the newcomer cannot connect, so it delivers nothing for now
    members.append(await start(nursery, fleet_config(prefix, kraken, "d")))
    moved = {s for s in SYMBOLS if owners(["a", "b", "c", "d"], "kraken", s, 1) == ("d",)}
    assert members[3].symbols() == moved  # subscribed at once (its connection is trying)

    def handing_over() -> int:
        return sum(sum(fleet_of(m).handover.values()) for m in members[:3])

    await until(kraken, lambda: handing_over() == len(moved))  # the others saw it join
    await trio.sleep(1.0)
    assert handing_over() == len(moved)  # and keep what it cannot deliver yet
    assert kraken.gaps == set()

    kraken.refuse = False
    await until(kraken, lambda: exactly_once(kraken, members))
    for member in members[:3]:  # the others lost exactly what the newcomer took
        assert member.symbols() == before[member.instance] - moved
        assert member.daemon.fleet is not None and member.daemon.fleet.handed_over_late == 0
    assert kraken.gaps == set()  # no symbol was ever without a subscriber
    assert removals == []  # a moved symbol is never deleted
    assert len(redis_client.hkeys(layout.tickers("kraken"))) == len(SYMBOLS)


async def test_a_departing_member_hands_over_before_it_stops(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, layout: RedisLayout
) -> None:
    kraken = await start_fake(nursery, WatchedKraken())
    members = [await start(nursery, fleet_config(prefix, kraken, name)) for name in ("a", "b")]
    await until(kraken, lambda: exactly_once(kraken, members))
    kraken.covered = set(SYMBOLS)
    leaver, stayer = members
    theirs = leaver.symbols()
    assert leaver.daemon.fleet is not None
    handed_over = leaver.daemon.fleet.handed_over  # at b's start, among others

    await leaver.daemon.depart(trio.current_time() + 60.0)  # returns once b delivered them all
    assert leaver.symbols() == set()
    assert stayer.symbols() == set(SYMBOLS)
    assert leaver.daemon.fleet.handed_over - handed_over == len(theirs)  # delivered, not timed out
    leaver.scope.cancel()
    # The record goes with the member.
    await until(kraken, lambda: "a" not in {m.instance for m in read_members(redis_client, layout, "f")})
    assert kraken.gaps == set()
    assert len(redis_client.hkeys(layout.tickers("kraken"))) == len(SYMBOLS)
    assert redis_client.get(layout.lease()) is not None  # still the fleet's: b holds it


async def test_a_member_that_dies_silently_is_replaced_as_its_record_expires(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, layout: RedisLayout
) -> None:
    """A member killed with ``kill -9`` announces nothing: its record expires, and the others read
    the records again right as it does.  Its stand-in here is a record written by the test with
    a 2 s expiry, renewed until both members count it, then never again.  The members' own lease
    is 600 s, so their periodic read (every 200 s) is not what finds it gone, however loaded the
    machine: the waits are bounded far below that (60 s), only so that a broken member ends the
    test."""
    kraken = await start_fake(nursery, WatchedKraken())
    members = [
        await start(nursery, fleet_config(prefix, kraken, name, lease=600.0, handover_grace=600.0))
        for name in ("a", "b")
    ]
    await until(kraken, lambda: exactly_once(kraken, members))
    ghost = MemberStore(redis_client, layout, "f", "ghost")
    record = dumps(Member("ghost", "h", 1, 0.0, 0.0, 2.0, 1))
    ghost.write(record, 2.0, "join")
    ghosts = {s for s in SYMBOLS if owners(["a", "b", "ghost"], "kraken", s, 1) == ("ghost",)}
    assert ghosts
    # The ghost's share is left to the ghost while its record lives (it delivers nothing, so the
    # others keep its symbols until their grace ends).  It renews its record as a live member
    # does until both members count it: then it dies without a word.
    with trio.fail_after(60):
        while not all(fleet_of(m).members == ("a", "b", "ghost") for m in members):
            ghost.write(record, 2.0, None)
            await trio.sleep(0.1)

    await until(kraken, lambda: all(fleet_of(m).members == ("a", "b") for m in members), within=60.0)
    await until(kraken, lambda: exactly_once(kraken, members))
    assert sum(fleet_of(m).handed_over_late for m in members) == 0
    assert b"ghost" not in redis_client.smembers(layout.fleet_members("f"))  # pruned from the index


async def test_members_keep_collecting_while_the_membership_store_is_unreachable(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    prefix = "fleet:"
    layout = RedisLayout(prefix)
    kraken = await start_fake(nursery, WatchedKraken())
    members = [
        await start(nursery, fleet_config(prefix, kraken, name, url=redis_server.url)) for name in ("a", "b")
    ]
    await until(kraken, lambda: exactly_once(kraken, members))
    kraken.covered = set(SYMBOLS)
    shares = [m.symbols() for m in members]

    redis_server.pause()  # SIGSTOP: every call hangs until its timeout
    await until(kraken, lambda: not any(store_up(m) for m in members))
    await trio.sleep(2 * 2.0)  # past the lease: nothing is let go, nothing stops
    assert [m.symbols() for m in members] == shares
    assert kraken.gaps == set()

    redis_server.resume()
    await until(kraken, lambda: all(store_up(m) for m in members))
    client = redis.Redis.from_url(redis_server.url)
    try:  # both joined again (their records expired meanwhile)
        await until(kraken, lambda: {m.instance for m in read_members(client, layout, "f")} == {"a", "b"})
    finally:
        client.close()
    await until(kraken, lambda: exactly_once(kraken, members))
    assert kraken.gaps == set()


async def test_a_member_cut_off_from_the_membership_store_is_degraded_wherever_it_is_judged(
    nursery: trio.Nursery,
    redis_client: redis.Redis,
    prefix: str,
    layout: RedisLayout,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its tickers still reach Redis, only the membership's calls fail: ``/healthz`` (and the
    page, and systemd's status: one rule), its heartbeat and ``tickerd status`` all say degraded,
    and why, until the store answers again.  A long lease keeps its record alive meanwhile, so
    that ``status`` still lists it (once the record expires, the fleet goes on without it)."""
    kraken = await start_fake(nursery, WatchedKraken())
    member = await start(nursery, fleet_config(prefix, kraken, "a", lease=600.0))
    desired = {"kraken": tuple(SYMBOLS)}

    def status() -> tuple[int, list[str]]:
        report = read_fleet_report(redis_client, REDIS_URL, prefix, "f", 1, desired)
        return report.level, report.reasons

    await until(kraken, lambda: assess_daemon(member.daemon.health())[0] == HEALTHY)
    await until(kraken, lambda: status()[0] == HEALTHY)

    def unreachable(*args: object) -> None:
        raise redis.ConnectionError("cut off by the test")

    monkeypatch.setattr(MemberStore, "write", unreachable)
    monkeypatch.setattr(MemberStore, "read", unreachable)
    redis_client.publish(layout.fleet_channel("f"), announcement("change", "x"))  # a read is due
    await until(kraken, lambda: not store_up(member))
    level, reasons = assess_daemon(member.daemon.health())
    why = "fleet membership: Redis unreachable: cut off by the test; collecting the last assignment"
    assert level == DEGRADED and any(why in reason for reason in reasons), reasons
    assert why in describe(member.daemon.health())  # systemd's STATUS=
    await until(kraken, lambda: status()[0] == DEGRADED)
    assert any(reason.startswith(f"a: {why}") for reason in status()[1]), status()
    assert member.symbols() == set(SYMBOLS)  # collecting all the same

    monkeypatch.undo()
    await until(kraken, lambda: store_up(member))
    assert assess_daemon(member.daemon.health()) == (HEALTHY, [])
    await until(kraken, lambda: status() == (HEALTHY, []))


async def test_a_single_daemon_and_another_fleet_cannot_share_a_fleets_prefix(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, layout: RedisLayout
) -> None:
    kraken = await start_fake(nursery, WatchedKraken())
    member = await start(nursery, fleet_config(prefix, kraken, "a"))
    single = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]})
    with pytest.raises(LeaseHeld, match="owned by fleet 'f'"):
        await serve(single)
    with pytest.raises(LeaseHeld, match="owned by fleet 'f'"):
        await serve(fleet_config(prefix, kraken, "x", name="g"))
    second = await start(nursery, fleet_config(prefix, kraken, "b"))  # the same fleet joins
    await until(kraken, lambda: exactly_once(kraken, [member, second]))

    member.scope.cancel()
    await until(kraken, lambda: {m.instance for m in read_members(redis_client, layout, "f")} == {"b"})
    assert redis_client.get(layout.lease()) is not None  # b still holds it
    second.scope.cancel()
    # The last member gave it back: a single daemon may start.
    await until(kraken, lambda: redis_client.get(layout.lease()) is None)


async def test_members_that_disagree_are_told(
    nursery: trio.Nursery, redis_client: redis.Redis, prefix: str, layout: RedisLayout, logs: list[str]
) -> None:
    """Another process under this member's id, or a member with other ``replicas``: logged once."""
    kraken = await start_fake(nursery, WatchedKraken())
    member = await start(nursery, fleet_config(prefix, kraken, "a"))
    other = MemberStore(redis_client, layout, "f", "b")
    twin = MemberStore(redis_client, layout, "f", "a")  # another process writing "a"'s record

    def told() -> list[str]:
        return [m for m in logs if "replicas = 2" in m or "uses this member's id" in m]

    with trio.fail_after(10):
        while len(told()) < 2:  # both keep renewing their records, as members do
            twin.write(dumps(Member("a", "elsewhere", 99, 0.0, 0.0, 2.0, 1)), 2.0, "change")
            other.write(dumps(Member("b", "h", 1, 0.0, 0.0, 2.0, 2)), 2.0, "change")
            await trio.sleep(0.1)
    assert "member 'b' has replicas = 2, this one 1" in told()[0] + told()[1]
    assert "another tickerd (elsewhere pid 99) uses this member's id 'a'" in told()[0] + told()[1]
    assert member.symbols()  # it goes on collecting all the same
