"""The health records other programs read in Redis.

The monitor turns the daemon's health snapshots (:meth:`TickerDaemon.health`) into records for
``tickerd status``, ``tickerd watch`` and anything else that depends on tickerd:

* ``{prefix}tickerd:heartbeat``: the daemon itself (state, pid, host, version, start time,
  exchanges, writer counters, subscription source): a :class:`~tickerd.snapshots.Heartbeat`;
* ``{prefix}tickerd:health:{exchange}``: one exchange (state, connections, subscribed,
  rejected and stale symbols, reconnects, last error with its time, last tick time per
  symbol): an :class:`~tickerd.snapshots.ExchangeRecord`.

Writes are rate-limited per exchange, not per symbol: in steady state one record per exchange
(and one heartbeat) per ``health.interval``, 120 an hour at the default 30 s however many
symbols the exchange carries, plus a write on state changes (the exchange's record and the
heartbeat, so its writer counters are as current as the newest record), and all of them when
the writer had to reconnect (a Redis restarted empty would otherwise show no daemon to
``status`` until the next interval).  State changes are coalesced: a record carries changes at
most once per :data:`COALESCE` seconds, so a change after a quiet second is written at once and
the changes that follow within that second go out together at its end (an exchange of 10,000
symbols whose first tickers, staleness or subscriptions change symbol by symbol costs one
record a second, not one per change).  The steady-state writes keep their own pace and do not
hold a change back.  Every record has a TTL of three intervals, so the
records of a daemon that died expire instead of looking alive.  The records go through the
writer, so Redis keeps a single writer.  fullon process records (:mod:`tickerd.fullon`), when
configured, are written along with them: an exchange's with its health record, the daemon's
with the heartbeat.

It only reads snapshots and hears of changes: staleness is judged by each exchange's runner,
which owns the feeds (see :mod:`tickerd.daemon`).
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Protocol

import attrs
import trio

from tickerd import snapshots
from tickerd.broadcast import Broadcast
from tickerd.config import HealthSettings
from tickerd.fullon import ProcessRecords
from tickerd.layout import RedisLayout
from tickerd.lease import PrefixLease
from tickerd.snapshots import DaemonHealth, ExchangeRecord, Heartbeat
from tickerd.version import __version__
from tickerd.writer import RedisWriter

#: Seconds between two writes of one record on state changes: the first change after a quiet
#: second is written at once, later ones wait for the end of that second.
COALESCE = 1.0


class HealthSource(Protocol):
    """What the monitor reads (``TickerDaemon`` is one)."""

    #: Fired with an exchange's name when its health changed, ``None`` for the source's.
    health_changes: Broadcast[str | None]

    def health(self) -> DaemonHealth:
        """Every exchange's snapshot, the writer's, the subscription source's."""


