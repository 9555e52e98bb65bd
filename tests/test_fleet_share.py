"""The fleet's arithmetic without I/O: rendezvous assignment, and the share's handover rules
(a fake roster and a fake daemon, virtual time)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import tickerd.fleet.share
from tickerd.broadcast import Broadcast
from tickerd.config import ExchangeConfig, FleetSettings
from tickerd.fleet import Member, MemberExchange, eligible, owners, weight
from tickerd.fleet.rendezvous import assign
from tickerd.fleet.share import ASSIGN_CHUNK, FleetSubscriptions
from tickerd.freshness import LastSeen

SYMBOLS = [f"S{n}/USD" for n in range(3000)]


def assignment(instances: list[str], replicas: int = 1) -> dict[str, tuple[str, ...]]:
    shares = assign(instances, [("kraken", symbol) for symbol in SYMBOLS], replicas)
    assert all(shares["kraken", s] == owners(instances, "kraken", s, replicas) for s in SYMBOLS[:100])
    return {symbol: shares["kraken", symbol] for symbol in SYMBOLS}


def test_the_weight_is_the_same_in_every_process() -> None:
    """BLAKE2b, not Python's salted ``hash``: the value is pinned, as every member must agree."""
    assert weight("a", "kraken", "BTC/USD") == 0xCD7FEE2F96DDC4B1
    assert owners(["a", "b"], "kraken", "BTC/USD", 2) == tuple(
        sorted("ab", key=lambda i: -weight(i, "kraken", "BTC/USD"))
    )
    assert weight("a", "kraken", "BTC/USD") != weight("b", "kraken", "BTC/USD")
    assert weight("a", "kraken", "BTC/USD") != weight("a", "binance", "BTC/USD")


def test_replicas_1_gives_each_symbol_one_owner_and_shares_them_out() -> None:
    shares = assignment(["a", "b", "c"])
    assert all(len(chosen) == 1 for chosen in shares.values())
    counts = {i: sum(chosen == (i,) for chosen in shares.values()) for i in "abc"}
    assert all(800 < count < 1200 for count in counts.values()), counts  # ~1,000 each
    assert shares == assignment(["c", "a", "b"])  # the order members are listed in does not matter


def test_a_join_moves_about_a_quarter_and_only_to_the_newcomer() -> None:
    before, after = assignment(["a", "b", "c"]), assignment(["a", "b", "c", "d"])
    moved = [symbol for symbol in SYMBOLS if before[symbol] != after[symbol]]
    assert all(after[symbol] == ("d",) for symbol in moved)
    assert 0.2 < len(moved) / len(SYMBOLS) < 0.3


def test_a_departure_moves_only_the_leavers_symbols() -> None:
    before, after = assignment(["a", "b", "c"]), assignment(["a", "c"])
    moved = {symbol for symbol in SYMBOLS if before[symbol] != after[symbol]}
    assert moved == {symbol for symbol in SYMBOLS if before[symbol] == ("b",)}


def test_replicas_k_gives_k_distinct_owners() -> None:
    shares = assignment(["a", "b", "c", "d"], replicas=2)
    assert all(len(set(chosen)) == 2 for chosen in shares.values())
    # The first owner is the replicas=1 owner: adding replicas adds collectors, moves nothing.
    single = assignment(["a", "b", "c", "d"])
    assert all(shares[s][0] == single[s][0] for s in SYMBOLS)
    assert owners(["a"], "kraken", "BTC/USD", 2) == ("a",)  # fewer members than replicas: all of them


def test_leaving_members_are_not_eligible() -> None:
    def member(instance: str, leaving: bool) -> Member:
        return Member(instance, "h", 1, 0.0, 0.0, 10.0, 1, leaving=leaving)

    assert eligible([member("b", False), member("a", True), member("c", False)]) == ["b", "c"]


# -- the share ------------------------------------------------------------------------------------


@attrs.define
class FakeRoster:
    name: str = "f"
    instance: str = "a"
    leaving: bool = False
    store_up: bool = True
    reason: str | None = None
    writes: int = 0
    reads: int = 0
    changed: Broadcast[None] = attrs.field(factory=Broadcast)
    others: list[str] = attrs.field(factory=list)
    records: dict[str, Member] = attrs.field(factory=dict)

    def eligible(self) -> list[str]:
        return sorted({*self.others, *(() if self.leaving else (self.instance,))})

    def record(self, instance: str) -> Member | None:
        return self.records.get(instance)

    def leave(self) -> None:
        self.leaving = True
        self.changed.fire(None)

    def join(self, instance: str) -> None:
        self.others.append(instance)
        self.changed.fire(None)

    def deliver(self, instance: str, symbols: Collection[str]) -> None:
        self.records[instance] = Member(
            instance,
            "h",
            1,
            0.0,
            0.0,
            10.0,
            1,
            exchanges={"kraken": MemberExchange(tuple(symbols), tuple(symbols))},
        )
        self.changed.fire(None)


@attrs.define
class FakeDaemon:
    subscribed: dict[str, list[str]] = attrs.field(factory=dict)
    kept: list[Mapping[str, Collection[str]] | None] = attrs.field(factory=list)

    async def apply(
        self, desired: Mapping[str, ExchangeConfig], *, keep: Mapping[str, Collection[str]] | None = None
    ) -> None:
        self.subscribed = {name: list(settings.symbols) for name, settings in desired.items()}
        self.kept.append(keep)

    def symbols(self) -> dict[str, list[str]]:
        return self.subscribed


DESIRED = {"kraken": ExchangeConfig(symbols=tuple(SYMBOLS[:60]))}


