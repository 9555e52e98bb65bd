"""Staleness, and the health records other programs read in Redis.

The monitor turns the daemon's in-memory health into records for ``tickerd status``,
``tickerd watch`` and anything else that depends on tickerd:

* ``{prefix}tickerd:heartbeat``: the daemon itself (state, pid, host, version, start time,
  exchanges, writer counters);
* ``{prefix}tickerd:health:{exchange}``: one exchange (state, connections, subscribed,
  rejected and stale symbols, reconnects, last error with its time, last tick time per symbol).

Writes are rate-limited per exchange, not per symbol: in steady state one record per exchange
(and one heartbeat) per ``health.interval``, 120 an hour at the default 30 s however many
symbols the exchange carries, plus one immediate write on each state change.  Every record
has a TTL of three intervals, so the records of a daemon that died expire instead of looking
alive.  The records go through the writer, so Redis keeps a single writer.

Staleness is judged from the writer's per-batch last-seen times (no per-frame work): a
symbol with no update for ``health.stale_after`` is marked stale and logged once; when every
symbol of a connection is stale while its frames still arrive, the connection resubscribes
them.  A connection without any frame is the feed's watchdog's business (it reconnects).
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import TYPE_CHECKING

import attrs
import trio
from loguru import logger

from tickerd import snapshots
from tickerd.health import ExchangeHealth
from tickerd.layout import RedisLayout
from tickerd.snapshots import ExchangeRecord, Heartbeat

if TYPE_CHECKING:
    from tickerd.daemon import TickerDaemon
    from tickerd.feed import Feed


class HealthMonitor:
    """The task behind staleness and the health records; ``run`` until cancelled."""

    def __init__(self, daemon: TickerDaemon) -> None:
        self.daemon = daemon
        self.settings = daemon.config.health
        self.layout = RedisLayout(daemon.config.redis.prefix)
        self.ttl = math.ceil(3 * self.settings.interval)
        self.started = time.time()
        self._wake = trio.Event()
        #: Exchanges with a state change not yet written.
        self._dirty: set[str] = set()
        #: Exchanges whose health this monitor listens to, and when each is due a steady write.
        self._due: dict[str, float] = {}
        self._heartbeat_due = -math.inf
        #: (exchange, symbol) → when the monitor first saw it subscribed (staleness baseline).
        self._since: dict[tuple[str, str], float] = {}
        self._frames_seen: dict[Feed, int] = {}
        self._resubscribed: dict[Feed, float] = {}
        daemon.writer.at_close(self._stopped)
        if daemon.source is not None:
            daemon.source.listeners.append(self._source_changed)

    def _changed(self, health: ExchangeHealth) -> None:
        self._dirty.add(health.name)
        self._wake.set()

    def _source_changed(self, _: object) -> None:
        """The heartbeat carries the source's state (a database outage shows in status)."""
        self._heartbeat_due = -math.inf
        self._wake.set()

    async def run(self) -> None:
        check_every = self.settings.stale_after / 4
        next_check = -math.inf
        while True:
            now = trio.current_time()
            if now >= next_check:
                self.check_staleness(now)
                next_check = now + check_every
            self._write_due(now)
            with trio.move_on_at(min(next_check, self._heartbeat_due, *self._due.values())):
                await self._wake.wait()
            self._wake = trio.Event()

    def _write_due(self, now: float) -> None:
        """Write the records of changed exchanges, and of those due a steady-state write."""
        interval = self.settings.interval
        runners = self.daemon.runners()
        for name in self._due.keys() - {runner.health.name for runner in runners}:
            del self._due[name]  # stopped by a configuration change: its record goes
            self._put(self.layout.health(name), None)
            self._heartbeat_due = now
        for runner in runners:
            name = runner.health.name
            if self._changed not in runner.health.listeners:  # new, or restarted with new settings
                runner.health.listeners.append(self._changed)
                if name not in self._due:
                    self._heartbeat_due = now  # the heartbeat lists the exchanges
                self._due[name] = now
            if name in self._dirty or now >= self._due[name]:
                record = ExchangeRecord(
                    exchange=name, time=time.time(), **attrs.asdict(runner.snapshot(), recurse=False)
                )
                self._put(self.layout.health(name), record)
                self._due[name] = now + interval
        self._dirty.clear()
        if now >= self._heartbeat_due:
            self._put(self.layout.heartbeat(), self._heartbeat("running"))
            self._heartbeat_due = now + interval

    def _put(self, key: str, record: Heartbeat | ExchangeRecord | None) -> None:
        self.daemon.writer.put_record(key, None if record is None else snapshots.dumps(record), self.ttl)

    def _heartbeat(self, state: str) -> Heartbeat:
        from tickerd import __version__  # the package imports this module: import late

        health = self.daemon.health()
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
        )

    def _stopped(self) -> None:
        """At shutdown: the exchanges' records go, the heartbeat says the daemon stopped."""
        for name in self._due:
            self._put(self.layout.health(name), None)
        self._put(self.layout.heartbeat(), self._heartbeat("stopped"))

    def check_staleness(self, now: float) -> None:
        """Mark stale symbols, log each change once, resubscribe all-stale live connections."""
        stale_after = self.settings.stale_after
        last_seen = self.daemon.writer.last_seen
        since: dict[tuple[str, str], float] = {}
        frames_seen: dict[Feed, int] = {}
        for runner in self.daemon.runners():
            health = runner.health
            name = health.name
            stale: set[str] = set()
            subscribed: set[str] = set()
            all_stale: list[tuple[Feed, int]] = []
            for feed in runner.feeds:
                wanted = [s for s in feed.symbols if s not in health.rejected]
                subscribed.update(wanted)
                feed_stale = 0
                for symbol in wanted:
                    key = (name, symbol)
                    first = since[key] = self._since.get(key, now)
                    if now - max(first, last_seen.get(key, first)) >= stale_after:
                        stale.add(symbol)
                        feed_stale += 1
                frames = frames_seen[feed] = feed.frame_count
                if (
                    wanted
                    and feed_stale == len(wanted)
                    and feed.live
                    and frames != self._frames_seen.get(feed, frames)
                    and now - self._resubscribed.get(feed, -math.inf) >= stale_after
                ):
                    all_stale.append((feed, len(wanted)))
            for symbol in sorted(stale - health.stale):
                logger.warning("stale: no update for {s:g} s", s=stale_after, exchange=name, symbol=symbol)
            for symbol in sorted((health.stale - stale) & subscribed):
                logger.info("fresh again", exchange=name, symbol=symbol)
            health.set_stale(stale)
            for feed, count in all_stale:
                logger.warning(
                    "frames arrive but none of {n} symbols updated for {s:g} s: resubscribing",
                    n=count,
                    s=stale_after,
                    exchange=name,
                    feed=feed.feed_id,
                )
                feed.resubscribe()
                self._resubscribed[feed] = now
        self._since, self._frames_seen = since, frames_seen
        self._resubscribed = {f: t for f, t in self._resubscribed.items() if f in frames_seen}