class HealthMonitor:
    """The task behind the health records; ``run`` until cancelled."""

    def __init__(
        self,
        daemon: HealthSource,
        writer: RedisWriter,
        settings: HealthSettings,
        layout: RedisLayout,
        lease: PrefixLease | None = None,
        processes: ProcessRecords | None = None,
    ) -> None:
        self.daemon = daemon
        #: fullon process records, written along with the health records (:mod:`tickerd.fullon`).
        self.processes = processes
        #: The records are this daemon's only while it holds the prefix's lease.
        self.lease = lease
        self.writer = writer
        self.settings = settings
        self.layout = layout
        self.ttl = math.ceil(3 * settings.interval)
        self.started = time.time()
        #: Exchanges with a state change not yet written.
        self._dirty: set[str] = set()
        #: Exchanges that have a record, and when each is due a steady-state write.
        self._due: dict[str, float] = {}
        #: When each exchange's record may carry a state change again (see :data:`COALESCE`).
        self._quiet_until: dict[str, float] = {}
        #: When the heartbeat is due a steady-state write; whether it has a change to carry (the
        #: source's, or an exchange record's counters), and from when it may.
        self._heartbeat_due = -math.inf
        self._heartbeat_changed = False
        self._heartbeat_quiet_until = -math.inf
        #: Set when a record is due before its time (a state change, Redis reconnected).
        self._wakeup = trio.Event()
        writer.at_final_records(self._stopped)
        writer.reconnected.connect(self._reconnected)
        daemon.health_changes.connect(self._changed)

    def _changed(self, exchange: str | None) -> None:
        if exchange is None:  # the source: the heartbeat carries it (an outage shows in status)
            self._heartbeat_soon()
        else:
            self._dirty.add(exchange)
        self._wakeup.set()

    def _reconnected(self, _: None) -> None:
        """The writer needed a new connection: Redis may have restarted empty, and ``status``
        would call the daemon dead until the next interval, so every record is written now
        (or, for one written within the last second, at the end of that second)."""
        self._heartbeat_soon()
        self._dirty.update(self._due)
        self._wakeup.set()

    def _heartbeat_soon(self) -> None:
        """Write the heartbeat at once, or at the end of the second of its last change."""
        self._heartbeat_changed = True

    def _next_write(self) -> float:
        """When the next record is due: a steady-state write, or a held-back change's."""
        quiet = self._quiet_until
        held = [quiet.get(name, -math.inf) for name in self._dirty]
        if self._heartbeat_changed:
            held.append(self._heartbeat_quiet_until)
        return min([self._heartbeat_due, *self._due.values(), *held])

    async def run(self) -> None:
        while True:
            self._wakeup = trio.Event()
            if trio.current_time() >= self._next_write():  # else a change within its quiet second
                self._write_due(trio.current_time())
            with trio.move_on_at(self._next_write()):
                await self._wakeup.wait()

    def _write_due(self, now: float) -> None:
        """Write the records of changed exchanges past their quiet second, and of those due a
        steady-state write."""
        interval = self.settings.interval
        health = self.daemon.health()
        self._dirty.intersection_update(health.exchanges.keys() | self._due.keys())
        changed = False
        for name in self._due.keys() - health.exchanges.keys():
            del self._due[name]  # stopped by a configuration change: its record goes
            self._dirty.discard(name)
            self._quiet_until.pop(name, None)
            self._put(self.layout.health(name), None)
            if self.processes is not None:
                self.processes.exchange_gone(name)
            changed = True  # the heartbeat lists the exchanges
        for name, snapshot in health.exchanges.items():
            new = name not in self._due  # written at once, and the heartbeat lists it
            if new:
                self._due[name] = now
            dirty = new or name in self._dirty
            if (dirty and now >= self._quiet_until.get(name, -math.inf)) or now >= self._due[name]:
                fields = attrs.asdict(snapshot, recurse=False)
                self._put(self.layout.health(name), ExchangeRecord(exchange=name, time=time.time(), **fields))
                if self.processes is not None:
                    self.processes.exchange(name, snapshot, steady=now >= self._due[name])
                self._due[name] = now + interval
                if dirty:  # it carried a change: the next waits for the end of this second
                    changed = True
                    self._dirty.discard(name)
                    self._quiet_until[name] = now + COALESCE
        if changed:  # the heartbeat's writer counters go along with every state change
            self._heartbeat_soon()
        carries = self._heartbeat_changed
        if (carries and now >= self._heartbeat_quiet_until) or now >= self._heartbeat_due:
            self._put(self.layout.heartbeat(), self._heartbeat("running", health))
            if self.processes is not None:
                self.processes.daemon(health)
            self._heartbeat_due = now + interval
            if carries:
                self._heartbeat_changed = False
                self._heartbeat_quiet_until = now + COALESCE

    def _put(self, key: str, record: Heartbeat | ExchangeRecord | None) -> None:
        self.writer.put_record(key, None if record is None else snapshots.dumps(record), self.ttl)

    def _heartbeat(self, state: str, health: DaemonHealth) -> Heartbeat:
        return Heartbeat(
            state=state,
            time=time.time(),
            started=self.started,
            pid=os.getpid(),
            host=socket.gethostname(),
            version=__version__,
            interval=self.settings.interval,
            stale_after=self.settings.stale_after,
            exchanges=tuple(sorted(self._due)),
            writer=health.writer,  # stored as declared: the counters, not redis_up
            source=health.source,
            instance=self.layout.instance,
            fleet=None if health.fleet is None else health.fleet.name,
            fleet_store=health.fleet_store,
        )

    def _stopped(self) -> None:
        """At shutdown: the exchanges' records go, the heartbeat says the daemon stopped (unless
        the prefix now belongs to another daemon: its records are not this one's to touch).
        The fullon processes stop either way: their ids are this daemon's own."""
        if self.processes is not None:
            self.processes.stop()
        if self.lease is not None and not self.lease.held:
            return
        for name in self._due:
            self._put(self.layout.health(name), None)
        self._put(self.layout.heartbeat(), self._heartbeat("stopped", self.daemon.health()))
