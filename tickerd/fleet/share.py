"""This member's share of the desired set, between the subscription source and the daemon.

The sources do not change in a fleet: every member reads the whole desired set from TOML or
PostgreSQL and hands it to ``apply``, here instead of the daemon's.  :class:`FleetSubscriptions`
keeps it and applies to the daemon only the symbols this member owns by rendezvous
(:mod:`tickerd.fleet.rendezvous`) over the live members, plus those it is handing over, and
applies again whenever the members or their records change.

Handover is make-before-break: a member that gains a symbol subscribes it at once; the member
that lost it keeps collecting it until every new owner's record lists it as delivered, or until
``fleet.handover_grace`` passed (an owner that cannot deliver, a symbol the exchange refuses).
While Redis does not answer for the membership nothing is let go at all: duplicates are
harmless (the writes are monotonic), gaps are not.  A symbol that moves is never deleted from
Redis: the daemon is told to keep the stored values of every symbol still desired
(``apply(…, keep=desired)``); only a symbol that left the desired set is deleted.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Protocol

import attrs
import trio
from loguru import logger

from tickerd.broadcast import Broadcast
from tickerd.config import ExchangeConfig, FleetSettings
from tickerd.fleet.member import Member, MemberExchange
from tickerd.fleet.rendezvous import assign
from tickerd.freshness import LastSeen
from tickerd.snapshots import FleetSnapshot

Key = tuple[str, str]

#: Symbols assigned between two checkpoints of the event loop (~4 ms over 10 members).
ASSIGN_CHUNK = 1000


class Roster(Protocol):
    """The membership as the share reads it (:class:`~tickerd.fleet.membership.Membership`)."""

    name: str
    instance: str
    leaving: bool
    store_up: bool
    reason: str | None
    #: Record writes and reads so far.
    writes: int
    reads: int
    #: Fired when the members, their records or the store's state may have changed.
    changed: Broadcast[None]

    def eligible(self) -> list[str]:
        """The members that own symbols now, sorted."""

    def record(self, instance: str) -> Member | None:
        """A member's record as last read."""

    def leave(self) -> None:
        """Depart: own nothing from now on, and say so."""