async def share_of(
    nursery: trio.Nursery, roster: FakeRoster, grace: float = 5.0
) -> tuple[FleetSubscriptions, FakeDaemon]:
    daemon = FakeDaemon()
    share = FleetSubscriptions(daemon, roster, FleetSettings(name="f", handover_grace=grace), LastSeen())
    await share.apply(DESIRED)
    nursery.start_soon(share.run)
    return share, daemon


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_a_lost_symbol_is_kept_until_its_new_owner_delivered_it(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    roster = FakeRoster()
    share, daemon = await share_of(nursery, roster)
    assert daemon.symbols()["kraken"] == SYMBOLS[:60]  # alone: everything

    roster.join("b")
    await settle()
    lost = [s for s in SYMBOLS[:60] if owners(["a", "b"], "kraken", s, 1) == ("b",)]
    assert 15 < len(lost) < 45
    assert daemon.symbols()["kraken"] == SYMBOLS[:60]  # b has delivered nothing yet: all kept
    assert share.snapshot().handover == {"kraken": len(lost)}

    roster.deliver("b", lost[:5])
    await settle()
    assert set(daemon.symbols()["kraken"]) == set(SYMBOLS[:60]) - set(lost[:5])
    assert share.handed_over == 5
    assert daemon.kept[-1] == {"kraken": DESIRED["kraken"].symbols}  # values stay in Redis

    await trio.sleep(5.0)  # the grace ends: the rest goes too
    await settle()
    assert set(daemon.symbols()["kraken"]) == set(SYMBOLS[:60]) - set(lost)
    assert (share.handed_over, share.handed_over_late) == (5, len(lost) - 5)
    assert share.snapshot().owned == {"kraken": 60 - len(lost)}


async def test_nothing_is_let_go_while_the_membership_store_is_unreachable(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    roster = FakeRoster()
    _, daemon = await share_of(nursery, roster, grace=1.0)
    roster.store_up = False
    roster.join("b")  # seen before the store went away, say
    await trio.sleep(30.0)
    await settle()
    assert daemon.symbols()["kraken"] == SYMBOLS[:60]  # duplicates, no gap

    roster.store_up = True
    roster.changed.fire(None)
    await settle()
    assert len(daemon.symbols()["kraken"]) < 60


async def test_departure_waits_for_the_new_owners_then_owns_nothing(
    nursery: trio.Nursery, clock: trio.testing.MockClock
) -> None:
    roster = FakeRoster(others=["b"])
    share, daemon = await share_of(nursery, roster, grace=60.0)
    mine = list(daemon.symbols()["kraken"])
    async with trio.open_nursery() as inner:
        inner.start_soon(share.depart, trio.current_time() + 10.0)
        await settle()
        assert roster.leaving
        assert daemon.symbols()["kraken"] == mine  # kept until b delivers them
        roster.deliver("b", SYMBOLS[:60])
    assert daemon.symbols() == {}
    assert share.handed_over == len(mine)


async def test_departure_is_bounded(nursery: trio.Nursery, clock: trio.testing.MockClock) -> None:
    roster = FakeRoster(others=["b"])
    share, daemon = await share_of(nursery, roster, grace=60.0)
    start = trio.current_time()
    await share.depart(start + 3.0)
    assert trio.current_time() == start + 3.0
    assert daemon.symbols()["kraken"]  # b never delivered: cut short by the caller's deadline


async def test_the_last_member_departs_at_once(nursery: trio.Nursery, clock: trio.testing.MockClock) -> None:
    roster = FakeRoster()
    share, daemon = await share_of(nursery, roster, grace=60.0)
    start = trio.current_time()
    await share.depart(start + 3.0)
    assert trio.current_time() == start  # nobody to hand over to
    assert daemon.symbols() == {}


async def test_a_share_of_more_symbols_than_one_chunk_is_the_rendezvous_share() -> None:
    assert len(SYMBOLS) > 2 * ASSIGN_CHUNK  # assigned in several chunks, with checkpoints between
    daemon = FakeDaemon()
    share = FleetSubscriptions(daemon, FakeRoster(others=["b", "c"]), FleetSettings(name="f"), LastSeen())
    await share.apply({"kraken": ExchangeConfig(symbols=tuple(SYMBOLS))})
    assert daemon.symbols()["kraken"] == [
        s for s in SYMBOLS if owners(["a", "b", "c"], "kraken", s, 1) == ("a",)
    ]


async def test_a_desired_set_that_arrives_during_an_assignment_is_assigned_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The share yields between chunks; a source's newer set arriving then (``apply`` stores it,
    then waits for the lock) is not mistaken for the one being assigned."""
    roster = FakeRoster(others=["b"])
    daemon = FakeDaemon()
    share = FleetSubscriptions(daemon, roster, FleetSettings(name="f"), LastSeen())
    old = {"kraken": ExchangeConfig(symbols=tuple(SYMBOLS[: 2 * ASSIGN_CHUNK]))}
    new = {"kraken": ExchangeConfig(symbols=tuple(SYMBOLS))}
    calls = 0

    def assign_meanwhile(*args: Any) -> dict[tuple[str, str], tuple[str, ...]]:
        nonlocal calls
        calls += 1
        if calls == 2:  # at the checkpoint before the second chunk, the newer set came in
            share._desired, share._version = new, share._version + 1
        return assign(*args)

    monkeypatch.setattr(tickerd.fleet.share, "assign", assign_meanwhile)
    await share.apply(old)
    await share._update()  # what the newer set's apply runs once it has the lock
    mine = [s for s in SYMBOLS if owners(["a", "b"], "kraken", s, 1) == ("a",)]
    assert daemon.symbols()["kraken"] == mine
