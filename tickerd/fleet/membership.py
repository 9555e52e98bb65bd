"""Being a member: keep this instance's record alive, hear the others, read their records.

Three tasks, each with its own worker-thread calls on a Redis connection of the fleet's own
(:class:`~tickerd.fleet.store.MemberStore`), never through the ticker writer: a membership
record that waited behind a batch of tickers, or behind the writer's retry backoff, would expire
and hand a live member's symbols away; and the writer must not wait for membership either.

* the record: written when what this member collects changed (at most once a second) and
  otherwise renewed every third of the lease; the write announces joins and changes;
* the announcements: a subscription to the fleet's channel; any other member's announcement
  asks for a read at once, so joins, departures and deliveries are seen within a second;
* the reads: every member's record, on an announcement and every third of the lease anyway (the
  safety net: a member killed with ``kill -9`` announces nothing, its record just expires).

When Redis does not answer, the last view is kept (:attr:`Membership.store_up` false): the
instance keeps collecting what it was assigned, which may duplicate a member that took its
symbols over meanwhile, never leave a gap.  When Redis answers again the member writes its
record anew, announcing a join (the others may have dropped it), and converges.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import orjson
import trio
from loguru import logger
from redis.client import PubSub

from tickerd import topology
from tickerd.backoff import Backoff
from tickerd.broadcast import Broadcast
from tickerd.config import FleetSettings
from tickerd.fleet.member import Member, MemberExchange, dumps
from tickerd.fleet.rendezvous import eligible
from tickerd.fleet.store import MemberStore
from tickerd.layout import RedisLayout
from tickerd.redact import redact
from tickerd.version import __version__

T = TypeVar("T")

#: Seconds between two writes of the record when it changes (the issue's "at most once a second").
RECORD_EVERY = 1.0
#: Seconds a read waits after its wake-up, so a burst of announcements costs one read.
READ_COALESCE = 0.05
#: Seconds after a record's expected expiry that it is read again (Redis has expired it by then).
EXPIRY_MARGIN = 0.05
#: Seconds one wait for an announcement may take in its worker thread.
LISTEN_POLL = 1.0
#: While the channel cannot be subscribed: retry soon, then every 2 s.
RETRY = Backoff(first=0.1, cap=2.0, jitter=False)
#: Seconds without another member joining after which a starting member takes its first share
#: (:meth:`Membership.settle`; a third of the lease at most).
JOIN_QUIET = 1.0


class Membership:
    """This instance's membership of fleet ``settings.name``; :meth:`run` until cancelled."""

    def __init__(
        self,
        url: str,
        layout: RedisLayout,
        settings: FleetSettings,
    ) -> None:
        assert settings.name is not None
        self.name = settings.name
        self.instance = settings.instance_id
        self.settings = settings
        #: What this member collects and has delivered, per exchange, read for every write (the
        #: share that decides it sets it: :meth:`~tickerd.fleet.share.FleetSubscriptions.collected`).
        self.collected: Callable[[], Mapping[str, MemberExchange]] = dict
        self._url = url
        self._layout = layout
        # Shorter than a renewal period, so an unanswered call is over before the next is due.
        self._timeout = min(2.0, settings.lease / 3)
        self._store: MemberStore | None = None
        self._connecting = threading.Lock()
        self.channel = layout.fleet_channel(self.name)
        self.started = time.time()
        self._host = socket.gethostname()
        #: The disagreements already logged (:meth:`_check`).
        self._warned: set[str] = set()
        #: Departing: the record says so, and the rendezvous leaves this member out.
        self.leaving = False
        #: The members' records as last read, by id (this member's own included once written).
        self.members: dict[str, Member] = {}
        #: False while Redis does not answer the membership's calls; :attr:`reason` says why.
        self.store_up = True
        self.reason: str | None = None
        #: Fired after every read of the records, and when the store goes down or comes back.
        self.changed: Broadcast[None] = Broadcast()
        #: Fired with :attr:`store_up` when the store goes down or comes back (health changes).
        self.store_changed: Broadcast[bool] = Broadcast()
        #: Record writes and reads done (the bench counts coordination traffic with them).
        self.writes = 0
        self.reads = 0
        self._joined = False
        self._written: tuple[bool, Mapping[str, MemberExchange]] | None = None
        self._last_write = -math.inf
        self._write_soon = trio.Event()
        self._read_soon = trio.Event()
        self._listen_failures = 0
        #: Trio time at which the first of the other members' records expires unless renewed.
        self._expiry = math.inf

    def eligible(self) -> list[str]:
        """The members that own symbols: the live ones not leaving, this one unless it leaves."""
        others = [m for m in self.members.values() if m.instance != self.instance]
        return sorted({*eligible(others), *(() if self.leaving else (self.instance,))})

    def record(self, instance: str) -> Member | None:
        """``instance``'s record as last read."""
        return self.members.get(instance)

    def _connected(self) -> MemberStore:
        """The store, its client made on first use in a worker thread: a cluster's client asks
        its nodes for the slot map as it is made, which waits like any call while Redis is away."""
        with self._connecting:
            if self._store is None:
                client = topology.client(
                    self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
                )
                self._store = MemberStore(client, self._layout, self.name, self.instance)
            return self._store

    async def _call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread; abandoned on cancellation (its socket timeout ends it)."""
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)

    async def join(self) -> None:
        """Write the first record and read the fleet once (whatever Redis answers: a member that
        cannot reach it yet collects as if alone, and joins when it answers)."""
        await self._write_record()
        await self._read()

    async def settle(self) -> None:
        """Return once no other member has joined (or left) for :data:`JOIN_QUIET` seconds, a
        third of the lease after the call at most; :meth:`run` hears and reads them meanwhile.

        A starting member waits so before it takes its first share.  Members started together
        (a deployment, a fleet restarted) would otherwise each read a fleet in which the others
        had not written their records yet, subscribe far more than their share, and hand most
        of it over a moment later: subscribe and unsubscribe churn against the exchange at the
        very start.  The wait costs a member joining a running fleet nothing (the others
        collect its share until it delivers), and a fleet starting from nothing one second.
        """
        now = trio.current_time()
        deadline = now + self.settings.lease / 3
        members, quiet_until = self.eligible(), now + JOIN_QUIET
        while trio.current_time() < min(quiet_until, deadline):
            with trio.move_on_at(min(quiet_until, deadline)):
                await self.changed.wait()
            if self.eligible() != members:
                members, quiet_until = self.eligible(), trio.current_time() + JOIN_QUIET

    async def run(self) -> None:
        """Keep the record, follow the announcements and read the records until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_record)
            nursery.start_soon(self._listen)
            nursery.start_soon(self._follow)

    def leave(self) -> None:
        """Depart: the record says so at once (the others take this member's symbols over)."""
        self.leaving = True
        self._write_soon.set()

    async def close(self, deadline: float) -> int | None:
        """Delete the record and announce the departure, by ``deadline`` at the latest; the
        number of members the fleet still lists (``None`` when Redis did not answer: the record
        then expires by itself)."""
        try:
            with trio.move_on_at(deadline, shield=True):
                try:
                    return await self._call(lambda: self._connected().leave())
                except topology.ERRORS as exc:
                    logger.warning(
                        "fleet {name}: could not leave ({error}); the record expires",
                        name=self.name,
                        error=redact(str(exc)),
                    )
            return None
        finally:
            if self._store is not None:
                self._store.client.close()

    # -- the record --------------------------------------------------------------------------

    def member(self) -> Member:
        """This member's record now."""
        return Member(
            instance=self.instance,
            host=self._host,
            pid=os.getpid(),
            started=self.started,
            time=time.time(),
            lease=self.settings.lease,
            replicas=self.settings.replicas,
            leaving=self.leaving,
            version=__version__,
            exchanges=dict(self.collected()),
        )

    async def _keep_record(self) -> None:
        """Write the record when it changed (at most once per :data:`RECORD_EVERY`, departure at
        once) and renew it every third of the lease."""
        while True:
            with trio.move_on_at(self._last_write + min(RECORD_EVERY, self.settings.lease / 3)):
                await self._write_soon.wait()
            self._write_soon = trio.Event()
            await self._write_record()

    async def _write_record(self) -> None:
        member = self.member()
        content = (member.leaving, member.exchanges)
        now = trio.current_time()
        changed = content != self._written
        if self._joined and not changed and now < self._last_write + self.settings.lease / 3:
            return
        if not self._joined:
            event: str | None = "join"
        elif member.leaving and not (self._written and self._written[0]):
            event = "leave"
        else:
            event = "change" if changed else None
        try:
            await self._call(lambda: self._connected().write(dumps(member), self.settings.lease, event))
        except topology.ERRORS as exc:
            self._joined = False  # the others may drop this member meanwhile: join again
            self._down(exc)
            self._last_write = now  # retried a second later
            return
        self.writes += 1
        self._joined = True
        self._written, self._last_write = content, now
        self._up()

    # -- the others ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Ask for a read on every other member's announcement (and after each subscription,
        for what was announced while there was none)."""
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = await self._call(self._pubsub)
                await self._hear(pubsub)
            except topology.ERRORS as exc:
                self._down(exc)
                self._listen_failures += 1
                await trio.sleep(RETRY.delay(self._listen_failures))
            finally:
                if pubsub is not None:
                    pubsub.close()

    def _pubsub(self) -> PubSub:
        pubsub: PubSub = self._connected().client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        return pubsub

    async def _hear(self, pubsub: PubSub) -> None:
        await self._call(functools.partial(pubsub.subscribe, self.channel))
        self._listen_failures = 0
        self._read_soon.set()
        while True:
            message = await self._call(functools.partial(pubsub.get_message, timeout=LISTEN_POLL))
            if message is not None and message.get("type") == "message" and self._other(message["data"]):
                self._read_soon.set()

    def _other(self, data: bytes) -> bool:
        """Whether an announcement is another member's (this member's own need no read)."""
        try:
            return bool(orjson.loads(data).get("instance") != self.instance)
        except (orjson.JSONDecodeError, AttributeError):
            return False

    async def _follow(self) -> None:
        """Read the records on an announcement, when another member's record expires unless it
        was renewed (a member killed without a word is noticed as its lease ends), and every
        third of the lease anyway."""
        while True:
            period = self.settings.lease / 3 if self.store_up else RECORD_EVERY
            with trio.move_on_at(min(trio.current_time() + period, self._expiry + EXPIRY_MARGIN)):
                await self._read_soon.wait()
            self._read_soon = trio.Event()
            await trio.sleep(READ_COALESCE)
            await self._read()

    async def _read(self) -> None:
        try:
            members, expires_in = await self._call(lambda: self._connected().read())
        except topology.ERRORS as exc:
            self._down(exc)
            return
        self._expiry = trio.current_time() + expires_in
        self.reads += 1
        before = self.members.keys()
        self.members = {member.instance: member for member in members}
        if before != self.members.keys():
            logger.info(
                "fleet {name}: {n} members ({ids})",
                name=self.name,
                n=len(self.members),
                ids=", ".join(self.members),
            )
        self._check(members)
        self._up()
        self.changed.fire(None)

    def _check(self, members: list[Member]) -> None:
        """Warn (once each) of what makes members disagree: another process with this member's
        id (each would take the other's record for its own), or another ``replicas``."""
        for member in members:
            if member.instance == self.instance:
                if (member.host, member.pid, member.started) != (self._host, os.getpid(), self.started):
                    problem = (
                        f"another tickerd ({member.host} pid {member.pid}) uses this member's id "
                        f"{self.instance!r}: give each member its own fleet.instance"
                    )
                else:
                    continue
            elif member.replicas != self.settings.replicas:
                problem = (
                    f"member {member.instance!r} has replicas = {member.replicas}, this one "
                    f"{self.settings.replicas}: the members disagree on who collects what"
                )
            else:
                continue
            if problem not in self._warned:
                self._warned.add(problem)
                logger.warning("fleet {name}: {problem}", name=self.name, problem=problem)

    # -- the store's state ---------------------------------------------------------------------

    def _down(self, error: Exception) -> None:
        self.reason = redact(f"Redis unreachable: {error}")
        if self.store_up:
            self.store_up = False
            logger.warning(
                "fleet {name}: membership unreachable ({error}); collecting the last assignment",
                name=self.name,
                error=self.reason,
            )
            self.changed.fire(None)
            self.store_changed.fire(False)

    def _up(self) -> None:
        if not self.store_up:
            self.store_up, self.reason = True, None
            logger.info("fleet {name}: membership reachable again", name=self.name)
            self._write_soon.set()  # join again at once
            self._read_soon.set()
            self.changed.fire(None)
            self.store_changed.fire(True)