class Collector(Protocol):
    """The daemon as the share drives it (``TickerDaemon`` is one)."""

    async def apply(
        self, desired: Mapping[str, ExchangeConfig], *, keep: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Subscribe exactly ``desired``, keeping the stored values of ``keep``'s symbols."""

    def symbols(self) -> dict[str, list[str]]:
        """The subscribed symbols of every exchange."""


class FleetSubscriptions:
    """The desired set in, this member's share out; :meth:`run` re-applies on every change."""

    def __init__(
        self, daemon: Collector, roster: Roster, settings: FleetSettings, last_seen: LastSeen
    ) -> None:
        self._daemon = daemon
        self._roster = roster
        self.settings = settings
        #: The writer's last-seen times: a symbol is delivered once a ticker of it was taken for
        #: Redis after this member subscribed it.
        self._last_seen = last_seen
        #: The whole desired set, as the source last applied it (``None`` before its first).
        self._desired: dict[str, ExchangeConfig] | None = None
        #: Every desired symbol's owners, for the members and desired set they were computed from.
        self._owners: dict[Key, tuple[str, ...]] = {}
        self._owners_of: tuple[tuple[str, ...], int] | None = None
        self._version = 0
        self._applied_version = -1
        #: What this member owns now.
        self._owned: set[Key] = set()
        #: Symbols it lost and keeps until delivered elsewhere: key → trio time of the grace's end.
        self._held: dict[Key, float] = {}
        #: What it subscribes (owned and held): key → trio time it subscribed it here.
        self._since: dict[Key, float] = {}
        #: Symbols let go once their new owners delivered them, and once the grace passed.
        self.handed_over = 0
        self.handed_over_late = 0
        #: Fired after every application (:meth:`depart` waits on it).
        self.applied: Broadcast[None] = Broadcast()
        self._lock = trio.Lock()
        self._wakeup = trio.Event()
        roster.changed.connect(self._changed)

    def _changed(self, _: None) -> None:
        self._wakeup.set()

    # -- Subscriptions, as the sources see it --------------------------------------------------

    async def apply(self, desired: Mapping[str, ExchangeConfig]) -> None:
        """Take the whole desired set; subscribe this member's share of it."""
        self._desired = dict(desired)
        self._version += 1
        await self._update()

    def symbols(self) -> dict[str, list[str]]:
        return self._daemon.symbols()

    # -- the share ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Re-apply the share whenever the roster changes or a handover's grace ends."""
        while True:
            self._wakeup = trio.Event()
            await self._update()
            with trio.move_on_at(self._next_deadline()):
                await self._wakeup.wait()

    def _next_deadline(self) -> float:
        if not self._roster.store_up or not self._held:
            return math.inf
        return min(self._held.values())

    async def _owned_now(self, desired: Mapping[str, ExchangeConfig], version: int) -> set[Key]:
        """The symbols of ``desired`` (the source's ``version`` of it) this member owns,
        recomputed only when the members or the desired set changed, :data:`ASSIGN_CHUNK`
        symbols at a time with a checkpoint between (10,000 symbols over 10 members cost ~40 ms:
        the feeds are not held up that long; a newer desired set that arrives meanwhile waits
        for the lock and is computed next)."""
        members = tuple(self._roster.eligible())
        if self._owners_of != (members, version):
            keys = [(name, symbol) for name, settings in desired.items() for symbol in settings.symbols]
            chosen: dict[Key, tuple[str, ...]] = {}
            for start in range(0, len(keys), ASSIGN_CHUNK):
                if start:
                    await trio.lowlevel.checkpoint()
                chosen |= assign(members, keys[start : start + ASSIGN_CHUNK], self.settings.replicas)
            self._owners = chosen
            self._owners_of = (members, version)
            me = self._roster.instance
            self._owned = {key for key, owners in chosen.items() if me in owners}
        return self._owned

    def _delivered_elsewhere(self, key: Key) -> bool:
        """Whether every owner of ``key`` lists it as delivered (true when it has none: this
        member leaves and nobody is left to take it)."""
        exchange, symbol = key
        for instance in self._owners.get(key, ()):
            record = self._roster.record(instance)
            if record is None or not record.delivers(exchange, symbol):
                return False
        return True

    async def _update(self) -> None:
        async with self._lock:
            desired, version = self._desired, self._version
            if desired is None:
                return
            now = trio.current_time()
            owned = await self._owned_now(desired, version)
            wanted = self._owners.keys()
            held = self._held
            for key in self._since.keys() - owned:
                if key in wanted and key not in held:
                    held[key] = now + self.settings.handover_grace
            settled = self._roster.store_up  # while it is down, nothing is let go
            for key in list(held):
                if key not in wanted or key in owned:
                    del held[key]
                elif settled and self._delivered_elsewhere(key):
                    del held[key]
                    self.handed_over += 1
                elif settled and now >= held[key]:
                    del held[key]
                    self.handed_over_late += 1
            assigned = owned | held.keys()
            if assigned != self._since.keys() or self._applied_version != version:
                await self._daemon.apply(
                    {
                        name: attrs.evolve(settings, symbols=mine)
                        for name, settings in desired.items()
                        if (mine := tuple(s for s in settings.symbols if (name, s) in assigned))
                    },
                    keep={name: settings.symbols for name, settings in desired.items()},
                )
                self._since = {key: self._since.get(key, now) for key in assigned}
                self._applied_version = version
            self.applied.fire(None)

    # -- departure ------------------------------------------------------------------------------

    async def depart(self, deadline: float) -> None:
        """Own nothing any more and wait, until ``deadline`` at most, for the new owners to
        deliver every symbol this member collects."""
        self._roster.leave()
        self._wakeup.set()
        logger.info(
            "fleet {name}: leaving; {n} symbols to hand over within {s:.1f} s",
            name=self._roster.name,
            n=len(self._since),
            s=max(0.0, deadline - trio.current_time()),
        )
        with trio.move_on_at(deadline):
            while self._since:
                await self.applied.wait()
        if self._since:
            logger.warning(
                "fleet {name}: {n} symbols not delivered by another member yet; stopping all the same",
                name=self._roster.name,
                n=len(self._since),
            )

    # -- what the member record and health say ---------------------------------------------------

    def collected(self) -> dict[str, MemberExchange]:
        """Per exchange, the symbols subscribed here, those delivered since they were, and this
        member's share."""
        subscribed: dict[str, list[str]] = {}
        delivered: dict[str, list[str]] = {}
        assigned: dict[str, list[str]] = {}
        for (exchange, symbol), since in self._since.items():
            subscribed.setdefault(exchange, []).append(symbol)
            if self._last_seen.of(exchange).get(symbol, -math.inf) >= since:
                delivered.setdefault(exchange, []).append(symbol)
        for exchange, symbol in self._owned:
            assigned.setdefault(exchange, []).append(symbol)
        return {
            name: MemberExchange(
                tuple(sorted(subscribed.get(name, ()))),
                tuple(sorted(delivered.get(name, ()))),
                tuple(sorted(assigned.get(name, ()))),
            )
            for name in subscribed.keys() | assigned.keys()
        }

    def snapshot(self) -> FleetSnapshot:
        """This member's view of the fleet (``DaemonHealth.fleet``)."""
        owned: dict[str, int] = {}
        handover: dict[str, int] = {}
        for exchange, _ in self._owned:
            owned[exchange] = owned.get(exchange, 0) + 1
        for exchange, _ in self._held:
            handover[exchange] = handover.get(exchange, 0) + 1
        roster = self._roster
        return FleetSnapshot(
            name=roster.name,
            instance=roster.instance,
            members=tuple(roster.eligible()),
            owned=owned,
            handover=handover,
            store_up=roster.store_up,
            reason=roster.reason,
            record_writes=roster.writes,
            record_reads=roster.reads,
            handed_over=self.handed_over,
            handed_over_late=self.handed_over_late,
        )
